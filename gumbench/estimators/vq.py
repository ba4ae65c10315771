"""Vector quantization with a straight-through gradient and a commitment loss
(van den Oord et al. 2017, "Neural Discrete Representation Learning"), with optional codebook care.

Inputs are continuous vectors z_e of shape (..., G, D) and a codebook of shape
(G, K, D) (one per group) or (K, D) (shared). Each vector goes to its nearest code
by L2 distance; the forward value is that code e, the backward copies the gradient
straight through to z_e. Per row, averaged over the G x D elements:

    codebook loss   ||sg[z_e] - e||^2           (moves the codes; dropped with ema=true)
    commitment loss beta * ||z_e - sg[e]||^2    (beta = 0.25 as in the paper)

With ``ema=true`` the codebook is not trained by gradient but updated in place
after every training call by exponential moving averages of code counts N_k and
of the sums of vectors assigned to each code M_k (decay ``decay``), e_k = M_k / N_k
(the paper's appendix). The averages start at N_k = 1 and M_k = e_k, so for a code
that is never chosen both decay by the same factor and it keeps its value; once its
count falls below ``eps`` (long dead, near underflow) it is no longer rewritten, so no
zero count is ever divided by.

Codebook care (each off by default; any combination is allowed):

rotation=true   the rotation trick (Fifty et al. 2024, "Restructuring Vector Quantization with
                the Rotation Trick"): the forward value is still e, but the gradient reaches z_e
                through sg[lambda R] z_e, where R is the rotation taking z_e/|z_e| to e/|e| and
                lambda = |e|/|z_e| (both held constant), instead of being copied unchanged:
                grad z_e = lambda R^T grad e. With u = z_e/|z_e|, q = e/|e| and r = (u + q)/|u + q|,
                R = I - 2 r r^T + 2 q u^T. (If e points exactly opposite z_e, r is set to 0 and R
                is the reflection I - 2 u u^T, which still maps u to q; if z_e = 0, plain
                straight-through.)
init=kmeans     k-means initialization (as in Jukebox / SoundStream): on the first training call the
                codebook is overwritten in place by ``kmeans_iters`` Lloyd iterations, from k-means++
                seeds, on that batch's vectors (per group; pooled over groups for a shared codebook).
restart=true    dead-code restart: a code not chosen in ``restart_threshold`` consecutive training
                calls is replaced in place by a random vector of the current batch (its EMA
                statistics, with ema=true, restart from that vector). With ``restart_ratio`` r > 0
                (vector-quantize-pytorch's ``dead_code_threshold_ratio``) a code is dead instead when
                its usage U_k falls below r times the mean usage of its book, U_k an exponential moving
                average (decay ``decay``, from 0) of the code's count per training call; a restarted
                code's U_k is set to r max(mean U, eps), at the threshold.
cosine=true     cosine-similarity codebook (Yu et al. 2022, ViT-VQGAN): vectors and codes are
                L2-normalized, the nearest code is the one at the smallest angle, and the value,
                the losses and the EMA statistics live on the unit sphere.

The options that only refine another one (``kmeans_iters``, ``restart_threshold``, ``restart_ratio``) are rejected
up front when set without it. In-place changes happen in training mode only, like the EMA, and
never on an empty batch.

Numerics. Vectors and codebook must share a dtype and device, be finite and be small enough that
squared distances, losses and their gradients stay finite (``magnitude_limit``); anything else is
refused up front. fp16 and bf16 inputs are computed in fp32 (distances, losses, the rotation, the
k-means and the EMA statistics): the value is cast back, the auxiliary losses stay in fp32.
Normalizing divides by max(|z_e|, ``shortest(dtype)``) and the rotation's rescale |e|/|z_e| is
capped at 1 / ``shortest(dtype)`` = sqrt(largest value of dtype), so vectors near 0 keep finite
gradients.

Against vector-quantize-pytorch 1.34.1 (tests/estimators/test_vq_oracle.py) values, indices,
losses and input gradients agree; its conventions differ in exact ways. Its learnable-codebook
loss beta ||z_e - e||^2 has no stop-gradient, so its codebook gradient is beta times this one's.
Its EMA statistics start at 0 (here N_k = 1, M_k = e_k) and it blends in the current code,
e_k <- (M_k + eps e_k) / (N_k + eps), not M_k / N_k. ``restart_ratio`` finds the same dead codes with the
same usage averages as its ``dead_code_threshold_ratio``; the batch vectors put in their place are drawn
differently (here with replacement).
Its cosine codebook is compared with as stored (kept unit-norm, the EMA result normalized) and is
never learnable by gradient.

VQ estimators take vectors, not logits, so the enumeration-based gradient
statistics do not apply to them; they are measured in the training tasks.
"""

