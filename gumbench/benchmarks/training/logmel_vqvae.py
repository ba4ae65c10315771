"""The log-mel VQ-VAE on real speech (the vendored corpus, or any folder of WAV/FLAC via ``audio_dir``).

logmel-vqvae
    A VQ-VAE on log-mel frames (40 HTK mel bands up to 4 kHz, 25 ms / 10 ms, standardized
    per band with training statistics): a convolutional encoder over time (receptive
    field 7 frames), a G x V bottleneck, a per-frame MLP decoder; loss = mean squared
    reconstruction error per frame plus the estimator's VQ losses (codebook and commitment
    for ``vq-commitment``; none for the categorical estimators).

Rows of the bottleneck are (batch, frames). The decoder is per frame, so each row's loss depends on its own
code only, and the quantizer problem's exact gradient comes from enumerating each frame's codes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gumbench.benchmarks.audio import DEFAULT_MAX_SECONDS, MAX_SECONDS, SAMPLE_RATE, log_mel_utterances
from gumbench.benchmarks.problems.base import LogitsProblem
from gumbench.benchmarks.training.base import (
    BATCH,
    CODES,
    WIDTH,
    DiscreteBottleneck,
    StepOutput,
    TrainingTask,
    register,
)
from gumbench.benchmarks.training.speech import EVAL_CROPS, corpus_split
from gumbench.errors import GumbenchError
from gumbench.plugin import MAX_ELEMENTS, Range


class LogMelVQVAE(nn.Module):
    def __init__(self, estimator, mels, hidden, groups, codes, code_dim):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(mels, hidden, 5, padding=2), nn.GELU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU()
        )
        self.bottleneck = DiscreteBottleneck(estimator, hidden, groups, codes, code_dim)
        self.decoder = nn.Sequential(nn.Linear(groups * code_dim, hidden), nn.GELU(), nn.Linear(hidden, mels))


@register
class LogMelVQVAETask(TrainingTask):
    name = "logmel-vqvae"
    description = ("VQ-VAE on log-mel frames of real speech: conv encoder, G x V bottleneck, per-frame decoder; "
                   "reconstruction + VQ losses.")
    defaults = {"audio_dir": "", "mels": 40, "fmax": 4000.0, "frames": 32, "batch": 32, "groups": 1, "codes": 128,
                  "code_dim": 16, "hidden": 128, "max_seconds": DEFAULT_MAX_SECONDS}
    ranges = {"mels": Range(1, 201, meaning="at most the 201 bins of the 400-point FFT"), "frames": Range(1, 100_000),
              "batch": BATCH, "groups": Range(1, 64), "codes": CODES, "code_dim": Range(1, 1024), "hidden": WIDTH,
              "fmax": Range(0, SAMPLE_RATE // 2, low_open=True, meaning="Hz"), "max_seconds": MAX_SECONDS}
    limits = {("batch", "frames", "hidden"): MAX_ELEMENTS, ("batch", "frames", "groups", "codes"): MAX_ELEMENTS,
              ("batch", "frames", "groups", "code_dim"): MAX_ELEMENTS, ("hidden", "groups", "codes"): MAX_ELEMENTS,
              ("groups", "codes", "code_dim"): MAX_ELEMENTS}
    default_steps = 300
    default_lr = 2e-3
    has_quantizer_problem = True

    def validate(self):
        p = self.params
        self.groups, self.codes = p["groups"], p["codes"]
        train, held = corpus_split(p)
        mel = dict(n_mels=p["mels"], f_max=p["fmax"])
        train_frames, eval_frames = (
            torch.cat(log_mel_utterances([u.wave for u in part], **mel)) for part in (train, held)
        )
        for part, frames in (("training", train_frames), ("evaluation", eval_frames)):
            if len(frames) < p["frames"]:
                raise GumbenchError(
                    f"{self.name}: the {part} audio of audio_dir={p['audio_dir'] or '(vendored)'} gives "
                    f"{len(frames)} log-mel frames, fewer than frames={p['frames']}; give more audio or fewer frames"
                )
        self.mean, self.std = train_frames.mean(0), train_frames.std(0).clamp_min(1e-3)
        self.train_frames = (train_frames - self.mean) / self.std
        self.eval_frames = (eval_frames - self.mean) / self.std

    def build(self, estimator):
        p = self.params
        return LogMelVQVAE(estimator, p["mels"], p["hidden"], p["groups"], p["codes"], p["code_dim"])

    def segments(self, frames, starts):
        return torch.stack([frames[s : s + self.params["frames"]] for s in starts.tolist()])  # (B, T, mels)

    def batch(self, step, generator):
        starts = torch.randint(
            0, len(self.train_frames) - self.params["frames"] + 1, (self.params["batch"],), generator=generator
        )
        return self.segments(self.train_frames, starts)

    def eval_batch(self):
        starts = torch.linspace(0, len(self.eval_frames) - self.params["frames"], EVAL_CROPS).long()
        return self.segments(self.eval_frames, starts)

    def features(self, model, batch):
        return model.encoder(batch.transpose(1, 2)).transpose(1, 2)  # (B, T, hidden)

    @staticmethod
    def reconstruction(model, quantized, target):
        """Mean squared error per frame: quantized (..., B, T, G * code_dim), target (B, T, mels) -> (..., B, T)."""
        return (model.decoder(quantized) - target).pow(2).mean(-1)

    def loss(self, model, batch, generator):
        out = model.bottleneck(self.features(model, batch), lambda q: self.reconstruction(model, q, batch), generator)
        terms = {"reconstruction": float(out.loss.detach().mean())}
        terms.update({k: float(v.detach().mean()) for k, v in out.aux.items()})
        return StepOutput(out.surrogate.mean(), terms, out)

    def evaluate(self, model, batch, indices):
        quantized = model.bottleneck.decode(indices).to(batch.dtype)
        return {"reconstruction": float(self.reconstruction(model, quantized, batch).mean())}

    def quantizer_problem(self, model, batch, generator) -> LogitsProblem:
        """For the gradient study: logits (R, V) of every (frame, group) of the batch and the mean
        reconstruction error over the batch on one-hots (S, R, V) -> (S,).

        The decoder is per frame, so E[loss] = mean_t sum_c P_t(c) f_t(c) over the V^G code
        combinations c of each frame: the exact gradient comes from enumerating them
        (``exact_gradient``, for V^G <= 65,536).
        """
        logits = model.bottleneck.logits_or_vectors(self.features(model, batch)).detach()  # (B, T, G, V)
        shape = logits.shape

        def loss_fn(onehot):
            quantized = model.bottleneck.lookup(onehot.reshape(*onehot.shape[:-2], *shape))
            return self.reconstruction(model, quantized, batch).flatten(-2).mean(-1)

        def exact_gradient():
            groups, codes = shape[-2:]
            if codes ** groups > 65_536:
                raise GumbenchError(
                    f"{self.name}: {codes}^{groups} code combinations per frame are too many to enumerate"
                )
            combos = torch.cartesian_prod(*[torch.arange(codes)] * groups).reshape(-1, groups)  # (C, G)
            with torch.no_grad():
                quantized = model.bottleneck.lookup(F.one_hot(combos, codes).to(logits.dtype))  # (C, G * code_dim)
                losses = (model.decoder(quantized)[:, None, None, :] - batch).pow(2).mean(-1).double()  # (C, B, T)
            leaf = logits.double().requires_grad_(True)
            log_p = torch.log_softmax(leaf, -1)[..., torch.arange(groups), combos].sum(-1)  # (B, T, C)
            expected = (log_p.exp() * losses.permute(1, 2, 0)).sum(-1).mean()
            return torch.autograd.grad(expected, leaf)[0].reshape(-1, codes)

        return LogitsProblem(
            logits.reshape(-1, shape[-1]), loss_fn, name=f"{self.label} quantizer", exact_gradient=exact_gradient
        )
