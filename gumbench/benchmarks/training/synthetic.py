"""Small training tasks with a known truth: digits VAE, Gaussian-mixture VQ autoencoder, tones.

digits-vae
    A categorical VAE on scikit-learn's 8x8 digits (shipped with scikit-learn, binarized at
    half intensity; 1,500 images train, 297 evaluate). q(z|x) = prod_l Cat(softmax(logits_l))
    over ``latents`` x ``categories``; decoder p(x|z) Bernoulli over 64 pixels; uniform prior.
    Loss -ELBO = E_q[-log p(x|z)] + KL(q || uniform), the KL analytic. With a VQ estimator the
    posterior is a point mass and the KL the constant sum_l log C, as in VQ-VAE. At 4 x 8
    latents (4,096 codes) :func:`gumbench.benchmarks.studies.elbo_gradient_study` enumerates the
    exact gradient of the reconstruction term w.r.t. the encoder logits inside the trained model.
gmm-vq
    An autoencoder on a mixture of ``clusters`` Gaussians in ``dim`` dimensions (centres
    ~ N(0, I), spread ``noise``) with ``codes`` codes: utilization against the known number
    of clusters, purity and NMI of the codes against the true components.
tones
    A waveform (16 kHz) of symbols from a fixed set of ``symbols`` pure tones (log-spaced
    300-3,400 Hz, random phase, amplitude and 2-6 frame durations, white noise at ``snr`` dB);
    features are log-magnitude spectra of 20 ms frames, standardized per bin; the quantizer should find the tones:
    purity and NMI of the codes against the symbol of each frame.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gumbench.benchmarks.training.base import (
    BATCH,
    CODES,
    WIDTH,
    DiscreteBottleneck,
    StepOutput,
    TrainingTask,
    register,
)
from gumbench.plugin import MAX_ELEMENTS, SEED, Range

CODE_DIM = Range(1, 1024, meaning="dimension of one group's code vector")


def mlp(*sizes: int) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.GELU()]
    return nn.Sequential(*layers[:-1])


def purity(codes: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of items whose code's majority label is their own label."""
    # codes renumbered 0..(distinct codes - 1): a table row per code used, not per code index (4 groups of
    # 1,000 implicit codes make joint indices up to 10^12)
    codes, labels = torch.unique(codes.reshape(-1), return_inverse=True)[1], labels.reshape(-1).long()
    table = torch.zeros(int(codes.max()) + 1, int(labels.max()) + 1)
    table.index_put_((codes, labels), torch.ones(len(codes)), accumulate=True)
    return float(table.max(1).values.sum() / len(codes))


def nmi(codes: torch.Tensor, labels: torch.Tensor) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(labels.reshape(-1).numpy(), codes.reshape(-1).numpy()))


class _Autoencoder(nn.Module):
    def __init__(self, estimator, in_dim, hidden, groups, codes, code_dim, out_dim):
        super().__init__()
        self.encoder = mlp(in_dim, hidden, hidden)
        self.bottleneck = DiscreteBottleneck(estimator, hidden, groups, codes, code_dim)
        self.decoder = mlp(groups * code_dim, hidden, out_dim)


class _AutoencoderTask(TrainingTask):
    """Encoder -> bottleneck -> decoder; subclasses give data and the reconstruction loss. ``code_dim`` is
    the dimension of one group's code vector; a quantizer with an implicit code space (fsq, lfq, bsq) sets it
    and the codes unless the spec does (:meth:`TrainingTask.sized_for`)."""

    def build(self, estimator):
        return _Autoencoder(
            estimator, self.in_dim, self.params["hidden"], self.groups, self.codes, self.params["code_dim"], self.in_dim
        )

    def features(self, model, batch):
        return model.encoder(batch[0])

    def reconstruction_loss(self, output, target):
        return (output - target).pow(2).mean(-1)

    def loss(self, model, batch, generator):
        x = batch[0]
        out = model.bottleneck(
            self.features(model, batch), lambda q: self.reconstruction_loss(model.decoder(q), x), generator
        )
        total = out.surrogate.mean()
        terms = {"reconstruction": float(out.loss.detach().mean())}
        terms.update({k: float(v.detach().mean()) for k, v in out.aux.items()})
        return StepOutput(total, terms, out)

    def evaluate(self, model, batch, indices):
        x, labels = batch
        recon = self.reconstruction_loss(model.decoder(model.bottleneck.decode(indices).to(x.dtype)), x)
        metrics = {"reconstruction": float(recon.mean())}
        if labels is not None:
            joint = (
                indices[..., 0] if self.groups == 1 else (indices * (self.codes ** torch.arange(self.groups))).sum(-1)
            )
            metrics.update(purity=purity(joint, labels), nmi=nmi(joint, labels))
        return metrics


