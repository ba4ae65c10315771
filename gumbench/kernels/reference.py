"""Pure-PyTorch reference path for the Gumbel-softmax step; runs on every CPU.

This is the ground truth the fused Triton kernel is tested against and the path
the estimators take on CPU tensors.

Safe noise. A Gumbel(0, 1) draw is g = -log(-log(u)) with u uniform on the open
interval (0, 1). Converting a random integer naively (``k / 2**32`` in fp32, or
``torch.rand``) can give u = 0 (g = -inf) or round to u = 1 (g = +inf), which
poisons the whole row with NaN after the softmax. Here u = (k + 0.5) / 2**b with
k uniform in [0, 2**b) and b the mantissa width of the compute dtype (23 for fp32,
52 for fp64): k + 0.5 and the scaling are exact in that dtype, so u lies in
[2**-(b+1), 1 - 2**-(b+1)], both ends representable, and g is finite
(in fp32 within [-2.81, 16.6]). Logits of +-1e4, masked -inf entries (they get
probability 0 and are never chosen) and tau down to 0.01 then stay finite; a row
whose entries are all -inf has no distribution and is rejected with an error.
"""

from __future__ import annotations

import torch

from gumbench.errors import GumbenchError, check_positive

__all__ = [
    "compute_dtype",
    "uniform_open",
    "uniform_bits",
    "uniform_from_integers",
    "gumbel_from_uniform",
    "gumbel_noise",
    "check_logits",
    "softmax",
    "log_softmax",
    "gumbel_softmax_reference",
    "sample_categorical",
    "conditional_gumbel",
    "gumbel_rao_reference",
]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 stays fp64; fp32, fp16 and bf16 are computed in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def uniform_open(
    shape,
    *,
    generator: torch.Generator | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform draws strictly inside (0, 1), exactly representable in ``dtype``."""
    bits = uniform_bits(dtype)
    # int32 holds 23 random bits and draws twice as fast as int64 on the CPU
    int_dtype = torch.int32 if bits < 31 else torch.int64
    k = torch.randint(0, 2**bits, tuple(shape), generator=generator, device=device, dtype=int_dtype)
    return uniform_from_integers(k, dtype)


def uniform_bits(dtype: torch.dtype) -> int:
    """Random bits per uniform: the mantissa width of the compute dtype."""
    return 52 if compute_dtype(dtype) == torch.float64 else 23


def uniform_from_integers(k: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Map integers k in [0, 2**b) to (k + 0.5) / 2**b, exact in the compute dtype, inside (0, 1)."""
    dtype = compute_dtype(dtype)
    return k.to(dtype).add_(0.5).mul_(2.0 ** -uniform_bits(dtype))  # in place on the converted copy


def gumbel_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) by inversion; finite for any u in the open interval (0, 1)."""
    return -torch.log(-torch.log(u))


def gumbel_noise(shape, *, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    return gumbel_from_uniform(uniform_open(shape, generator=generator, device=device, dtype=dtype))


# Below this many categories torch's CPU softmax kernels (forward and backward) cost 5-25x more per
# element than for wide rows (they vectorize along the row); a few whole-tensor operations are faster.
NARROW = 16


class _NarrowSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        e = (x - x.amax(dim=-1, keepdim=True)).exp_()
        y = e.div_(e.sum(dim=-1, keepdim=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(dim=-1, keepdim=True))


class _NarrowLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        shifted = x - x.amax(dim=-1, keepdim=True)
        out = shifted.sub_(shifted.exp().sum(dim=-1, keepdim=True).log_())
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad - out.exp() * grad.sum(dim=-1, keepdim=True)


def softmax(x: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(x, dim=-1)``, by whole-tensor operations for rows narrower than NARROW on the CPU."""
    if x.shape[-1] >= NARROW or x.device.type != "cpu":
        return torch.softmax(x, dim=-1)
    return _NarrowSoftmax.apply(x)


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """``torch.log_softmax(x, dim=-1)``, as :func:`softmax` for narrow rows."""
    if x.shape[-1] >= NARROW or x.device.type != "cpu":
        return torch.log_softmax(x, dim=-1)
    return _NarrowLogSoftmax.apply(x)


