"""wav2vec 2.0 on real speech (the vendored corpus, or any folder of WAV/FLAC via ``audio_dir``), and
what the speech tasks share.

wav2vec2
    wav2vec 2.0-style pre-training (Baevski et al. 2020), small. A convolutional feature
    encoder on the raw 16 kHz waveform (fairseq's 7 layers, kernels 10,3,3,3,3,2,2, strides
    5,2,2,2,2,2,2: one frame per 20 ms, GroupNorm after the first layer, GELU, Kaiming-normal
    weights), layer norm,
    a G x V quantizer on the features of the masked frames (``DiscreteBottleneck``, so any
    registry estimator; for categorical estimators the logits layer is initialized N(0, 1)
    with zero bias as in fairseq's GumbelVectorQuantizer), span masking (int(mask_prob * T /
    mask_length + u) spans of ``mask_length`` frames per crop, a learned mask vector), a
    Transformer context network (convolutional positional embedding, pre-norm layers, no
    dropout so that a seed fixes the run) and the InfoNCE loss: for masked frame
    t, -log softmax over {q_t} + K distractors (quantized vectors of other masked frames of
    the same crop, drawn uniformly with replacement) of cos(c_t, .)/kappa, with distractors
    identical to q_t excluded (logit -inf), as in fairseq. Total loss:

        contrastive (mean over masked frames)
        + diversity * (G V - sum_g exp(H(mean_t softmax(l_tg)))) / (G V)   (noiseless softmax, masked frames)
        + feature_penalty * mean(encoder features^2)

    Temperature at step s: max(tau_max * tau_decay^s, tau_min) for every estimator with a
    temperature (fairseq: 2, 0.5, 0.999995). ``variant=vq-wav2vec`` is vq-wav2vec's Gumbel
    quantizer, which has no diversity loss: the diversity weight is 0 (naming another value
    is an error); the model and the contrastive objective stay those of wav2vec 2.0.

    Defaults that differ from fairseq's base model (measured, 300 steps, st-gumbel): with
    its masking (0.65, spans of 10) on 1 s crops and feature penalty weight 10 the
    contrastive loss stays at chance, log 21, for all 300 steps (the penalty shrinks the
    encoder output ~750-fold and the masked frames' context vectors collapse to one
    direction); the defaults 0.5, spans of 3 and weight 0.01 reach 0.41 held-out accuracy.

Rows of the bottleneck are frames: the masked frames (N). The per-row loss of a masked frame is
its own InfoNCE term, so REINFORCE-type estimators assign credit per frame and ignore a frame's
effect on other frames' distractor terms (an approximation used in training only; the quantizer
gradient study in :mod:`gumbench.benchmarks.studies.speech_quantizers` treats the whole batch as
one row and is unbiased).

The other speech tasks take what they share from here (the corpus split, the evaluation crops):
``logmel-vqvae`` (:mod:`gumbench.benchmarks.training.logmel_vqvae`) and ``vq-wav2vec``
(:mod:`gumbench.benchmarks.training.vq_wav2vec`, on :class:`RawSpeechTask`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from gumbench.benchmarks.audio import (
    DEFAULT_MAX_SECONDS,
    MAX_SECONDS,
    SAMPLE_RATE,
    Utterance,
    load_corpus,
    split_corpus,
)
from gumbench.benchmarks.problems.base import LogitsProblem
from gumbench.benchmarks.training.base import (
    CODES,
    BottleneckOutput,
    DiscreteBottleneck,
    StepOutput,
    TrainingTask,
    register,
)
from gumbench.benchmarks.utilization import diversity_loss
from gumbench.errors import GumbenchError
from gumbench.plugin import HALF_OPEN_UNIT, MAX_ELEMENTS, POSITIVE, Range

# fairseq's default feature encoder: (kernel, stride) per layer, 320 samples per frame at 16 kHz
CONV_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))
EVAL_CROPS = 8


def corpus_split(params: dict) -> tuple[list[Utterance], list[Utterance]]:
    """(training, held-out) utterances of the corpus a speech task names: ``audio_dir`` (the vendored corpus when
    empty), at most ``max_seconds`` of it (:func:`gumbench.benchmarks.audio.split_corpus`)."""
    return split_corpus(load_corpus(params["audio_dir"] or None, max_seconds=params["max_seconds"]))


def frames_of(samples: int) -> int:
    """Frames the feature encoder makes from ``samples`` samples."""
    for kernel, stride in CONV_LAYERS:
        samples = (samples - kernel) // stride + 1
    return samples


# --- masking, distractors and InfoNCE --------------------------------------------------

def span_mask(batch: int, frames: int, prob: float, length: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, frames) bool: per crop int(prob * frames / length + u) spans (at least 1) of ``length`` frames.

    Span starts are distinct and uniform over the frames - length + 1 possible ones
    (fairseq's compute_mask_indices, "static" lengths); spans may overlap.
    """
    length = min(length, frames)
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    for b in range(batch):
        u = float(torch.rand((), generator=generator))
        spans = min(max(1, int(prob * frames / length + u)), frames - length + 1)
        starts = torch.randperm(frames - length + 1, generator=generator)[:spans]
        mask[b, (starts[:, None] + torch.arange(length)).reshape(-1)] = True
    return mask