@register
class DigitsVAE(_AutoencoderTask):
    name = "digits-vae"
    description = "Categorical VAE on scikit-learn's 8x8 digits; exact ELBO gradients at 4 x 8 latents."
    defaults = {"latents": 4, "categories": 8, "hidden": 128, "batch": 64, "code_dim": 8}
    ranges = {"latents": Range(1, 1024), "categories": CODES, "hidden": WIDTH, "batch": BATCH, "code_dim": CODE_DIM}
    # the logits of a step, the layer that makes them, the codes (code_dim dimensions each in the codebook)
    limits = {("batch", "latents", "categories"): MAX_ELEMENTS, ("hidden", "latents", "categories"): MAX_ELEMENTS,
              ("latents", "categories"): 1_048_576, ("latents", "categories", "code_dim"): MAX_ELEMENTS,
              ("hidden", "latents", "code_dim"): MAX_ELEMENTS}
    default_steps = 300
    codes_key = "categories"  # the codes of each of the latents (groups)

    def validate(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        self.images = (images > 0.5).float()
        self.labels = torch.tensor(digits.target)
        self.train_images, self.eval_images = self.images[:1500], self.images[1500:]
        self.groups, self.codes, self.in_dim = self.params["latents"], self.params["categories"], 64

    def batch(self, step, generator):
        index = torch.randint(0, len(self.train_images), (self.params["batch"],), generator=generator)
        return self.train_images[index], self.labels[:1500][index]

    def eval_batch(self):
        return self.eval_images, self.labels[1500:]

    def reconstruction_loss(self, output, target):
        # -log p(x|z) for Bernoulli pixels with logits ``output``
        return nn.functional.binary_cross_entropy_with_logits(output, target.expand_as(output), reduction="none").sum(
            -1
        )

    def kl(self, out) -> torch.Tensor:
        """KL(q(z|x) || uniform) per row; the constant sum_l log C for a VQ (point-mass) posterior."""
        const = self.groups * math.log(self.codes)
        if out.logits is None:
            return torch.full(out.loss.shape[-1:], const)
        log_q = torch.log_softmax(out.logits, -1)
        return (log_q.exp() * log_q).sum((-2, -1)) + const

    def loss(self, model, batch, generator):
        step = super().loss(model, batch, generator)
        kl = self.kl(step.bottleneck)
        step.terms["kl"] = float(kl.detach().mean())
        step.terms["negative_elbo"] = step.terms["reconstruction"] + step.terms["kl"]
        return StepOutput(step.total + kl.mean(), step.terms, step.bottleneck)


@register
class GaussianMixtureVQ(_AutoencoderTask):
    name = "gmm-vq"
    description = ("Autoencoder on a Gaussian mixture with a known number of clusters: utilization, purity and NMI "
                   "against the truth.")
    default_steps = 300
    defaults = {
        "clusters": 8,
        "dim": 16,
        "codes": 32,
        "noise": 0.1,
        "hidden": 64,
        "batch": 256,
        "seed": 0,
        "code_dim": 8,
    }
    ranges = {"clusters": CODES, "dim": WIDTH, "codes": CODES, "hidden": WIDTH, "batch": BATCH, "code_dim": CODE_DIM,
              "noise": Range(0, 1000, low_open=True, meaning="spread around centres of spread 1"), "seed": SEED}
    limits = {("batch", "codes"): MAX_ELEMENTS, ("hidden", "codes"): MAX_ELEMENTS, ("clusters", "dim"): MAX_ELEMENTS,
              ("codes", "code_dim"): MAX_ELEMENTS, ("hidden", "code_dim"): MAX_ELEMENTS}

    def validate(self):
        gen = torch.Generator().manual_seed(self.params["seed"])
        self.centres = torch.randn(self.params["clusters"], self.params["dim"], generator=gen)
        self.groups, self.codes, self.in_dim = 1, self.params["codes"], self.params["dim"]
        self._eval = self.sample(2048, torch.Generator().manual_seed(self.params["seed"] + 1))

    def sample(self, count, generator):
        labels = torch.randint(0, self.params["clusters"], (count,), generator=generator)
        noise = self.params["noise"] * torch.randn(count, self.params["dim"], generator=generator)
        return self.centres[labels] + noise, labels

    def batch(self, step, generator):
        return self.sample(self.params["batch"], generator)

    def eval_batch(self):
        return self._eval

    def evaluate(self, model, batch, indices):
        metrics = super().evaluate(model, batch, indices)
        metrics["codes_per_cluster"] = float(torch.unique(indices).numel() / self.params["clusters"])
        return metrics


SAMPLE_RATE = 16_000
FRAME = 320  # 20 ms


@register
class Tones(_AutoencoderTask):
    name = "tones"
    description = "Waveform of symbols from a fixed set of pure tones: do the codes discover the tones (purity, NMI)?"
    default_steps = 300
    defaults = {
        "symbols": 8,
        "codes": 16,
        "snr": 10.0,
        "frames": 4000,
        "hidden": 64,
        "batch": 128,
        "seed": 0,
        "code_dim": 8,
    }
    # snr=inf: no noise. frames: 200,000 of 20 ms are 67 minutes (256 MiB of float32 samples); the 80/20
    # train/evaluation split needs 8 and 2 at least.
    ranges = {"symbols": Range(1, 4096), "codes": CODES, "snr": Range(-100, math.inf, meaning="dB"),
              "frames": Range(10, 200_000), "hidden": WIDTH, "batch": BATCH, "seed": SEED, "code_dim": CODE_DIM}
    limits = {("batch", "codes"): MAX_ELEMENTS, ("hidden", "codes"): MAX_ELEMENTS, ("codes", "code_dim"): MAX_ELEMENTS,
              ("hidden", "code_dim"): MAX_ELEMENTS}

    def validate(self):
        gen = torch.Generator().manual_seed(self.params["seed"])
        self.frequencies = torch.logspace(math.log10(300), math.log10(3400), self.params["symbols"])
        self.waveform, self.frame_labels = self.synthesize(self.params["frames"], gen)
        spectra = self.spectra(self.waveform)
        split = int(0.8 * len(self.frame_labels))
        # standardize each frequency bin (train statistics) so the tone peaks, not the noise floor, dominate
        mean, std = spectra[:split].mean(0), spectra[:split].std(0).clamp_min(1e-6)
        self.frame_features = (spectra - mean) / std
        self.train_set = (self.frame_features[:split], self.frame_labels[:split])
        self.eval_set = (self.frame_features[split:], self.frame_labels[split:])
        self.groups, self.codes, self.in_dim = 1, self.params["codes"], self.frame_features.shape[1]

    def synthesize(self, frames, gen):
        """Symbols of 2-6 frames each; returns the waveform and the symbol of every frame."""
        labels, pieces, t = [], [], torch.arange(FRAME * 6) / SAMPLE_RATE
        while len(labels) < frames:
            symbol = int(torch.randint(0, self.params["symbols"], (1,), generator=gen))
            length = int(torch.randint(2, 7, (1,), generator=gen))
            phase = 2 * math.pi * float(torch.rand(1, generator=gen))
            amplitude = 0.3 + 0.7 * float(torch.rand(1, generator=gen))
            pieces.append(amplitude * torch.sin(2 * math.pi * self.frequencies[symbol] * t[: length * FRAME] + phase))
            labels += [symbol] * length
        wave = torch.cat(pieces)[: frames * FRAME]
        noise_std = math.sqrt(0.5 * 0.65**2) * 10 ** (-self.params["snr"] / 20)  # mean tone power ~ a^2/2
        wave = wave + noise_std * torch.randn(wave.shape, generator=gen)
        return wave, torch.tensor(labels[:frames])

    @staticmethod
    def spectra(wave):
        frames = wave.reshape(-1, FRAME) * torch.hann_window(FRAME)
        return torch.log1p(torch.fft.rfft(frames).abs())

    def batch(self, step, generator):
        index = torch.randint(0, len(self.train_set[1]), (self.params["batch"],), generator=generator)
        return self.train_set[0][index], self.train_set[1][index]

    def eval_batch(self):
        return self.eval_set