from __future__ import annotations

import math

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import EstimatorOutput, VQEstimator, call_loss, one_hot, register
from gumbench.footprint import Peak, check_peak, vq_bytes
from gumbench.kernels.reference import compute_dtype
from gumbench.plugin import OPEN_UNIT, Range


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code per group: z (..., G, D), codebook (G, K, D) -> (..., G)."""
    # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 does not change the argmin.
    cross = torch.einsum("...gd,gkd->...gk", z, codebook)
    return ((codebook * codebook).sum(-1) - 2 * cross).argmin(dim=-1)


def check_vector_inputs(who: str, inputs) -> None:
    """Refuse inputs that are not a float tensor (..., G, D) with G, D >= 1, in one line naming what they are."""
    if not (isinstance(inputs, torch.Tensor) and inputs.is_floating_point() and inputs.dim() >= 2
            and min(inputs.shape[-2:]) >= 1):
        got = type(inputs).__name__
        if isinstance(inputs, torch.Tensor):
            got = f"{inputs.dtype} of shape {tuple(inputs.shape)}"
        raise GumbenchError(f"{who}: inputs must be a float tensor of shape (..., G, D) with G, D >= 1, got {got}")


def nearest_code_output(estimator, inputs: torch.Tensor, z: torch.Tensor, book: torch.Tensor, loss_fn, beta: float,
                        rotation: bool) -> EstimatorOutput:
    """The nearest code of ``book`` (G, K, D) for ``z`` (the inputs in the compute dtype) with straight-through (or
    the rotation trick) to z, the codebook loss ||sg[z] - e||^2 and beta times the commitment loss: the output of
    a VQ estimator whose codes are the rows of ``book`` (a codebook map's: SimVQ's C W, VQBridge's E')."""
    indices = nearest_codes(z.detach(), book.detach())
    e = torch.einsum("...gk,gkd->...gd", one_hot(indices, book.shape[1], z.dtype), book)
    if rotation:
        carried = rotate_to(z, e.detach(), shortest(inputs.dtype))
        value = e.detach() + (carried - carried.detach())
    else:
        value = z + (e - z).detach()
    value = value.to(inputs.dtype)
    loss = call_loss(loss_fn, value, z.shape[:-2], estimator.spec)
    aux = {"commitment": beta * (z - e.detach()).pow(2).mean(dim=(-2, -1)),
           "codebook": (z.detach() - e).pow(2).mean(dim=(-2, -1))}
    return EstimatorOutput(surrogate=loss + sum(aux.values()), value=value, indices=indices, loss=loss, aux=aux)


def check_shapes(who: str, inputs, codebook) -> torch.Tensor:
    """Refuse inputs that are not float (..., G, D) with G, D >= 1, and a codebook that is not a tensor of
    shape (G, K, D) or (K, D) with K >= 1 of the inputs' dtype and device; return it as (G, K, D) (a view)."""
    check_vector_inputs(who, inputs)
    groups, dim = inputs.shape[-2:]
    if not isinstance(codebook, torch.Tensor):
        raise GumbenchError(f"{who} needs codebook=tensor of shape (G, K, D) or (K, D), or a codebook of its own "
                            f"(own_codebook(codes, dim, groups)), got {type(codebook).__name__}")
    if codebook.dtype != inputs.dtype or codebook.device != inputs.device:
        raise GumbenchError(
            f"{who}: codebook must have the inputs' dtype and device ({inputs.dtype} on {inputs.device}), "
            f"got {codebook.dtype} on {codebook.device}"
        )
    if (
        codebook.dim() not in (2, 3)
        or codebook.shape[-1] != dim
        or codebook.shape[-2] < 1
        or codebook.shape[:-2] not in ((), (groups,))
    ):
        raise GumbenchError(f"{who}: codebook shape {tuple(codebook.shape)} does not fit inputs {tuple(inputs.shape)}; "
                            f"expected (G, K, D) = ({groups}, K, {dim}) or (K, {dim}) with K >= 1 codes")
    check_peak(who, Peak(vq_bytes(inputs.shape[:-2].numel(), groups, codebook.shape[-2], dim, inputs.element_size()),
                         ("the rows of the inputs", "the groups G", "the codes K")))  # (rows, G, K) distances
    return codebook.unsqueeze(0).expand(groups, *codebook.shape) if codebook.dim() == 2 else codebook


