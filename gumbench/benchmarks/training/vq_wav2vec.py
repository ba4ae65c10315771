"""vq-wav2vec (Baevski, Schneider and Auli 2020), small, on real speech.

The model (fairseq's ``Wav2VecModel`` with ``vq_type`` gumbel or kmeans, scaled down):

    z = f(x)                 wav2vec's convolutional encoder on the raw 16 kHz waveform: conv layers
                             (kernel, stride) (10,5), (8,4), (4,2), (4,2), (4,2), (1,1), (1,1), (1,1),
                             each without bias, GroupNorm(1, C) and GELU, then log(|x| + 1): one frame
                             per 10 ms, a receptive field of 465 samples (30 ms)
    z^ = q(z)                the quantizer, G groups of V codes, on every frame (``DiscreteBottleneck``,
                             so any registry estimator): the Gumbel variant (``st-gumbel``) takes its
                             logits from ``quantizer_depth`` layers (fairseq's vq_depth, default 1: one
                             linear layer C -> G V, weight N(0, 1), bias 0; at depth d > 1, d - 1 blocks
                             Linear + GELU of width 2C, then C' -> G V, all with nn.Linear's default init,
                             as fairseq's weight_proj) and selects codebook rows, initialized U(0, 1) as
                             fairseq's vars; the k-means variant (``vq-commitment``, beta = 0.25 = fairseq's
                             vq_gamma) projects z as fairseq's KmeansVectorQuantizer (``kmeans_projection=
                             groupnorm``: a grouped 1 x 1 convolution without bias, then GroupNorm(G, C)) and
                             takes the nearest row of a codebook N(0, s^2), s = ``kmeans_codebook_std`` = 1, the
                             GroupNorm's scale (fairseq's 0.01 fell to one code per group in our trial runs);
                             ``kmeans_projection=linear`` is one linear layer and a codebook N(0, 1/d)
    c = g(z^)                the context network on the **quantized** sequence: causal convolutions
                             with kernels 2, 3, ..., (``context_layers`` + 1) (fairseq's 2..13 for 12
                             layers), each replication-padded on the left, GroupNorm(1, C), GELU, and a
                             skip connection (x + layer(x)) sqrt(1/2); the convolutions are causal, the
                             GroupNorm's statistics (as fairseq's) span the channels and every frame
    h_k(c_i)                 one affine map per step k = o .. o + K - 1 (fairseq's ConvTranspose2d over the
                             steps), from the offset o (``offset``, default fairseq's ``auto``: the encoder's
                             receptive field over its hop, ceil(465 / 160) = 3 frames)

Loss: wav2vec's contrastive prediction of the future (Schneider et al. 2019, eq. 1) on the
quantized targets (vq-wav2vec, eq. 1 with z^ in place of z):

    L = sum_{k=o..o+K-1} L_k,   L_k = - sum_i [ log sigma(z^_{i+k} . h_k(c_i))
                                            + sum_{n=1..N} log sigma(-z^_{j_n} . h_k(c_i)) ]

with N = ``negatives`` distractors z^_{j_n} per target frame i + k, drawn uniformly with
replacement from the other frames of the same crop (fairseq's sample_negatives, the same
distractors for every k). The reported ``contrastive`` term is L divided by the number of
(i, k) pairs (fairseq's wav2vec criterion divides by the number of positives), and the total
adds the estimator's own losses: none for ``st-gumbel`` (vq-wav2vec's Gumbel quantizer has no
diversity loss: fairseq's recipe sets no loss weight for its prob_perplexity extra loss), the
codebook loss ||sg(z) - z^||^2 and the commitment 0.25 ||z - sg(z^)||^2 for ``vq-commitment``
(vq-wav2vec eq. 2, the k-means variant), at weight 1 (fairseq's recipe: ``--loss-weights [1]``; fairseq's
Wav2VecModel scales no gradient of the quantizer: the straight-through pass hands dL/dz^ to z unchanged).

The recipe's schedules (fairseq's vq-wav2vec recipe and paper), over U updates (``updates``; 0, the default:
the run's steps, which the rows' task spec then names; fairseq: 400k):
  learning rate   fairseq's cosine schedule with linear warm-up, at update u = s - 1: lr (w0 + (1 - w0) u / W)
                  for u < W, then lr (f + (1 - f) (1 + cos(pi (u - W) / (U - W))) / 2). fairseq: W = 1,000
                  warm-up updates from 1e-7 to the peak 1e-5 (w0 = 0.01), down to 1e-9 (f = 1e-4); here the
                  same ratios, W = ``warmup`` = 100 and the peak ``--lr`` 1e-3 (Adam, batch 8 crops of 1 s:
                  fairseq's peak is for 16 GPUs of 300k samples each). ``lr_schedule=constant`` keeps the peak.
  temperature     the paper's: linear from tau_max = 2 to tau_min = 0.5 over the first ``tau_anneal`` = 70% of
                  the updates, then 0.5 (``tau_schedule=linear``); fairseq's code decays it exponentially,
                  max(2 x 0.999995^s, 0.5), which reaches 0.5 after 277k of its 400k updates (69%) and would
                  barely move in a run of a few thousand steps (``tau_schedule=exponential``, ``tau_decay``).
  offset          the first step predicted, fairseq's ``auto`` = 3 (``offset=1`` predicts the next frame,
                  whose waveform overlaps the context's last frame by two thirds).

Differences from fairseq, for speed or clarity: C = 64 channels (fairseq 512), 6 context layers
(12), one codebook per group (fairseq's vq-wav2vec recipe shares one across groups, ``combine_groups``),
no dropout, a batch of 8 crops of 1 s (fairseq: up to 300k samples per GPU), thousands of updates (400k).

Quantizer depth: the default is fairseq's vq_depth default, 1. The vq-wav2vec recipe's
``--vq-depth 2`` is selectable (``quantizer_depth=2``), but at this scale the Gumbel variant
collapsed with it in our runs with the earlier settings (offset 1, constant learning rate): noiseless
codes to a couple of entries, the contrastive loss at the constant-score level, with either init of
the last layer.

Rows of the bottleneck are frames (batch, T). The per-row loss of frame i is the sum of the
L(i, k) terms whose context position is i, scaled so that the rows' mean is the contrastive term;
REINFORCE-type estimators credit a frame for those terms only (a frame also enters other frames'
context and targets: a training-time approximation, as for wav2vec2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from gumbench.benchmarks.audio import DEFAULT_MAX_SECONDS, MAX_SECONDS, SAMPLE_RATE
from gumbench.benchmarks.training.base import BottleneckOutput, DiscreteBottleneck, StepOutput, register
from gumbench.benchmarks.training.speech import RawSpeechTask, sample_negatives
from gumbench.errors import GumbenchError
from gumbench.estimators import VQEstimator
from gumbench.plugin import HALF_OPEN_UNIT, MAX_ELEMENTS, POSITIVE, Range

# wav2vec's feature extractor (fairseq's conv_feature_layers default): (kernel, stride)
ENCODER_LAYERS = ((10, 5), (8, 4), (4, 2), (4, 2), (4, 2), (1, 1), (1, 1), (1, 1))


def auto_offset(layers=ENCODER_LAYERS) -> int:
    """fairseq's ``offset=auto``: the encoder's receptive field over its hop, rounded up (465 / 160 -> 3 frames):
    the first step predicted, so that no target frame's samples overlap the frame that predicts it."""
    receptive = hop = 0
    for kernel, stride in layers:
        receptive = kernel if receptive == 0 else receptive + (kernel - 1) * hop
        hop = stride if hop == 0 else hop * stride
    return math.ceil(receptive / hop)