def check_logits(logits: torch.Tensor, *, name: str = "logits") -> None:
    """Reject NaN, +inf and rows with no finite entry (all -inf) with a clear error."""
    if not isinstance(logits, torch.Tensor):
        raise GumbenchError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise GumbenchError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise GumbenchError(f"{name} needs a last (category) dimension of size >= 1, got shape {tuple(logits.shape)}")
    with torch.no_grad():
        if torch.isnan(logits).any():
            raise GumbenchError(f"{name} contain NaN; allowed are finite values and -inf (masked categories)")
        if torch.isposinf(logits).any():
            raise GumbenchError(f"{name} contain +inf; allowed are finite values and -inf (masked categories)")
        if logits.numel() and torch.isneginf(logits).all(dim=-1).any():
            raise GumbenchError(f"a row of {name} is entirely -inf (masked); every row needs at least one finite entry")


def gumbel_softmax_reference(
    logits: torch.Tensor,
    tau: float = 1.0,
    hard: bool = False,
    *,
    uniforms: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-softmax over the last dimension; returns ``(y, index)``.

    y = softmax((logits + g) / tau) computed in fp32 (fp64 for fp64 input) and cast
    back to ``logits.dtype``; with ``hard=True`` the forward value is the one-hot of
    index = argmax(logits + g) and the backward is the Jacobian of the soft y with
    the same g (straight-through, as in wav2vec 2.0). ``uniforms`` (same shape as
    logits, inside (0, 1)) fixes the noise, otherwise it is drawn from ``generator``.
    """
    tau = check_positive("tau", tau)
    if check:
        check_logits(logits)
    cdtype = compute_dtype(logits.dtype)
    if uniforms is None:
        u = uniform_open(logits.shape, generator=generator, device=logits.device, dtype=cdtype)
    else:
        if uniforms.shape != logits.shape:
            raise GumbenchError(
                f"uniforms must have the shape of logits {tuple(logits.shape)}, got {tuple(uniforms.shape)}"
            )
        u = uniforms.to(cdtype, copy=True)
    # logits + g with g = -log(-log(u)), as logits - log(-log(u)) in place: the same bits, fewer tensors
    perturbed = logits.to(cdtype) - u.log_().neg_().log_()
    y_soft = softmax(perturbed if tau == 1 else perturbed / tau)
    index = perturbed.argmax(dim=-1)
    if hard:
        y_hard = torch.zeros_like(y_soft).scatter_(-1, index.unsqueeze(-1), 1.0)
        y = y_hard - y_soft.detach() + y_soft
    else:
        y = y_soft
    return y.to(logits.dtype), index


# Uniforms of the inverse-CDF sampler: 31 random bits (one draw of the CPU generator each), in float64.
CDF_BITS = 31


def sample_categorical(
    logits: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    samples: int | None = None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices of z ~ Cat(softmax(logits)) over the last dim, by inversion of the CDF.

    One uniform per draw (not one Gumbel variate per category): with c the cumulative sums of
    p = softmax(logits) in float64, the index is the first i with c_i > u c_V. The uniforms are
    (k + 0.5) / 2^31 (k from ``generator``), so u c_V < c_V in float64 and some index qualifies;
    the one chosen has c_i > c_{i-1}, that is p_i > 0: a masked (-inf) category is never drawn.
    The probabilities are those of the float32 softmax (float64 for float64 logits).

    ``samples`` draws that many independent indices per row from one softmax, shape
    (samples, ...); otherwise the shape is ``logits.shape[:-1]``. ``uniforms`` (that shape,
    inside (0, 1)) fixes the draws instead of ``generator``.
    """
    shape = tuple(logits.shape[:-1]) if samples is None else (samples, *logits.shape[:-1])
    with torch.no_grad():
        probs = softmax(logits.detach().to(compute_dtype(logits.dtype)))
        cdf = probs.cumsum(dim=-1, dtype=torch.float64)
        if uniforms is None:
            k = torch.randint(0, 2**CDF_BITS, shape, generator=generator, device=logits.device, dtype=torch.int32)
            uniforms = (k.to(torch.float64) + 0.5) * 2.0**-CDF_BITS
        elif tuple(uniforms.shape) != shape:
            raise GumbenchError(f"uniforms must have shape {shape}, got {tuple(uniforms.shape)}")
        u = uniforms.to(torch.float64)
        if samples is not None:  # (samples, ...) -> (..., samples): one search per row over its own CDF
            u = u.movedim(0, -1).contiguous()
            index = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
            return index.movedim(-1, 0)
        return torch.searchsorted(cdf, (u * cdf[..., -1]).unsqueeze(-1), right=True).squeeze(-1)


def conditional_gumbel(
    logits: torch.Tensor,
    index: torch.Tensor,
    samples: int = 1,
    *,
    generator: torch.Generator | None = None,
    exponentials: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gumbel noise g of shape (samples, *logits.shape) drawn given argmax(logits + g) == index.

    The exact sampler of the "exponential race": with pi = softmax(logits) and E_i ~ Exp(1)
    iid, given the winner k,

        logits_k + g_k = log Z - log E_k                       i.e. g_k = -log E_k - log pi_k
        logits_i + g_i = logits_i - log(E_i + E_k pi_i)        i.e. g_i = -log(E_i + E_k pi_i)

    (the smallest of the times E_i / exp(logits_i) is Exp(Z) and independent of which index
    wins; the others exceed it by independent Exp(exp(logits_i)) amounts). Only log pi and pi
    enter, never exp(logits): finite for logits of +-1e4, and a masked entry (pi_i = 0) gets
    g_i = -log E_i, a finite value that the -inf logit keeps out of every softmax.

    ``logits`` (..., V), ``index`` (...) with logits[index] finite. ``exponentials`` (samples,
    *logits.shape), all > 0, fixes the E's (the fused kernel's, in its tests); otherwise they are
    -log of safe uniforms from ``generator``. Computed in fp32 (fp64 for fp64 logits) without
    gradient. With ``index`` itself drawn from Cat(softmax(logits)), the returned noise is iid
    Gumbel(0, 1), whatever the logits.
    """
    cdtype = compute_dtype(logits.dtype)
    shape = (samples, *logits.shape)
    with torch.no_grad():
        log_p = log_softmax(logits.detach().to(cdtype))  # -inf at masked entries
        if exponentials is None:
            exponentials = -torch.log(uniform_open(shape, generator=generator, device=logits.device, dtype=cdtype))
        elif tuple(exponentials.shape) != shape:
            raise GumbenchError(
                f"exponentials must have shape (samples, *logits.shape) = {shape}, got {tuple(exponentials.shape)}"
            )
        exponentials = exponentials.to(cdtype)
        at = index.unsqueeze(0).unsqueeze(-1).expand(samples, *index.shape, 1)
        top_exponential = exponentials.gather(-1, at)
        others = -torch.log(exponentials + top_exponential * log_p.exp())
        top = -torch.log(top_exponential) - log_p.gather(-1, index.unsqueeze(-1)).unsqueeze(0)
        return others.scatter(-1, at, top)


def gumbel_rao_reference(
    logits: torch.Tensor,
    tau: float = 1.0,
    samples: int = 10,
    *,
    index: torch.Tensor | None = None,
    exponentials: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-Rao straight-through (Paulus et al. 2021) over the last dim; returns ``(y, index)``.

    Forward: y is the one-hot of index ~ Cat(softmax(logits)) (drawn from ``generator`` unless
    given). Backward: the Jacobian of softmax((logits + g_m)/tau) averaged over ``samples``
    draws g_m of the noise given the sample (``conditional_gumbel``), applied to the upstream
    gradient; the noise itself carries no gradient. This materialises the (samples, ..., V)
    noise; the fused kernel regenerates it in registers instead.
    """
    tau = check_positive("tau", tau)
    if check:
        check_logits(logits)
    if index is None:
        index = sample_categorical(logits, generator)
    noise = conditional_gumbel(logits, index, samples, generator=generator, exponentials=exponentials)
    soft = softmax((logits.to(noise.dtype) + noise) / tau).mean(dim=0)
    hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
    return (hard + soft - soft.detach()).to(logits.dtype), index
