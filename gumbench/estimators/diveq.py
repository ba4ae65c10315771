"""DiVeQ and SF-DiVeQ (Vali, Backstrom and Solin 2026, "DiVeQ: Differentiable Vector Quantization Using the
Reparameterization Trick", ICLR 2026): quantization as an added error vector whose length is the quantization
error and whose direction is aligned with the chosen code, so the forward value is (nearly) the hard code while
gradients reach the input and the codebook; no straight-through estimator, no auxiliary losses.

DiVeQ, per group, with e the nearest code (L2) of z and v ~ N(0, sigma^2 I_D) drawn from ``generator``:

    training   value = z + ||e - z|| sg[(e - z + v) / ||e - z + v||]
    eval       value = e                                      (the codebook row itself)

With sigma = 0 the value is e up to rounding; the gradients are then d value / d z = I - u u^T and
d value / d e = u u^T, u = (e - z)/||e - z||: the encoder is moved across the error direction, the chosen
code along it (towards z when the loss asks for it). ``replace=true`` adds the authors' codebook
replacement: every ``replace_every`` training calls, a code chosen in fewer than a ``discard_threshold`` share
of them is replaced by a copy of a code chosen in more, drawn with probability proportional to the calls it was
chosen in, plus 1e-9 N(0, I) (per book; the counts restart every period).

SF-DiVeQ (space-filling DiVeQ) quantizes onto the polyline through the codes in index order, c_0 ... c_{K-1}.
In training one dither lambda_j ~ U(0, 1) per segment j (per book and call) gives the points
p_j = (1 - lambda_j) c_j + lambda_j c_{j+1}; with j the nearest p_j (the index reported, 0..K-2) and
v_1, v_2 ~ N(0, sigma^2 I) drawn in that order,

    value = z + (1 - lambda_j) ||c_j - z|| sg[u_1] + lambda_j ||c_{j+1} - z|| sg[u_2],
            u_i = (c_{j+i-1} - z + v_i) / ||c_{j+i-1} - z + v_i||

(= p_j when sigma = 0). In eval, z is projected onto the two segments next to its nearest code k (k clamped
to 1..K-2, so the end codes use the first or last two segments), the closer projection is the value and k
the index, as the authors' ``inference``.

Against the authors' ``diveq`` package 0.1.3 (tests/estimators/test_diveq_oracle.py): values, indices and
gradients agree on identical inputs and noise. Its ``noise_var`` is the noise's standard deviation
(``Normal(0, noise_var)``), so ``diveq[sigma=s]`` is its ``noise_var=s``; vector-quantize-pytorch's
``directional_reparam_variance`` is sigma^2. SF-DiVeQ's warm-up (``skip_iters`` calls without quantization,
then a codebook initialized from averaged latents) is not included: training quantizes from the first call.

Checks: as ``vq-commitment`` with beta = 0, and max |z| + sqrt(D) (max |z| + max |code|), a bound on any value
entry, within half the dtype's largest value. SF-DiVeQ needs at least 2 codes per book.
"""

from __future__ import annotations

import math

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import EstimatorOutput, VQEstimator, call_loss, one_hot, register
from gumbench.estimators.vq import check_shapes, check_sizes, nearest_codes
from gumbench.kernels.reference import compute_dtype
from gumbench.plugin import Range

NOISE = Range(0, 10, meaning="standard deviation sigma of the directional noise")
REPLACEMENT_JITTER = 1e-9  # the authors' perturb_eps: a replaced code sits this close to the used code it copies


def check_value_bound(who: str, inputs: torch.Tensor, codebook: torch.Tensor) -> None:
    """Shapes and sizes as vq-commitment with beta = 0, and a bound on every entry of z + (an error of length
    at most ||e - z||) within half the dtype's largest value."""
    largest_z, largest_code = check_sizes(who, inputs, codebook, 0.0)
    dim = inputs.shape[-1]
    bound, ceiling = largest_z + math.sqrt(dim) * (largest_z + largest_code), torch.finfo(inputs.dtype).max / 2
    if bound > ceiling:
        dtype = str(inputs.dtype).removeprefix("torch.")
        raise GumbenchError(f"{who}: max |input| + sqrt(D) (max |input| + max |code|) must be at most {ceiling:.3g} "
                            f"for {dtype} (the value z + an error of length ||e - z|| must fit), got {bound:.3g} "
                            f"with D = {dim}")


def aligned_error(z: torch.Tensor, target: torch.Tensor, sigma: float, generator) -> torch.Tensor:
    """||target - z|| sg[(target - z + v) / ||target - z + v||], v ~ N(0, sigma^2 I): DiVeQ's error vector."""
    error = target - z
    noisy = error.detach()
    if sigma > 0:
        noisy = noisy + sigma * torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    direction = noisy / torch.linalg.vector_norm(noisy, dim=-1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)
    return torch.linalg.vector_norm(error, dim=-1, keepdim=True) * direction


def gather_codes(codes: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Rows ``indices`` (..., G) of per-group books (G, K, D) -> (..., G, D), differentiable in the books."""
    return torch.einsum("...gk,gkd->...gd", one_hot(indices, codes.shape[1], codes.dtype), codes)


class DirectionalVQ(VQEstimator):
    """What DiVeQ and SF-DiVeQ share: checks, the nearest code, the compute dtype."""

    def assign_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The nearest code (L2) for each vector (..., G, D)."""
        codes = codebook.unsqueeze(0).expand(vectors.shape[-2], *codebook.shape) if codebook.dim() == 2 else codebook
        work = compute_dtype(vectors.dtype)
        return nearest_codes(vectors.detach().to(work), codes.detach().to(work))

    def _prepare(self, inputs, codebook) -> tuple[torch.Tensor, torch.Tensor]:
        codes = check_shapes(self.label, inputs, codebook)
        check_value_bound(self.label, inputs, codebook)
        work = compute_dtype(inputs.dtype)
        return inputs.to(work), codes.to(work)

    def _output(self, inputs, value, indices, loss_fn) -> EstimatorOutput:
        value = value.to(inputs.dtype)
        loss = call_loss(loss_fn, value, inputs.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})