def cosine_lr_factor(step: int, updates: int, warmup: int, warmup_init: float, floor: float) -> float:
    """fairseq's cosine schedule with linear warm-up, as a multiple of the peak learning rate, at ``step`` (from 1;
    fairseq's update count u = step - 1): warmup_init + (1 - warmup_init) u / warmup while u < warmup, then
    floor + (1 - floor) (1 + cos(pi t)) / 2 with t = (u - warmup) / (updates - warmup), held at t = 1 beyond."""
    u = step - 1
    if u < warmup:
        return warmup_init + (1 - warmup_init) * u / warmup
    t = min(1.0, (u - warmup) / max(updates - warmup, 1))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def linear_temperature(step: int, updates: int, tau_max: float, tau_min: float, anneal: float) -> float:
    """vq-wav2vec's Gumbel temperature: from tau_max to tau_min linearly over the first ``anneal`` share of the
    updates, then tau_min: tau_max - (tau_max - tau_min) min(1, step / (anneal updates))."""
    return tau_max - (tau_max - tau_min) * min(1.0, step / (anneal * updates))


def encoder_frames(samples: int) -> int:
    """Frames the encoder makes from ``samples`` samples (one per 160, 10 ms at 16 kHz)."""
    for kernel, stride in ENCODER_LAYERS:
        samples = (samples - kernel) // stride + 1
    return samples