def largest(t: torch.Tensor) -> float:
    """max |t| as a float (0 for an empty tensor), without tracking gradients."""
    with torch.no_grad():
        return float(t.abs().amax()) if t.numel() else 0.0


def check_sizes(who: str, inputs: torch.Tensor, codebook: torch.Tensor, beta: float, *, overwritten: bool = False,
                cosine: bool = False, name: str = "codebook", code_weight: int = 1) -> tuple[float, float]:
    """Refuse NaN or inf in the inputs or the codebook, and max |input| + ``code_weight`` x max |code| above
    :func:`magnitude_limit` for the inputs' dtype, G * D and ``beta``; return (max |input|, max |code|).

    ``overwritten``: the codebook is about to be overwritten by k-means (it is never read, its codes will be
    means of the inputs). ``name`` names the codebook in messages; ``code_weight`` counts the codes added to
    one input (residual quantization adds one per stage)."""
    groups, dim = inputs.shape[-2:]
    sizes = [largest(inputs), largest(codebook)]
    if overwritten:
        sizes[1] = max(sizes[0], 1.0 if cosine else 0.0)
    for what, size in zip(("inputs", name), sizes):
        if not math.isfinite(size):
            raise GumbenchError(f"{who}: NaN or inf in the {what}; allowed are finite values")
    limit, dtype = magnitude_limit(inputs.dtype, groups * dim, beta), str(inputs.dtype).removeprefix("torch.")
    if sizes[0] + code_weight * sizes[1] > limit:
        codes = "max |code|" if code_weight == 1 else f"{code_weight} x max |code|"
        raise GumbenchError(
            f"{who}: max |input| + {codes} must be at most {limit:.3g} for {dtype} with G * D = "
            f"{groups * dim} (squared distances, losses and gradients must stay finite), got {sizes[0]:.3g} + "
            f"{'' if code_weight == 1 else f'{code_weight} x '}{sizes[1]:.3g}"
        )
    return sizes[0], sizes[1]


def check_inputs(who: str, inputs, codebook, beta: float, **sizes) -> torch.Tensor:
    """:func:`check_shapes` then :func:`check_sizes` (keyword arguments go to the latter): every check a VQ
    estimator makes before any work; returns the codebook as (G, K, D)."""
    codes = check_shapes(who, inputs, codebook)
    check_sizes(who, inputs, codebook, beta, **sizes)
    return codes


def shortest(dtype: torch.dtype) -> float:
    """1 / sqrt(largest value of dtype): dividing by a length of at least this (or scaling by |e| over
    it) multiplies a gradient by at most sqrt(largest), so gradients up to that stay finite."""
    return torch.finfo(dtype).max ** -0.5


def magnitude_limit(dtype: torch.dtype, elements: int, beta: float) -> float:
    """The largest max|z_e| + max|e| accepted for vectors of ``dtype`` with G * D = ``elements``.

    With s that sum, a squared distance sum_d (z - e)^2 is at most G * D * s^2, and so is the sum
    behind a loss (a mean of G * D squares); the codebook loss plus beta times the commitment loss is
    kept below half the compute dtype's largest value (the other half is the downstream loss's). The
    losses' gradients, 2 beta (z - e) / (G * D) at z_e and 2 (e - z) / (G * D) at the codebook, land
    in ``dtype`` and are kept below a quarter of its largest value.
    """
    losses = math.sqrt(torch.finfo(compute_dtype(dtype)).max / (2 * (1 + beta) * elements))
    return min(losses, elements * torch.finfo(dtype).max / (4 * max(1.0, beta)))


def normalize(x: torch.Tensor, floor: float | None = None) -> torch.Tensor:
    """x / max(|x|, floor) over the last dim (floor: the dtype's smallest normal number unless given);
    a zero vector stays zero."""
    return torch.nn.functional.normalize(x, dim=-1, eps=torch.finfo(x.dtype).tiny if floor is None else floor)


