"""Gradient-statistics problems for vector quantization, with a reference gradient to compare with.

A quantizer becomes a categorical choice once its codes carry probabilities. Every problem here is a
small model: a fixed input x in R^8, an encoder z = enc(x) of G groups of D dimensions, a codebook E of
G x K codes in D dimensions drawn from ``seed``, and a decoder with a loss on the decoded vector,

    encoder  linear: z = A x                  mlp: z = A2 tanh(A1 x)          (16 hidden units)
    decoder  linear: y = B q                  mlp: y = B2 tanh(B1 q)          (q: the G x D quantized vector)
    loss     quadratic: ||y - t||^2           linear: c . y                   cross-entropy: logsumexp(y) - y_c
             (y in R^4; t, c ~ N(0, 1), class c uniform, all from the seed)

``vq-distance`` is the stochastic quantizer q_T(k | z) = softmax_k(-||z - e_k||^2 / T), per group (SQ-VAE,
Takida et al. 2022; the distance-logit view of stochastic code sampling), with the objective

    J_T(z, E) = E_{k ~ q_T}[L(e_k)] = sum over the K^G codes of prod_g q_T(k_g | z_g) L(e_{k_1}, ..., e_{k_G})

computed by enumeration in float64 (K^G <= 65,536), differentiable in z and E: the exact gradient is
autograd of this sum (the tests check it against the closed form: score part plus pathwise part).
As T -> 0, q_T becomes the one-hot of the nearest code, J_T the hard VQ objective L(e_nearest(z)):
its gradient in z tends to 0 (the nearest code does not move when z moves a little) and its gradient
in E to dL/de at the nearest code. With ``stages=2`` (residual VQ on two stages) the codebook's K rows
split into two books of K/2 (as ``residual-vq`` splits them), q_T(k1 | z) over the first,
q_T(k2 | z - e_k1) over the second, and the decoded vector is e_k1 + e_k2; (K/2)^(2G) <= 65,536.

``quantizer-smoothed`` is the Gaussian-smoothed objective of a deterministic quantizer Q (nearest-code VQ,
FSQ or LFQ), J_sigma(z) = E_eps[L(Q(z + sigma eps))], eps ~ N(0, I); its gradient in z is
E[L(Q(z + sigma eps)) eps] / sigma (Stein's identity), estimated from ``reference_samples`` antithetic pairs,
(L(Q(z + sigma eps)) - L(Q(z - sigma eps))) eps / (2 sigma), with its error bar: the root of the summed
per-coordinate variances of that mean (``reference_error``), which adds to the measured bias.

``wrt`` picks what the statistics are of: the gradient in z (the encoder output) or in the codebook E.
What an estimator's gradient is: the gradient of the downstream loss only (the surrogate of a
categorical estimator; ``out.loss`` of a VQ estimator): the auxiliary codebook and commitment losses
are not part of J and are left out, so a straight-through VQ's codebook gradient is 0 (its codes learn
from the codebook loss, not from L).

Estimators (``default_estimators``): on ``vq-distance`` every categorical estimator handed the distance
logits -||z - e_k||^2 / T (and a loss that decodes a (relaxed) one-hot y as y E) and the single-stage VQ
estimators with a learned codebook (``vq-commitment`` with and without the rotation trick, ``nsvq``,
``ibq``, ``simvq``, ``diveq``, ``vqbridge``: their own forward, which does not depend on T); with ``stages=2``
``residual-vq`` on two stages; on ``quantizer-smoothed`` the quantizer's own straight-through estimator at z
(with ``quantizer=vq`` every VQ estimator whose eval value is the nearest code). ``sf-diveq`` (its value lies
between codes), ``fsp`` (its own bins) and options that rewrite the codebook are refused with the reason.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from gumbench.benchmarks.problems.base import GradientProblem, Reference, draws_per_estimate
from gumbench.benchmarks.problems.enumeration import MAX_ENUMERATION, enumerate_configurations
from gumbench.errors import GumbenchError
from gumbench.plugin import SEED, Plugin, Range

INPUT_DIM, HIDDEN, OUTPUT_DIM = 8, 16, 4
PROBLEM_ELEMENTS = 2**18  # elements (rows x the tensors of one row) of one batched draw
SMOOTHING_CHUNK = 2**15  # antithetic pairs scored at once by the smoothed reference
VANISHING = 1e-6  # an exact gradient below this fraction of the gradient at the nearest codes is zero to rounding


class QuantizerProblem(Plugin, GradientProblem):
    """A model around a quantizer with a reference gradient; see the module docstring.

    Subclasses define ``reference()`` and ``incompatibility(estimator)``; the model, the draws and the
    blocks are shared here."""

    formula: ClassVar[str] = ""
    common = {"encoder": "linear", "decoder": "mlp", "loss": "quadratic", "groups": 2, "dim": 4, "wrt": "z", "seed": 0}
    common_choices = {
        "encoder": ("linear", "mlp"),
        "decoder": ("linear", "mlp"),
        "loss": ("quadratic", "linear", "cross-entropy"),
        "wrt": ("z", "codebook"),
    }
    common_ranges = {"groups": Range(1, 16), "dim": Range(1, 16), "seed": SEED}

    def __init__(self, **params):
        super().__init__(**params)
        self._build()

    # --- the model ------------------------------------------------------------------------

    @property
    def codes(self) -> int:
        return self.params["codes"]

    def _build(self) -> None:
        p = self.params
        gen = torch.Generator().manual_seed(int(p["seed"]))
        groups, dim, width = p["groups"], p["dim"], p["groups"] * p["dim"]

        def normal(*shape, scale=1.0):
            return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale

        x = normal(INPUT_DIM)
        if p["encoder"] == "linear":
            z = normal(width, INPUT_DIM, scale=INPUT_DIM**-0.5) @ x
        else:
            hidden = torch.tanh(normal(HIDDEN, INPUT_DIM, scale=INPUT_DIM**-0.5) @ x)
            z = normal(width, HIDDEN, scale=(2.0 / HIDDEN) ** 0.5) @ hidden
        self.z64 = z.reshape(groups, dim)
        self.codebook64 = normal(groups, self.codes, dim)
        if p["decoder"] == "linear":
            self.decoder64 = [normal(OUTPUT_DIM, width, scale=width**-0.5)]
        else:
            self.decoder64 = [normal(HIDDEN, width, scale=width**-0.5), normal(OUTPUT_DIM, HIDDEN, scale=HIDDEN**-0.5)]
        self.target64 = normal(OUTPUT_DIM)
        self.label_index = int(torch.randint(OUTPUT_DIM, (1,), generator=gen))
        self.z = self.z64.float()
        self.codebook = self.codebook64.float()

    def decoded_loss(self, q: torch.Tensor) -> torch.Tensor:
        """L(dec(q)) for quantized vectors q (..., G, D) -> (...), in q's dtype."""
        flat = q.reshape(*q.shape[:-2], -1)
        weights = [w.to(q.dtype) for w in self.decoder64]
        y = flat @ weights[0].T if len(weights) == 1 else torch.tanh(flat @ weights[0].T) @ weights[1].T
        kind = self.params["loss"]
        if kind == "quadratic":
            return (y - self.target64.to(q.dtype)).pow(2).sum(-1)
        if kind == "linear":
            return (y * self.target64.to(q.dtype)).sum(-1)
        return torch.logsumexp(y, -1) - y[..., self.label_index]

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the gradient measured: z (G, D) or the codebook (G, K, D)."""
        return tuple(self.z.shape) if self.params["wrt"] == "z" else tuple(self.codebook.shape)

    # --- references and draws ---------------------------------------------------------------

    def incompatibility(self, estimator) -> str | None:
        """Why ``estimator`` cannot be measured on this problem, or None."""
        raise NotImplementedError  # abstract

    def default_estimators(self) -> list[str]:
        raise NotImplementedError  # abstract

    def check_reference(self, reference: Reference) -> None:
        """Refuse a reference gradient at rounding level: relative statistics against it would be noise."""
        norm = float(reference.gradient.norm())
        if norm <= 1e-10 * max(abs(reference.expected or 0.0), 1.0):
            raise GumbenchError(
                f"{self.spec}: the reference gradient in {self.params['wrt']} is {norm:.3g}, zero to rounding "
                "(at small T the nearest code does not move with z; with one code per stage nothing is chosen); "
                "measure wrt=codebook, a larger T, or more codes"
            )

    def vanishes(self, reference: Reference) -> bool:
        """The reference is below VANISHING x the norm of the loss's gradient at the nearest codes (what a
        straight-through pass sends back): at small T the nearest code does not move with z (a gradient of ~1e-9)."""
        return float(reference.gradient.norm()) <= VANISHING * self.gradient_scale()

    def gradient_scale(self) -> float:
        """||d L(dec(q)) / dq|| at q = the nearest code of each group (float64)."""
        nearest = (self.z64.unsqueeze(-2) - self.codebook64).pow(2).sum(-1).argmin(-1)
        q = self.codebook64[torch.arange(len(nearest)), nearest].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.decoded_loss(q).sum(), q)
        return float(grad.norm())

    @property
    def choice_shape(self) -> tuple[int, int]:
        return int(self.z.shape[0]), int(self.codes)

    def rows_at_once(self, estimator, chunk_size: int | None = None, samples: int | None = None,
                     owner: str = "problem_statistics") -> int:
        """Rows of one batched draw: ``chunk_size`` if given, else PROBLEM_ELEMENTS over a row's elements (its copy
        of z, E and the draws); never more than ``samples``."""
        per_row = (self.codebook.numel() + self.z.numel()) * draws_per_estimate(estimator)
        rows = chunk_size or max(1, int(PROBLEM_ELEMENTS * math.sqrt(draws_per_estimate(estimator))) // per_row)
        return rows if samples is None else min(samples, rows)

    def peak_memory(self, estimator=None, samples: int | None = None):
        """The larger of the reference's peak and one batched draw's (:mod:`gumbench.footprint`)."""
        from gumbench.estimators import VQEstimator
        from gumbench.footprint import STEP_COPIES, Peak, largest, vq_bytes

        reference = self.reference_peak()
        if estimator is None:
            return reference
        rows, draws = self.rows_at_once(estimator, None, samples), draws_per_estimate(estimator)
        groups, dim = self.z.shape
        held = 4 * STEP_COPIES * rows * draws * (self.codebook.numel() + self.z.numel())
        if isinstance(estimator, VQEstimator):
            held += vq_bytes(rows, groups, self.codebook.shape[1], dim)
        return largest(reference, Peak(held, ("codes", "groups", "dim")))

    def reference_peak(self):
        raise NotImplementedError  # abstract: each problem's reference holds its own tensors

    def leaves(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row copies of z (rows, G, D) and E (rows, G, K, D), the one measured requiring its gradient."""
        wrt = self.params["wrt"]
        z = self.z.expand(rows, *self.z.shape).clone().requires_grad_(wrt == "z")
        book = self.codebook.expand(rows, *self.codebook.shape).clone().requires_grad_(wrt == "codebook")
        return z, book

    def draw(self, estimator, rows: int, generator: torch.Generator) -> torch.Tensor:
        """``rows`` independent estimates of the measured gradient, (rows, prod(shape)) in float64."""
        from gumbench.estimators import CategoricalEstimator

        z, book = self.leaves(rows)
        leaf = z if self.params["wrt"] == "z" else book
        if isinstance(estimator, CategoricalEstimator):
            logits = self.distance_logits(z, book)

            def loss_fn(y):  # (..., rows, G, K) -> (..., rows): decode the (relaxed) one-hot as y E
                return self.decoded_loss((y.unsqueeze(-1) * book).sum(-2))

            objective = estimator(logits, loss_fn, generator=generator).surrogate
        else:
            # rows become groups: (1, rows x G, D) vectors with one codebook per (row, group), so one backward
            # gives every row's own gradient (rows never share a code)
            groups, dim = z.shape[-2:]

            def loss_fn(value):  # (1, rows x G, D) -> (1,)
                return self.decoded_loss(value.reshape(rows, groups, dim)).sum().reshape(1)

            objective = estimator(
                z.reshape(1, rows * groups, dim),
                loss_fn,
                codebook=book.reshape(rows * groups, *book.shape[-2:]),
                generator=generator,
            ).loss
        if not torch.isfinite(objective).all():
            raise GumbenchError(f"{estimator.label} on {self.spec}: the loss was not finite")
        (grad,) = torch.autograd.grad(objective.sum(), leaf, allow_unused=True) if objective.requires_grad else (None,)
        if grad is None:  # no downstream gradient reaches this tensor (straight-through VQ's codebook)
            grad = torch.zeros_like(leaf)
        return grad.reshape(rows, -1).to(torch.float64)

    def distance_logits(self, z: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
        """-||z - e_k||^2 / T per group: (..., G, D), (..., G, K, D) -> (..., G, K)."""
        return -(z.unsqueeze(-2) - book).pow(2).sum(-1) / self.params["T"]


def _common(**extra) -> dict:
    return {**QuantizerProblem.common, **extra}


TEMPERATURE_T = Range(1e-3, 1e4, meaning="T, the temperature of the distance logits")


class DistanceVQ(QuantizerProblem):
    name = "vq-distance"
    description = ("VQ as a categorical choice: q_T(k|z) = softmax(-||z - e_k||^2 / T) per group, exact gradient of "
                   "J_T = E_q[L(e_k)] in z or the codebook by enumerating K^G codes; stages=2: residual VQ.")
    formula = ("J_T(z, E) = sum_k prod_g softmax_k(-||z_g - e_gk||^2 / T) L(dec(e_k)); z = enc(x), "
               "L quadratic, linear or cross-entropy; grad in z or E by enumeration")
    defaults = _common(codes=16, stages=1, T=1.0)
    choices = {**QuantizerProblem.common_choices, "stages": (1, 2)}
    ranges = {**QuantizerProblem.common_ranges, "codes": Range(2, MAX_ENUMERATION), "T": TEMPERATURE_T}

    def validate(self) -> None:
        p = self.params
        if p["stages"] == 2 and (p["codes"] % 2 or p["codes"] < 4):
            raise GumbenchError(
                f"{self.name}: stages=2 splits the codes into two books of codes/2, each with a choice; codes "
                f"must be even and at least 4, got {p['codes']}"
            )
        per_group = p["codes"] if p["stages"] == 1 else (p["codes"] // 2) ** 2
        count = per_group ** p["groups"]
        if count > MAX_ENUMERATION:
            raise GumbenchError(
                f"{self.name}: the exact gradient enumerates {per_group}^{p['groups']} = {count:,} configurations; "
                f"at most {MAX_ENUMERATION:,} are allowed (fewer groups or codes)"
            )

    def reference_peak(self):
        """Enumeration holds each configuration's decoded vectors (N, G, D) in float64, with their graph."""
        from gumbench.footprint import STEP_COPIES, Peak

        p = self.params
        per_group = p["codes"] if p["stages"] == 1 else (p["codes"] // 2) ** 2
        configurations = per_group ** p["groups"]
        return Peak(8 * STEP_COPIES * configurations * p["groups"] * (p["dim"] + per_group), ("codes", "groups", "dim"))

    def code_tables(self, z: torch.Tensor, book: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per group, the log-probability (G, C) and decoded vector (G, C, D) of each of its C choices."""
        if self.params["stages"] == 1:
            return torch.log_softmax(self.distance_logits(z, book), -1), book
        half = self.codes // 2
        first, second = book[:, :half], book[:, half:]
        log_first = torch.log_softmax(self.distance_logits(z, first), -1)  # (G, K/2)
        residual = z.unsqueeze(1) - first  # (G, K/2, D): what stage 2 quantizes after each first code
        log_second = torch.log_softmax(
            -(residual.unsqueeze(2) - second.unsqueeze(1)).pow(2).sum(-1) / self.params["T"], -1
        )
        log_pair = (log_first.unsqueeze(-1) + log_second).reshape(z.shape[0], -1)  # (G, K/2 * K/2): k1 major
        decoded = (first.unsqueeze(2) + second.unsqueeze(1)).reshape(z.shape[0], -1, z.shape[-1])
        return log_pair, decoded

    def expectation(self, z: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
        """J_T(z, E) by enumeration (differentiable): z (G, D), codebook (G, K, D)."""
        log_p, decoded = self.code_tables(z, book)
        groups = z.shape[0]
        index = enumerate_configurations(groups, log_p.shape[1])  # (N, G)
        rows = torch.arange(groups)
        log_config = log_p[rows, index].sum(-1)  # (N,)
        losses = self.decoded_loss(decoded[rows, index])  # (N, G, D) -> (N,)
        return (log_config.exp() * losses).sum()

    def compute_reference(self):
        z = self.z64.clone().requires_grad_(True)
        book = self.codebook64.clone().requires_grad_(True)
        value = self.expectation(z, book)
        grad_z, grad_book = torch.autograd.grad(value, (z, book))
        return Reference(grad_z if self.params["wrt"] == "z" else grad_book, float(value.detach()), None)

    def incompatibility(self, estimator) -> str | None:
        from gumbench.estimators import CategoricalEstimator, make_estimator
        from gumbench.estimators.residual import ResidualVQ

        if self.params["stages"] == 2:
            if isinstance(estimator, ResidualVQ) and estimator.params["stages"] == 2:
                return codebook_care(make_estimator(estimator.params["quantizer"]))
            return ("stages=2 measures residual-vq[stages=2] only "
                    "(the choices of its two stages are not independent groups)")
        if isinstance(estimator, CategoricalEstimator):
            return estimator.incompatibility(self.codes)
        if isinstance(estimator, ResidualVQ):
            return "residual VQ is measured with stages=2"
        if estimator.implicit_codes:
            return "its codes are implicit (a grid or a cube), not the rows of a codebook; see quantizer-smoothed"
        return codebook_care(estimator)

    def default_estimators(self) -> list[str]:
        if self.params["stages"] == 2:
            return ["residual-vq[stages=2]", "residual-vq[stages=2,quantizer=nsvq]"]
        from gumbench.estimators import categorical_variants, make_estimator

        categorical = [name for name in categorical_variants() if self.incompatibility(make_estimator(name)) is None]
        return [*VQ_ESTIMATORS, *categorical]


VQ_ESTIMATORS = ("vq-commitment", "vq-commitment[rotation=true]", "nsvq", "ibq", "simvq", "diveq", "vqbridge")


class SmoothedQuantizer(QuantizerProblem):
    name = "quantizer-smoothed"
    description = ("A deterministic quantizer (nearest-code VQ, FSQ, LFQ) smoothed by Gaussian noise: gradient of "
                   "E_eps[L(Q(z + sigma eps))] in z from many antithetic samples, with its error bar.")
    formula = (
        "J_sigma(z) = E_eps[L(dec(Q(z + sigma eps)))], eps ~ N(0, I); grad = E[L(Q(z + sigma eps)) eps] / sigma, "
        "estimated from reference_samples antithetic pairs"
    )
    defaults = _common(quantizer="vq", codes=16, levels="5-5-5-5", sigma=0.1, reference_samples=2**20)
    choices = {**QuantizerProblem.common_choices, "quantizer": ("vq", "fsq", "lfq"), "wrt": ("z",)}
    ranges = {
        **QuantizerProblem.common_ranges,
        "codes": Range(2, MAX_ENUMERATION),
        "sigma": Range(0, 100, low_open=True),
        "reference_samples": Range(2**10, 2**26, meaning="antithetic pairs of the Monte Carlo reference"),
    }
    requires = {"codes": ("quantizer", "vq"), "levels": ("quantizer", "fsq")}

    def validate(self) -> None:
        from gumbench.estimators import make_estimator

        p = self.params
        if p["quantizer"] == "fsq":
            self.quantizer = make_estimator(f"fsq[levels={p['levels']}]")
            if len(self.quantizer.levels) != p["dim"]:
                raise GumbenchError(f"{self.name}: FSQ quantizes one dimension per level; levels={p['levels']} needs "
                                    f"dim={len(self.quantizer.levels)}, got dim={p['dim']}")
        elif p["quantizer"] == "lfq":
            self.quantizer = make_estimator("lfq")
            if 2 ** p["dim"] > MAX_ENUMERATION:
                raise GumbenchError(f"{self.name}: LFQ has 2^dim codes; dim must be at most 16, got {p['dim']}")
        else:
            self.quantizer = make_estimator("vq-commitment")
        self.quantizer.eval()

    @property
    def codes(self) -> int:
        p = self.params
        if p["quantizer"] == "vq":
            return p["codes"]
        return self.quantizer.code_shape(p["dim"])[0]

    def _build(self) -> None:
        super()._build()
        if self.params["quantizer"] != "vq":  # implicit codes: the codebook is only a shape
            self.codebook64 = torch.zeros_like(self.codebook64)
            self.codebook = self.codebook64.float()

    def reference_peak(self):
        """A chunk of antithetic pairs goes through the quantizer at once in float64: nearest-code VQ and LFQ
        compare each vector with every code (:func:`gumbench.footprint.vq_bytes`), FSQ rounds each coordinate."""
        from gumbench.footprint import STEP_COPIES, Peak, vq_bytes

        p = self.params
        chunk = min(SMOOTHING_CHUNK, p["reference_samples"])
        if p["quantizer"] == "fsq":
            return Peak(8 * STEP_COPIES * chunk * p["groups"] * p["dim"], ("groups", "dim"))
        sizes = ("codes", "groups") if p["quantizer"] == "vq" else ("dim", "groups")
        return Peak(vq_bytes(chunk, p["groups"], self.codes, p["dim"], itemsize=8), sizes)  # z + eps, then z - eps

    def quantized_loss(self, z: torch.Tensor) -> torch.Tensor:
        """L(dec(Q(z))) for vectors z (N, G, D) -> (N,), no gradient."""
        _, value = self.quantizer.quantize(z, self.codebook64.to(z.dtype))
        return self.decoded_loss(value)

    def compute_reference(self):
        pairs, sigma = self.params["reference_samples"], self.params["sigma"]
        gen = torch.Generator().manual_seed(int(self.params["seed"]) ^ 0x5EED)
        total = torch.zeros(self.z64.numel(), dtype=torch.float64)
        squares = torch.zeros_like(total)
        loss_sum = 0.0
        for start in range(0, pairs, SMOOTHING_CHUNK):
            n = min(SMOOTHING_CHUNK, pairs - start)
            eps = torch.randn(n, *self.z64.shape, generator=gen, dtype=torch.float64)
            plus, minus = self.quantized_loss(self.z64 + sigma * eps), self.quantized_loss(self.z64 - sigma * eps)
            estimate = ((plus - minus).unsqueeze(-1) * eps.reshape(n, -1)) / (2 * sigma)
            total += estimate.sum(0)
            squares += estimate.pow(2).sum(0)
            loss_sum += float((plus + minus).sum()) / 2
        mean = total / pairs
        variance = (squares - pairs * mean.pow(2)).clamp_min(0) / (pairs - 1)
        error = math.sqrt(float(variance.sum()) / pairs)  # RMS norm of the mean's error
        return Reference(mean.reshape(self.z64.shape), loss_sum / pairs, error)

    def incompatibility(self, estimator) -> str | None:
        from gumbench.estimators import CategoricalEstimator

        if isinstance(estimator, CategoricalEstimator):
            return "quantizer-smoothed measures the quantizer's own straight-through gradient (no logits)"
        allowed = self.default_estimators()
        if estimator.name not in {e.split("[")[0] for e in allowed}:
            return f"quantizer={self.params['quantizer']} is compared with {', '.join(allowed)} (the same Q)"
        if self.params["quantizer"] == "fsq" and estimator.params["levels"] != self.params["levels"]:
            return f"its levels {estimator.params['levels']} are not the problem's {self.params['levels']}"
        return codebook_care(estimator)

    def default_estimators(self) -> list[str]:
        kind = self.params["quantizer"]
        if kind == "fsq":
            return [f"fsq[levels={self.params['levels']}]"]
        if kind == "lfq":
            return ["lfq"]
        return ["vq-commitment", "vq-commitment[rotation=true]", "nsvq", "simvq", "diveq", "vqbridge"]


def codebook_care(estimator) -> str | None:
    """Why a VQ estimator's options do not fit a fixed-codebook problem (vq-commitment's ema, k-means init and
    dead-code restart rewrite the codebook in training calls; a cosine codebook chooses by angle; DiVeQ's code
    replacement likewise; SF-DiVeQ's value is a point between codes), or None."""
    from gumbench.estimators.diveq import DiVeQ, SFDiVeQ

    if isinstance(estimator, SFDiVeQ):
        return ("its value is a point on the polyline through the codes (its index a segment), not a code of this "
                "codebook")
    if isinstance(estimator, DiVeQ) and estimator.params["replace"]:
        return "replace=true rewrites the codebook in training calls; the problems hold it fixed"
    if estimator.name != "vq-commitment":
        return None
    p = estimator.params
    changed = [
        name
        for name, on in (("ema=true", p["ema"]), ("init=kmeans", p["init"] == "kmeans"), ("restart=true", p["restart"]))
        if on
    ]
    if changed:
        return f"{', '.join(changed)} rewrites the codebook in training calls; the problems hold it fixed"
    if p["cosine"]:
        return "cosine=true chooses codes by angle on normalized codes, not the nearest code of this codebook"
    return None


QUANTIZER_PROBLEMS = (DistanceVQ, SmoothedQuantizer)