class WavEncoder(nn.Module):
    """Raw waveform (B, samples) -> z (B, T, C): conv, GroupNorm(1, C), GELU per layer, then log(|x| + 1)."""

    def __init__(self, channels: int):
        super().__init__()
        layers, cin = [], 1
        for kernel, stride in ENCODER_LAYERS:
            layers += [nn.Conv1d(cin, channels, kernel, stride, bias=False), nn.GroupNorm(1, channels), nn.GELU()]
            cin = channels
        self.layers = nn.Sequential(*layers)

    def forward(self, wave):
        return torch.log1p(self.layers(wave.unsqueeze(1)).abs()).transpose(1, 2)


class CausalContext(nn.Module):
    """Quantized sequence (..., T, C) -> context (..., T, C): causal convolutions with kernels 2..layers+1,
    each left-padded by replication, GroupNorm(1, C), GELU, and a skip connection scaled by sqrt(1/2)."""

    def __init__(self, channels: int, layers: int, residual_scale: float = 0.5):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReplicationPad1d((k - 1, 0)), nn.Conv1d(channels, channels, k), nn.GroupNorm(1, channels), nn.GELU()
            )
            for k in range(2, layers + 2)
        )
        self.scale = math.sqrt(residual_scale)

    def forward(self, x):
        lead = x.shape[:-2]
        x = x.reshape(-1, *x.shape[-2:]).transpose(1, 2)  # (B', C, T)
        for block in self.blocks:
            x = (x + block(x)) * self.scale
        return x.transpose(1, 2).reshape(*lead, x.shape[-1], x.shape[1])