def closest_angle_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the code at the smallest angle (largest cosine similarity): (..., G, D), (G, K, D) -> (..., G)."""
    return torch.einsum("...gd,gkd->...gk", normalize(z), normalize(codebook)).argmax(dim=-1)


def rotate_to(z: torch.Tensor, target: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """sg[lambda R] z: rotation R of z/|z| onto target/|target| and rescale lambda = |target|/|z|,
    both held constant, applied to z. Its value is ``target`` up to rounding; its backward is
    lambda R^T. Rows with z = 0 have no direction and pass z through unchanged; lambda is capped at
    1 / ``floor`` (|z| is taken as at least |target| * floor)."""
    with torch.no_grad():
        tiny = torch.finfo(z.dtype).tiny
        z_norm = z.norm(dim=-1, keepdim=True)
        u = z / z_norm.clamp_min(tiny)
        q = normalize(target)
        w = u + q
        w_norm = w.norm(dim=-1, keepdim=True)
        # |u + q| -> 0 when target is opposite z: r = 0 leaves the reflection I - 2 u u^T
        r = torch.where(w_norm > 1e-6, w / w_norm.clamp_min(tiny), torch.zeros_like(w))
        degenerate = z_norm <= tiny
        target_norm = target.norm(dim=-1, keepdim=True)
        scale = torch.where(
            degenerate,
            torch.ones_like(z_norm),
            target_norm / torch.maximum(z_norm, target_norm * floor).clamp_min(tiny),
        )
        r = torch.where(degenerate, torch.zeros_like(r), r)
        q = torch.where(degenerate, torch.zeros_like(q), q)
    # R z = z - 2 r (r . z) + 2 q (u . z)
    rotated = z - 2 * r * (r * z).sum(-1, keepdim=True) + 2 * q * (u * z).sum(-1, keepdim=True)
    return scale * rotated


def kmeans(
    points: torch.Tensor, codes: int, iters: int, *, generator: torch.Generator | None = None, spherical: bool = False
) -> torch.Tensor:
    """Lloyd's k-means per group from k-means++ seeds: points (B, N, D) -> centres (B, codes, D).

    Seeds are drawn with probability proportional to the squared distance to the nearest seed so
    far (uniformly once every point is covered, e.g. fewer distinct points than codes). A centre
    that loses all its points keeps its place. ``spherical`` normalizes the centres after every
    step (k-means for cosine similarity; pass normalized points).
    """
    batch, count, _ = points.shape
    rows = torch.arange(batch, device=points.device)
    first = torch.randint(0, count, (batch,), generator=generator, device=points.device)
    centres = [points[rows, first]]
    nearest = (points - centres[0].unsqueeze(1)).pow(2).sum(-1)  # (B, N)
    for _ in range(1, codes):
        weights = torch.where(nearest.sum(-1, keepdim=True) > 0, nearest, torch.ones_like(nearest))
        pick = torch.multinomial(weights.double(), 1, generator=generator).squeeze(-1)
        centres.append(points[rows, pick])
        nearest = torch.minimum(nearest, (points - centres[-1].unsqueeze(1)).pow(2).sum(-1))
    centres = torch.stack(centres, dim=1)  # (B, K, D)
    for _ in range(iters):
        assign = one_hot(torch.cdist(points, centres).argmin(-1), codes, points.dtype)  # (B, N, K)
        counts = assign.sum(1).unsqueeze(-1)
        means = torch.einsum("bnk,bnd->bkd", assign, points) / counts.clamp_min(1)
        centres = torch.where(counts > 0, means, centres)
        if spherical:
            centres = normalize(centres)
    return centres


@register
class VQCommitment(VQEstimator):
    name = "vq-commitment"
    description = ("VQ-VAE: nearest code by L2, straight-through to the encoder, codebook + beta * commitment loss; "
                   "options: ema, rotation trick, k-means init, dead-code restart, cosine codebook.")
    defaults = {"beta": 0.25, "ema": False, "decay": 0.99, "eps": 1e-5, "rotation": False, "init": "random",
                  "kmeans_iters": 10, "restart": False, "restart_threshold": 50, "cosine": False,
                "restart_ratio": 0.0}
    # added after reference runs were stored: named in the spec only when set, so those specs stay as they were
    spec_optional = ("restart_ratio",)
    choices = {"init": ("random", "kmeans")}
    ranges = {
        "beta": Range(0, 100, meaning="commitment weight"),
        "decay": OPEN_UNIT,
        # EMA counts below eps are never divided by: eps must be a normal float32 number
        "eps": Range(torch.finfo(torch.float32).tiny, 1, meaning="count below which a code is no longer rewritten"),
        "kmeans_iters": Range(1, 1000),
        "restart_threshold": Range(1, meaning="training calls a code may go unused"),
        "restart_ratio": Range(0, 1, high_open=True, meaning="share of the mean usage below which a code dies"),
    }
    requires = {"kmeans_iters": ("init", "kmeans"), "restart_threshold": ("restart", True),
                "restart_ratio": ("restart", True)}

    def validate(self) -> None:
        self.register_buffer("ema_counts", None)
        self.register_buffer("ema_sums", None)
        self.register_buffer("unused_calls", None)  # per code, consecutive training calls without use (restart)
        self.register_buffer("usage", None)  # per code, the moving average of its count per call (restart_ratio)
        if self.params["restart_ratio"] > 0 and self.params["restart_threshold"] != self.defaults["restart_threshold"]:
            raise GumbenchError(f"{self.name}: restart_threshold and restart_ratio are two rules for a dead code; "
                                "set one")
        self.register_buffer("initialized", torch.tensor(self.params["init"] != "kmeans"))  # k-means runs once, lazily

    def assign_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The code index each vector (..., G, D) goes to: nearest by L2, or by angle with cosine=true."""
        codes = codebook.unsqueeze(0).expand(vectors.shape[-2], *codebook.shape) if codebook.dim() == 2 else codebook
        choose = closest_angle_codes if self.params["cosine"] else nearest_codes
        work = compute_dtype(vectors.dtype)
        return choose(vectors.detach().to(work), codes.detach().to(work))

    def forward(
        self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None, generator=None
    ) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        codes = self._check(inputs, codebook)
        learn = self.training and inputs.shape[:-2].numel() > 0  # an empty batch leaves the codebook alone
        if learn and not bool(self.initialized):
            self._kmeans_init(inputs.detach(), codebook, generator)
        indices = self.assign_codes(inputs, codes)
        floor = shortest(inputs.dtype)
        work = compute_dtype(inputs.dtype)
        z, codes = inputs.to(work), codes.to(work)  # fp16/bf16: everything below in fp32
        if self.params["cosine"]:  # everything below lives on the unit sphere
            z, codes = normalize(z, floor), normalize(codes, floor)
        assign = one_hot(indices, codes.shape[1], work)  # (..., G, K)
        z_q = torch.einsum("...gk,gkd->...gd", assign, codes)
        if self.params["rotation"]:
            # on the unit sphere the rescale is 1: capped there, a vector shorter than the floor is
            # amplified once (by normalizing), not twice
            carried = rotate_to(z, z_q.detach(), 1.0 if self.params["cosine"] else floor)
            value = z_q.detach() + (carried - carried.detach())
        else:
            value = z + (z_q - z).detach()
        value = value.to(inputs.dtype)
        loss = call_loss(loss_fn, value, z.shape[:-2], self.spec)
        commitment = self.params["beta"] * (z - z_q.detach()).pow(2).mean(dim=(-2, -1))
        aux = {"commitment": commitment}
        if self.params["ema"]:
            if learn:
                self._ema_update(z.detach(), assign, codebook)
        else:
            aux["codebook"] = (z.detach() - z_q).pow(2).mean(dim=(-2, -1))
        if self.params["restart"] and learn:
            self._restart_dead_codes(z.detach(), assign, codebook, generator)
        surrogate = loss + sum(aux.values())
        return EstimatorOutput(surrogate=surrogate, value=value, indices=indices, loss=loss, aux=aux)

    def _check(self, inputs, codebook) -> torch.Tensor:
        """Refuse, before any work, what this estimator does not take; return the codebook as (G, K, D)."""
        who = self.label
        codes = check_shapes(who, inputs, codebook)
        if self.params["ema"] and codebook.dim() != 3:
            raise GumbenchError(
                f"{who}: ema=true updates per-group codebooks; pass shape (G, K, D), got {tuple(codebook.shape)}"
            )
        # a codebook that k-means is about to overwrite is never read: its codes will be means of the inputs
        overwritten = self.training and not bool(self.initialized) and inputs.shape[:-2].numel() > 0
        check_sizes(who, inputs, codebook, self.params["beta"], overwritten=overwritten, cosine=self.params["cosine"])
        return codes

    @staticmethod
    def _per_book(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The batch's vectors per codebook: (G, N, D) for per-group books, (1, N * G, D) for a shared one."""
        flat = z.reshape(-1, *z.shape[-2:]).transpose(0, 1)  # (G, N, D)
        return flat if codebook.dim() == 3 else flat.reshape(1, -1, flat.shape[-1])

    @torch.no_grad()
    def _kmeans_init(self, z: torch.Tensor, codebook: torch.Tensor, generator) -> None:
        points = self._per_book(z.to(compute_dtype(z.dtype)), codebook)  # fp16/bf16: k-means in fp32
        cosine = self.params["cosine"]
        if cosine:
            points = normalize(points)
        centres = kmeans(points, codebook.shape[-2], self.params["kmeans_iters"], generator=generator, spherical=cosine)
        codebook.data.copy_(centres.reshape(codebook.shape))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, assign: torch.Tensor, codebook: torch.Tensor) -> None:
        if self.ema_counts is None or self.ema_counts.shape != codebook.shape[:2]:  # statistics in the compute dtype
            self.ema_counts = torch.ones(codebook.shape[:2], dtype=z.dtype, device=codebook.device)
            self.ema_sums = codebook.detach().to(z.dtype, copy=True)
        decay, eps = self.params["decay"], self.params["eps"]
        flat_assign = assign.reshape(-1, *assign.shape[-2:])  # (N, G, K)
        counts = flat_assign.sum(0)
        sums = torch.einsum("ngk,ngd->gkd", flat_assign, z.reshape(-1, *z.shape[-2:]))
        self.ema_counts.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sums.mul_(decay).add_(sums, alpha=1 - decay)
        counts = self.ema_counts.unsqueeze(-1)
        codebook.data.copy_(torch.where(counts > eps, self.ema_sums / counts.clamp_min(eps), codebook.detach()))

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor, assign: torch.Tensor, codebook: torch.Tensor, generator) -> None:
        counts = assign.reshape(-1, *assign.shape[-2:]).sum(0)  # (G, K)
        if codebook.dim() == 2:
            counts = counts.sum(0, keepdim=True)
        dead = self._dead_by_ratio(counts) if self.params["restart_ratio"] > 0 else self._dead_by_calls(counts > 0)
        if not dead.any():
            return
        points = self._per_book(z, codebook)  # (B, N, D), normalized already with cosine=true
        picks = torch.randint(0, points.shape[1], dead.shape, generator=generator, device=points.device)
        fresh = points.gather(1, picks.unsqueeze(-1).expand(*dead.shape, points.shape[-1])).to(codebook.dtype)
        book = codebook.data if codebook.dim() == 3 else codebook.data.unsqueeze(0)
        book.copy_(torch.where(dead.unsqueeze(-1), fresh, book))
        if self.ema_counts is not None and codebook.dim() == 3:
            self.ema_counts.copy_(torch.where(dead, torch.ones_like(self.ema_counts), self.ema_counts))
            self.ema_sums.copy_(torch.where(dead.unsqueeze(-1), fresh, self.ema_sums))
        if self.unused_calls is not None:
            self.unused_calls = torch.where(dead, torch.zeros_like(self.unused_calls), self.unused_calls)

    def _dead_by_calls(self, used: torch.Tensor) -> torch.Tensor:
        """Codes unused in ``restart_threshold`` consecutive training calls."""
        if self.unused_calls is None or self.unused_calls.shape != used.shape:
            self.unused_calls = torch.zeros(used.shape, dtype=torch.long, device=used.device)
        self.unused_calls = torch.where(used, torch.zeros_like(self.unused_calls), self.unused_calls + 1)
        return self.unused_calls >= self.params["restart_threshold"]

    def _dead_by_ratio(self, counts: torch.Tensor) -> torch.Tensor:
        """Codes whose usage average is below restart_ratio x its book's mean; their average is set to the threshold."""
        if self.usage is None or self.usage.shape != counts.shape:
            self.usage = torch.zeros_like(counts)
        self.usage.lerp_(counts, 1 - self.params["decay"])
        ratio = self.params["restart_ratio"]
        mean = self.usage.mean(-1, keepdim=True)
        dead = self.usage < mean * ratio
        self.usage.copy_(torch.where(dead, mean.clamp_min(self.params["eps"]) * ratio, self.usage))
        return dead