def sample_negatives(mask: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """(N, count) distractor indices into the N masked frames (row-major order of ``mask``).

    Masked frame i of a crop with n masked frames gets ``count`` draws, uniform with
    replacement over the n - 1 other masked frames of the same crop. Needs n >= 2.
    """
    per_crop = mask.sum(1)
    if (per_crop < 2).any():
        raise GumbenchError(
            "every crop needs at least 2 masked frames to draw distractors; raise mask_length or the crop length"
        )
    offsets = torch.cumsum(per_crop, 0) - per_crop
    crop_of = torch.repeat_interleave(torch.arange(len(per_crop)), per_crop)
    local = torch.arange(int(per_crop.sum())) - offsets[crop_of]
    others = (per_crop[crop_of] - 1).unsqueeze(1)
    draw = (torch.rand(len(crop_of), count, generator=generator) * others).long().clamp_max(others - 1)
    draw = draw + (draw >= local.unsqueeze(1)).long()  # skip the frame itself
    return offsets[crop_of].unsqueeze(1) + draw


class InfoNCE(NamedTuple):
    loss: torch.Tensor  # (..., N) -log softmax of the positive
    correct: torch.Tensor  # (..., N) bool: the positive has the largest logit
    identical: torch.Tensor  # (..., N) share of the K distractors equal to the positive (excluded)


def info_nce(context: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, temperature: float) -> InfoNCE:
    """InfoNCE per masked frame: context (N, F), targets (..., N, F), negatives (N, K).

    loss_t = -log softmax_0([cos(c_t, q_t), cos(c_t, q_n1), ...] / temperature); a distractor
    equal to q_t (cosine above 1 - 1e-6: the same codes) gets logit -inf, as in fairseq. When
    every distractor is excluded (all frames share one code: collapse) the loss is 0 and the
    positive counts as correct, so read ``identical`` beside the accuracy.
    """
    c = F.normalize(context, dim=-1)
    y = F.normalize(targets, dim=-1)
    cosines = torch.einsum("tf,...jf->...tj", c, y)  # cos(c_t, q_j) for every pair of masked frames
    index = negatives.expand(*cosines.shape[:-1], negatives.shape[-1])
    positive = torch.diagonal(cosines, dim1=-2, dim2=-1).unsqueeze(-1)
    with torch.no_grad():
        same = (y @ y.transpose(-1, -2)).gather(-1, index) >= 1 - 1e-6
    logits = torch.cat([positive, cosines.gather(-1, index).masked_fill(same, -math.inf)], dim=-1) / temperature
    loss = torch.logsumexp(logits, dim=-1) - logits[..., 0]
    return InfoNCE(loss, logits.detach().argmax(-1) == 0, same.double().mean(-1))


# --- wav2vec 2.0 ----------------------------------------------------------------------

class FeatureEncoder(nn.Module):
    """Raw waveform (B, samples) -> features (B, frames, channels)."""

    def __init__(self, channels: int):
        super().__init__()
        layers, cin = [], 1
        for i, (kernel, stride) in enumerate(CONV_LAYERS):
            conv = nn.Conv1d(cin, channels, kernel, stride, bias=False)
            nn.init.kaiming_normal_(
                conv.weight
            )  # as fairseq; the default init shrinks the signal ~1e3-fold over 7 layers
            layers.append(conv)
            if i == 0:
                layers.append(nn.GroupNorm(channels, channels))  # fairseq's "default" extractor mode
            layers.append(nn.GELU())
            cin = channels
        self.layers = nn.Sequential(*layers)

    def forward(self, wave):
        return self.layers(wave.unsqueeze(1)).transpose(1, 2)


class ContextNetwork(nn.Module):
    """Convolutional positional embedding, layer norm, post-norm Transformer layers (wav2vec 2.0 base layout)."""

    def __init__(self, dim: int, layers: int, heads: int, kernel: int = 31, conv_groups: int = 4):
        super().__init__()
        self.positional = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=conv_groups)
        self.final_norm = nn.LayerNorm(dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x):
        x = x + F.gelu(self.positional(x.transpose(1, 2))).transpose(1, 2)
        return self.final_norm(self.layers(x))