class GroupNormProjection(nn.Module):
    """fairseq's KmeansVectorQuantizer projection, (..., T, C) -> (..., T, C): a grouped 1 x 1 convolution without
    bias (one C/G x C/G map per group), then GroupNorm(G, C), whose statistics span a group's channels and frames."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.in_features = channels
        self.conv = nn.Conv1d(channels, channels, 1, groups=groups, bias=False)
        self.norm = nn.GroupNorm(groups, channels)

    def forward(self, x):
        lead = x.shape[:-2]
        y = self.norm(self.conv(x.reshape(-1, *x.shape[-2:]).transpose(1, 2)))
        return y.transpose(1, 2).reshape(*lead, *x.shape[-2:])


class VqWav2VecModel(nn.Module):
    def __init__(self, estimator, channels, groups, codes, context_layers, steps, quantizer_depth,
                 kmeans_projection="groupnorm", kmeans_codebook_std=1.0):
        super().__init__()
        self.feature_encoder = WavEncoder(channels)
        # the Gumbel quantizer's logits come from an MLP of quantizer_depth layers (fairseq's weight_proj_depth:
        # Linear + GELU blocks of width 2C, then the layer that makes the logits); the k-means one projects linearly
        widths = (
            [channels] if isinstance(estimator, VQEstimator) else [channels] + [2 * channels] * (quantizer_depth - 1)
        )
        self.quantizer_hidden = nn.Sequential(
            *(layer for a, b in zip(widths, widths[1:]) for layer in (nn.Linear(a, b), nn.GELU()))
        )
        self.bottleneck = DiscreteBottleneck(estimator, widths[-1], groups, codes, channels // groups)
        if self.bottleneck.is_vq and kmeans_projection == "groupnorm":  # fairseq's projection and codebook init
            self.bottleneck.project = GroupNormProjection(channels, groups)
            nn.init.normal_(self.bottleneck.codebook, 0.0, kmeans_codebook_std)
        # k-means with the linear projection: DiscreteBottleneck's codebook N(0, 1/d) stays (fairseq's 0.01 N(0, 1)
        # collapsed behind it in our runs)
        if (
            not self.bottleneck.is_vq
        ):  # fairseq's GumbelVectorQuantizer: vars ~ U(0, 1); weight_proj N(0, 1), bias 0 only at depth 1
            nn.init.uniform_(self.bottleneck.codebook, 0.0, 1.0)
            if quantizer_depth == 1:
                nn.init.normal_(self.bottleneck.project.weight, 0.0, 1.0)
                nn.init.zeros_(self.bottleneck.project.bias)
        self.context = CausalContext(channels, context_layers)
        self.predict = nn.ConvTranspose2d(channels, channels, (1, steps))  # h_k(c) = W_k c + b, k = 1..K


class Prediction(NamedTuple):
    loss: torch.Tensor  # (..., B, T) per context frame, scaled so that the mean over frames is the mean over pairs
    pairs: int  # (i, k) pairs with i + k inside the crop
    accuracy: torch.Tensor  # (...) share of pairs whose positive beats every distractor (a tie is a miss)
    identical: torch.Tensor  # (...) share of the distractors equal to their positive (high when codes collapse)


@dataclass
class VqWav2VecBatch:
    """A step before the quantizer."""

    features: torch.Tensor  # (B, T, C or 2C) the quantizer's input
    negatives: torch.Tensor  # (B, T, N) distractor frames per target frame, indices into B x T


@dataclass
class VqWav2VecTerms:
    total: torch.Tensor
    contrastive: torch.Tensor  # mean over (i, k) pairs of the future-prediction loss
    quantizer: (
        torch.Tensor
    )  # the estimator's own losses, weighted (codebook + 0.25 commitment for vq-commitment; 0 for st-gumbel)
    accuracy: float
    identical: float  # share of distractors equal to their positive (wav2vec's loss keeps them)
    bottleneck: BottleneckOutput
    batch: VqWav2VecBatch


@register
class VqWav2Vec(RawSpeechTask):
    name = "vq-wav2vec"
    description = (
        "vq-wav2vec on real speech: wav2vec's conv encoder, G x V quantizer (st-gumbel: Gumbel; vq-commitment: "
        "k-means), causal conv context network on the quantized frames, contrastive prediction k = 1..K steps ahead."
    )
    defaults = {
        "audio_dir": "", "groups": 2, "codes": 320, "batch": 8, "crop": 1.0, "channels": 64, "context_layers": 6,
        "steps_ahead": 12, "offset": auto_offset(), "negatives": 10, "quantizer_depth": 1,
        "kmeans_projection": "groupnorm", "kmeans_codebook_std": 1.0, "updates": 0,
        "lr_schedule": "cosine", "warmup": 100, "warmup_init": 0.01, "lr_floor": 1e-4,
        "tau_schedule": "linear", "tau_max": 2.0, "tau_min": 0.5, "tau_anneal": 0.7, "tau_decay": 0.999995,
        "max_seconds": DEFAULT_MAX_SECONDS,
    }
    choices = {"lr_schedule": ("cosine", "constant"), "tau_schedule": ("linear", "exponential"),
               "kmeans_projection": ("groupnorm", "linear")}
    requires = {
        "warmup": ("lr_schedule", "cosine"), "warmup_init": ("lr_schedule", "cosine"),
        "lr_floor": ("lr_schedule", "cosine"), "tau_anneal": ("tau_schedule", "linear"),
        "tau_decay": ("tau_schedule", "exponential"), "kmeans_codebook_std": ("kmeans_projection", "groupnorm"),
    }
    ranges = {
        "groups": Range(1, 64),
        "codes": Range(1, 65_536),
        "batch": Range(1, 256),
        "crop": Range(0, 30, low_open=True, meaning="seconds"),
        "channels": Range(2, 1024),
        "context_layers": Range(1, 24),
        "steps_ahead": Range(1, 64),
        "offset": Range(1, 64),
        "negatives": Range(1, 256),
        "quantizer_depth": Range(1, 4),
        "updates": Range(0, 10_000_000, meaning="the schedules' length in updates; 0: the run's steps"),
        "warmup": Range(0, 10_000_000),
        "kmeans_codebook_std": POSITIVE,
        "warmup_init": Range(0, 1, low_open=True),
        "lr_floor": Range(0, 1),
        "tau_anneal": Range(0, 1, low_open=True),
        "tau_decay": HALF_OPEN_UNIT,
        **dict.fromkeys(("tau_max", "tau_min"), POSITIVE),
        "max_seconds": MAX_SECONDS,
    }
    # Per step (a crop second is 3,199 first-layer and 98 encoder frames), each about MAX_ELEMENTS at most:
    limits = {
        ("batch", "crop", "channels"): 65_536,  # first convolution's output
        ("batch", "crop", "steps_ahead", "negatives", "channels"): 1_048_576,  # predictions x distractors
        ("batch", "crop", "groups", "codes"): 2_097_152,  # quantizer logits
        ("channels", "channels", "context_layers", "context_layers"): MAX_ELEMENTS,  # context weights, ~C^2 L^2 / 2
        ("channels", "channels", "steps_ahead"): MAX_ELEMENTS,  # h_k
        ("channels", "groups", "codes"): MAX_ELEMENTS,  # the layer that makes the logits; the codebook
    }
    default_steps = 400  # the committed runs (results/speech/training-vq-wav2vec.csv)
    default_lr = 1e-3
    # the committed runs (5 seeds each, results/speech/training-vq-wav2vec.csv; tested against learning_check)
    unranked = {
        label: "gradient-path demonstration only: at the committed budget its eval-accuracy interval over 5 seeds "
        "is not above chance or some runs collapse (learning_check on results/speech/training-vq-wav2vec.csv)"
        for label in ("st-gumbel", "vq-commitment")
    }
    code_dim_key, code_dim_per_group = "channels", False  # the quantized frames are channels = groups x code dimension

    def validate(self):
        p = self.params
        if p["channels"] % p["groups"]:
            raise GumbenchError(f"{self.name}: channels ({p['channels']}) must be a multiple of groups ({p['groups']})")
        self.crop_samples = int(round(p["crop"] * SAMPLE_RATE))
        self.frames = encoder_frames(self.crop_samples)
        farthest = p["offset"] + p["steps_ahead"] - 1
        if self.frames < farthest + 2:
            raise GumbenchError(
                f"{self.name}: a {p['crop']:g} s crop gives {self.frames} frames; predicting "
                f"steps_ahead={p['steps_ahead']} from offset={p['offset']} (up to {farthest} frames ahead) needs at "
                f"least {farthest + 2}: use a longer crop, fewer steps or a smaller offset"
            )
        self.load_audio()

    @property
    def updates(self) -> int:
        """The schedules' length: ``updates``, or the default steps where it is 0 (a run names its own)."""
        return self.params["updates"] or self.default_steps

    def for_budget(self, steps):
        return self.with_params(updates=steps) if self.params["updates"] == 0 else self

    def temperature(self, step):
        p = self.params
        if p["tau_schedule"] == "exponential":
            return super().temperature(step)
        return linear_temperature(step, self.updates, p["tau_max"], p["tau_min"], p["tau_anneal"])

    def lr_factor(self, step):
        p = self.params
        if p["lr_schedule"] == "constant":
            return None
        return cosine_lr_factor(step, self.updates, p["warmup"], p["warmup_init"], p["lr_floor"])

    def build(self, estimator):
        p = self.params
        return VqWav2VecModel(
            estimator,
            p["channels"],
            p["groups"],
            p["codes"],
            p["context_layers"],
            p["steps_ahead"],
            p["quantizer_depth"],
            p["kmeans_projection"],
            p["kmeans_codebook_std"],
        )

    def features(self, model, batch):
        """The quantizer's input for every frame, (B, T, C or 2C): z, through the logits MLP's hidden layers."""
        return model.quantizer_hidden(model.feature_encoder(batch))

    def draw_negatives(self, batch_size: int, generator) -> torch.Tensor:
        """(B, T, N) for every target frame, N frames of the same crop other than itself (indices into B x T)."""
        mask = torch.ones(batch_size, self.frames, dtype=torch.bool)
        return sample_negatives(mask, self.params["negatives"], generator).reshape(batch_size, self.frames, -1)

    def predict(self, model, context_input: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> Prediction:
        """The future-prediction loss: the context network reads ``context_input`` (..., B, T, C), the positives
        and distractors come from ``targets`` (..., B, T, C); both are the quantized sequence in training
        (separate arguments so that the two paths can be told apart)."""
        batch, frames, dim = targets.shape[-3:]
        lead = targets.shape[:-3]
        steps, offset = self.params["steps_ahead"], self.params["offset"]
        context = model.context(context_input)  # (..., B, T, C)
        flat = context.reshape(-1, frames, dim).transpose(1, 2).unsqueeze(-1)  # (B', C, T, 1)
        h = model.predict(flat).permute(0, 2, 3, 1).reshape(*lead, batch, frames, steps, dim)  # (..., B, T, K, C)
        pool = targets.reshape(*lead, batch * frames, dim)
        distractors = pool[..., negatives.reshape(-1), :].reshape(*lead, batch, frames, -1, dim)  # (..., B, T, N, C)
        candidates = torch.cat([targets.unsqueeze(-2), distractors], dim=-2)  # (..., B, T, 1 + N, C): positive first
        with torch.no_grad():
            identical = (distractors == targets.unsqueeze(-2)).all(-1)  # (..., B, T, N) the same codebook rows
        total = targets.new_zeros((*lead, batch, frames))
        correct = targets.new_zeros(lead)
        same = targets.new_zeros(lead)
        pairs = 0
        for j in range(steps):
            k = offset + j  # the j-th map predicts k frames ahead
            pred = h[..., : frames - k, j, :]  # h_k(c_i) for i + k < T
            scores = torch.einsum(
                "...tc,...tnc->...tn", pred, candidates[..., k:, :, :]
            )  # one product for all, so ties are exact
            positive, negative = scores[..., 0], scores[..., 1:]
            term = F.softplus(-positive) + F.softplus(negative).sum(-1)  # -log sigma(pos) - sum log sigma(-neg)
            total = total + F.pad(term, (0, k))
            with torch.no_grad():
                correct = correct + (positive.unsqueeze(-1) > negative).all(-1).flatten(-2).sum(-1).to(correct.dtype)
                same = same + identical[..., k:, :].to(same.dtype).mean(-1).flatten(-2).sum(-1)
            pairs += batch * (frames - k)
        per_row = total * (batch * frames / pairs)
        return Prediction(per_row, pairs, correct / pairs, same / pairs)

    def prepare(self, model, wave, generator) -> VqWav2VecBatch:
        """The step up to the quantizer: its input and the distractors (drawn before the quantizer's noise)."""
        return VqWav2VecBatch(self.features(model, wave), self.draw_negatives(wave.shape[0], generator))

    def quantize(self, model, batch: VqWav2VecBatch, generator) -> VqWav2VecTerms:
        """The quantizer and the loss terms of a step."""
        kept = {}

        def downstream(quantized):
            prediction = self.predict(model, quantized, quantized, batch.negatives)
            kept["accuracy"] = float(prediction.accuracy.double().mean())
            kept["identical"] = float(prediction.identical.double().mean())
            return prediction.loss

        out = model.bottleneck(batch.features, downstream, generator)
        contrastive = out.loss.mean()
        quantizer = sum((v.mean() for v in out.aux.values()), contrastive.new_zeros(()))
        # the total is the estimator's surrogate: contrastive + quantizer for st-gumbel and vq-commitment
        return VqWav2VecTerms(
            out.surrogate.mean(), contrastive, quantizer, kept["accuracy"], kept["identical"], out, batch
        )

    def loss(self, model, batch, generator):
        terms = self.quantize(model, self.prepare(model, batch, generator), generator)
        out = terms.bottleneck
        record = {
            "contrastive": float(terms.contrastive.detach()),
            "accuracy": terms.accuracy,
            "identical_distractors": terms.identical,
        }
        record.update({k: float(v.detach().mean()) for k, v in out.aux.items()})
        return StepOutput(terms.total, record, out)

    def evaluate(self, model, batch, indices):
        """On the evaluation crops with the deterministic codes (noiseless argmax, or nearest row): the
        contrastive term and the share of (i, k) pairs whose positive beats all distractors (distractors
        from a fixed generator, so evaluations compare)."""
        quantized = model.bottleneck.decode(indices).to(batch.dtype)
        negatives = self.draw_negatives(batch.shape[0], torch.Generator().manual_seed(0))
        prediction = self.predict(model, quantized, quantized, negatives)
        return {"contrastive": float(prediction.loss.mean()), "accuracy": float(prediction.accuracy),
                "identical_distractors": float(prediction.identical)}