@register
class DiVeQ(DirectionalVQ):
    name = "diveq"
    description = ("DiVeQ: value = z + ||e - z|| sg[dir(e - z + v)], v ~ N(0, sigma^2 I) (gradients reach z and the "
                   "chosen code, no auxiliary loss); the nearest code e in eval; optional codebook replacement.")
    defaults = {"sigma": 1e-3, "replace": False, "replace_every": 100, "discard_threshold": 0.01}
    ranges = {"sigma": NOISE, "replace_every": Range(1, 1_000_000, meaning="training calls between replacements"),
              "discard_threshold": Range(0, 1, meaning="share of calls a code must be chosen in to be kept")}
    requires = {"replace_every": ("replace", True), "discard_threshold": ("replace", True)}

    def validate(self) -> None:
        self.register_buffer("usage", None)  # (B, K) training calls each code was chosen in since the last replacement
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None,
                generator=None) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        z, codes = self._prepare(inputs, codebook)
        indices = nearest_codes(z.detach(), codes.detach())
        e = gather_codes(codes, indices)
        value = z + aligned_error(z, e, self.params["sigma"], generator) if self.training else e
        out = self._output(inputs, value, indices, loss_fn)
        if self.params["replace"] and self.training and inputs.shape[:-2].numel() > 0:
            self._count_and_replace(indices, codebook, generator)
        return out

    @torch.no_grad()
    def _count_and_replace(self, indices: torch.Tensor, codebook: torch.Tensor, generator) -> None:
        used = one_hot(indices.reshape(-1, indices.shape[-1]), codebook.shape[-2], torch.float64).sum(0) > 0  # (G, K)
        counts = (used.any(0, keepdim=True) if codebook.dim() == 2 else used).double()
        if self.usage is None or self.usage.shape != counts.shape:
            self.usage = torch.zeros_like(counts)
        self.usage += counts
        self.calls += 1
        every = self.params["replace_every"]
        if int(self.calls) % every:
            return
        books = codebook.data if codebook.dim() == 3 else codebook.data.unsqueeze(0)
        for book, usage in zip(books, self.usage):
            unused = usage / every < self.params["discard_threshold"]
            if unused.any() and not unused.all():
                used = (~unused).nonzero().squeeze(-1)
                shares = usage[used].float() / usage[used].sum().float()
                copies = book[used[torch.multinomial(shares, int(unused.sum()), replacement=True, generator=generator)]]
                jitter = torch.randn(copies.shape, generator=generator, dtype=copies.dtype, device=copies.device)
                book[unused] = copies + REPLACEMENT_JITTER * jitter
        self.usage.zero_()


@register
class SFDiVeQ(DirectionalVQ):
    name = "sf-diveq"
    description = ("Space-filling DiVeQ: the nearest dithered point on the polyline through the codes, reached by two "
                   "DiVeQ errors towards its segment's ends; projection onto the polyline in eval.")
    defaults = {"sigma": 1e-3}
    ranges = {"sigma": NOISE}
    stochastic_codes = True  # the segment chosen depends on the dither

    def forward(self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None,
                generator=None) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        z, codes = self._prepare(inputs, codebook)
        if codes.shape[1] < 2:
            raise GumbenchError(f"{self.label}: the polyline through the codes needs at least 2 codes per book, got "
                                f"{codes.shape[1]}")
        if not self.training:
            indices = nearest_codes(z.detach(), codes.detach())
            return self._output(inputs, self._project(z.detach(), codes, indices), indices, loss_fn)
        sigma = self.params["sigma"]
        lam = torch.rand(codes.shape[0], codes.shape[1] - 1, 1, generator=generator, device=z.device, dtype=z.dtype)
        dithered = (1 - lam) * codes[:, :-1] + lam * codes[:, 1:]  # (G, K-1, D)
        indices = nearest_codes(z.detach(), dithered.detach())
        first, second = gather_codes(codes, indices), gather_codes(codes, indices + 1)
        weight = gather_codes(lam, indices)  # (..., G, 1): lambda of the chosen segment
        towards_first = aligned_error(z, first, sigma, generator)  # drawn before the second, as the authors do
        value = z + (1 - weight) * towards_first + weight * aligned_error(z, second, sigma, generator)
        return self._output(inputs, value, indices, loss_fn)

    def decode(self, indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        raise GumbenchError(f"{self.label}: its vector is the projection onto the polyline through the codes, which "
                            "the nearest code's index does not determine; use quantize(vectors, codebook)")

    @staticmethod
    def _project(z: torch.Tensor, codes: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
        """The closer of z's projections onto the two segments next to its nearest code (clamped to 1..K-2)."""
        count = codes.shape[1]
        if count == 2:
            candidates = [torch.zeros_like(nearest)]
        else:
            centre = nearest.clamp(1, count - 2)
            candidates = [centre - 1, centre]
        points = []
        for start in candidates:
            a, b = gather_codes(codes, start), gather_codes(codes, start + 1)
            span = b - a
            share = (span * (z - a)).sum(-1, keepdim=True) / span.pow(2).sum(-1, keepdim=True)
            share = share.nan_to_num(0.0).clamp(0, 1)
            points.append(a + share.detach() * span)
        if len(points) == 1:
            return points[0]
        later = (z - points[1]).pow(2).sum(-1, keepdim=True) < (z - points[0]).pow(2).sum(-1, keepdim=True)
        return torch.where(later, points[1], points[0])