class Wav2Vec2Model(nn.Module):
    def __init__(self, estimator, channels, dim, layers, heads, groups, codes, final_dim):
        super().__init__()
        self.feature_encoder = FeatureEncoder(channels)
        self.layer_norm = nn.LayerNorm(channels)
        self.post_extract_proj = nn.Linear(channels, dim)
        self.mask_embedding = nn.Parameter(torch.rand(dim))
        self.context = ContextNetwork(dim, layers, heads)
        self.final_proj = nn.Linear(dim, final_dim)
        self.bottleneck = DiscreteBottleneck(estimator, channels, groups, codes, final_dim // groups)
        if not self.bottleneck.is_vq:  # fairseq's GumbelVectorQuantizer: weight_proj ~ N(0, 1), bias 0
            nn.init.normal_(self.bottleneck.project.weight, 0.0, 1.0)
            nn.init.zeros_(self.bottleneck.project.bias)
        self.project_q = nn.Linear(final_dim, final_dim)


@dataclass
class MaskedBatch:
    """Everything of a wav2vec 2.0 step before the quantizer."""

    features: torch.Tensor  # (N, C) layer-normed encoder features of the masked frames: the quantizer's input
    all_features: torch.Tensor  # (B, T, C) the same for every frame
    feature_penalty: torch.Tensor  # scalar, mean of squared encoder features (before the layer norm)
    mask: torch.Tensor  # (B, T) bool
    context: torch.Tensor  # (N, final_dim) context vectors of the masked frames, after final_proj
    negatives: torch.Tensor  # (N, K) distractor indices into the masked frames


@dataclass
class Wav2Vec2Terms:
    total: torch.Tensor
    contrastive: torch.Tensor  # mean InfoNCE over masked frames, as the estimator's surrogate (includes VQ aux losses)
    diversity: torch.Tensor  # weighted diversity term (0 without one)
    feature_penalty: torch.Tensor  # weighted feature penalty
    accuracy: float  # share of masked frames whose positive has the largest logit
    identical: float  # share of distractors equal to their positive (excluded; high when codes collapse)
    bottleneck: BottleneckOutput
    batch: MaskedBatch


class RawSpeechTask(TrainingTask):
    """Crops of the raw waveform of real speech, a G x V quantizer and fairseq's temperature schedule:
    what ``wav2vec2`` and ``vq-wav2vec`` share. Parameters used: audio_dir, groups, codes, batch, crop,
    tau_max, tau_min, tau_decay, max_seconds; :meth:`validate` sets ``crop_samples`` first, then calls
    :meth:`load_audio`."""

    crop_samples: int

    def load_audio(self):
        p = self.params
        if p["tau_min"] > p["tau_max"]:
            raise GumbenchError(f"{self.name}: tau_min ({p['tau_min']}) must not exceed tau_max ({p['tau_max']})")
        self.groups, self.codes = p["groups"], p["codes"]
        train, held = corpus_split(p)
        self.train_wave, self.eval_wave = (torch.cat([u.wave for u in part]) for part in (train, held))
        for part, wave in (("training", self.train_wave), ("evaluation", self.eval_wave)):
            if len(wave) < self.crop_samples:
                raise GumbenchError(f"{self.name}: the {part} audio of audio_dir={p['audio_dir'] or '(vendored)'} "
                                    f"({len(wave) / SAMPLE_RATE:.2f} s) is shorter than one {p['crop']:g} s crop; "
                                    "give more audio or a shorter crop")

    def temperature(self, step):
        p = self.params
        return max(p["tau_max"] * p["tau_decay"] ** step, p["tau_min"])

    @staticmethod
    def _normalize(crops):
        """Zero mean, unit variance per crop (fairseq's ``normalize``), robust to silence."""
        return (crops - crops.mean(-1, keepdim=True)) / crops.std(-1, keepdim=True).clamp_min(1e-5)

    def crops(self, wave: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        return self._normalize(torch.stack([wave[s : s + self.crop_samples] for s in starts.tolist()]))

    def batch(self, step, generator):
        starts = torch.randint(
            0, len(self.train_wave) - self.crop_samples + 1, (self.params["batch"],), generator=generator
        )
        return self.crops(self.train_wave, starts)

    def eval_batch(self):
        starts = torch.linspace(0, len(self.eval_wave) - self.crop_samples, EVAL_CROPS).long()
        return self.crops(self.eval_wave, starts)


@register
class Wav2Vec2(RawSpeechTask):
    name = "wav2vec2"
    description = ("wav2vec 2.0-style pre-training on real speech: conv encoder, G x V quantizer, Transformer, "
                   "InfoNCE + diversity + feature penalty, fairseq's temperature schedule.")
    defaults = {
        "audio_dir": "", "variant": "wav2vec2", "groups": 2, "codes": 320, "batch": 8, "crop": 1.0,
        "channels": 64, "dim": 64, "final_dim": 64, "layers": 2, "heads": 4,
        "mask_prob": 0.5, "mask_length": 3, "negatives": 20, "logit_temp": 0.1,
        "diversity": 0.1, "feature_penalty": 0.01, "tau_max": 2.0, "tau_min": 0.5, "tau_decay": 0.999995,
        "max_seconds": DEFAULT_MAX_SECONDS,
    }
    choices = {"variant": ("wav2vec2", "vq-wav2vec")}
    ranges = {
        "groups": Range(1, 64),
        "codes": CODES,
        "batch": Range(1, 256),
        "crop": Range(0, 30, low_open=True, meaning="seconds"),
        "channels": Range(1, 1024),
        "dim": Range(1, 2048),
        "final_dim": Range(1, 2048),
        "layers": Range(1, 24),
        "heads": Range(1, 64),
        "negatives": Range(1, 1024),
        **dict.fromkeys(("mask_prob", "tau_decay"), HALF_OPEN_UNIT),
        **dict.fromkeys(("logit_temp", "tau_max", "tau_min"), POSITIVE),
        **dict.fromkeys(("diversity", "feature_penalty"), Range(0, meaning="a loss weight")),
        "max_seconds": MAX_SECONDS,
    }
    # Per step (a crop second is 3,200 first-layer and 50 Transformer frames), each about MAX_ELEMENTS at most:
    limits = {
        ("batch", "crop"): 128,  # InfoNCE compares every pair of masked frames of a step
        ("batch", "crop", "channels"): 16_384,  # first convolution's output
        ("batch", "crop", "dim"): 262_144,  # Transformer feed-forward (4 dim a frame)
        ("batch", "heads", "crop", "crop"): 16_384,  # attention weights
        ("batch", "crop", "groups", "codes"): 1_048_576,  # quantizer logits
        ("layers", "dim", "dim"): 4_194_304,  # Transformer weights, 12 dim^2 a layer
        ("channels", "groups", "codes"): MAX_ELEMENTS,  # the layer that makes the logits
        ("codes", "final_dim"): MAX_ELEMENTS,  # the codebook
    }
    default_steps = 300
    default_lr = 1e-3
    has_quantizer_problem = True
    code_dim_key, code_dim_per_group = "final_dim", False  # quantized vectors: final_dim = groups x code dimension

    def validate(self):
        p = self.params
        if p["final_dim"] % p["groups"]:
            raise GumbenchError(
                f"{self.name}: final_dim ({p['final_dim']}) must be a multiple of groups ({p['groups']})"
            )
        if p["dim"] % p["heads"] or p["dim"] % 4:
            raise GumbenchError(f"{self.name}: dim ({p['dim']}) must be a multiple of heads ({p['heads']}) and of 4")
        if p["variant"] == "vq-wav2vec":
            if self.given.get("diversity", 0) != 0:
                raise GumbenchError(f"{self.name}: variant=vq-wav2vec (its Gumbel quantizer) has no diversity loss; "
                                    f"drop diversity={self.given['diversity']} or use variant=wav2vec2")
            p["diversity"] = 0.0
        self.crop_samples = int(round(p["crop"] * SAMPLE_RATE))
        self.frames = frames_of(self.crop_samples)
        if p["mask_length"] < 2 or self.frames < p["mask_length"] + 1:
            raise GumbenchError(f"{self.name}: mask_length must be >= 2 and below the {self.frames} frames of a "
                                f"{p['crop']:g} s crop; got {p['mask_length']}")
        self.load_audio()

    def build(self, estimator):
        p = self.params
        return Wav2Vec2Model(
            estimator, p["channels"], p["dim"], p["layers"], p["heads"], p["groups"], p["codes"], p["final_dim"]
        )

    def encode_features(self, model, wave):
        """(features before the layer norm, layer-normed features), each (B, T, C)."""
        raw = model.feature_encoder(wave)
        return raw, model.layer_norm(raw)

    def features(self, model, batch):
        return self.encode_features(model, batch)[1]

    def prepare(self, model, wave, generator) -> MaskedBatch:
        """Encoder, masking, context network and distractors: the step up to the quantizer."""
        p = self.params
        raw, features = self.encode_features(model, wave)
        x = model.post_extract_proj(features)
        mask = span_mask(x.shape[0], x.shape[1], p["mask_prob"], p["mask_length"], generator)
        x = torch.where(mask.unsqueeze(-1), model.mask_embedding.to(x.dtype), x)
        context = model.final_proj(model.context(x)[mask])
        negatives = sample_negatives(mask, p["negatives"], generator)
        return MaskedBatch(features[mask], features, raw.float().pow(2).mean(), mask, context, negatives)

    def contrastive(self, model, masked: MaskedBatch, quantized: torch.Tensor):
        """:func:`info_nce` per masked frame from quantized vectors (..., N, G * code_dim)."""
        return info_nce(masked.context, model.project_q(quantized), masked.negatives, self.params["logit_temp"])

    def quantize(self, model, masked: MaskedBatch, generator) -> Wav2Vec2Terms:
        """The quantizer and the three loss terms (weighted as they enter the total)."""
        p = self.params
        kept = {}

        def downstream(quantized):
            nce = self.contrastive(model, masked, quantized)
            kept["accuracy"] = float(nce.correct.double().mean())
            kept["identical"] = float(nce.identical.mean())
            return nce.loss

        out = model.bottleneck(masked.features, downstream, generator)
        contrastive = out.surrogate.mean()
        zero = contrastive.new_zeros(())
        diversity = (
            p["diversity"] * diversity_loss(out.logits) if out.logits is not None and p["diversity"] > 0 else zero
        )
        penalty = p["feature_penalty"] * masked.feature_penalty if p["feature_penalty"] > 0 else zero
        total = contrastive + diversity + penalty
        return Wav2Vec2Terms(total, contrastive, diversity, penalty, kept["accuracy"], kept["identical"], out, masked)

    def loss(self, model, batch, generator):
        terms = self.quantize(model, self.prepare(model, batch, generator), generator)
        out = terms.bottleneck
        record = {
            "contrastive": float(out.loss.detach().mean()),
            "accuracy": terms.accuracy,
            "identical_distractors": terms.identical,
            "masked_share": float(terms.batch.mask.double().mean()),
            "feature_penalty": float(terms.batch.feature_penalty.detach()),
        }
        if out.logits is not None:
            record["diversity"] = float(diversity_loss(out.logits.detach()))
        record.update({k: float(v.detach().mean()) for k, v in out.aux.items()})
        return StepOutput(terms.total, record, out)

    def quantizer_problem(self, model, wave, generator) -> LogitsProblem:
        """For the gradient study: logits (R, V) of every quantizer group of the masked frames and the
        whole-batch loss on one-hots (S, R, V) -> (S,), the mean InfoNCE over the masked frames.
        Distractors couple the frames, so there is no exact gradient by enumeration."""
        masked = self.prepare(model, wave, generator)
        logits = model.bottleneck.logits_or_vectors(masked.features)  # (N, G, V)
        n, groups, codes = logits.shape

        def loss_fn(onehot):
            quantized = model.bottleneck.lookup(onehot.unflatten(-2, (n, groups)))
            return self.contrastive(model, masked, quantized).loss.mean(-1)

        return LogitsProblem(logits.reshape(n * groups, codes).detach(), loss_fn, name=f"{self.label} quantizer")
