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
    return (k.to(dtype) + 0.5) * (2.0 ** -uniform_bits(dtype))


def gumbel_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) by inversion; finite for any u in the open interval (0, 1)."""
    return -torch.log(-torch.log(u))


def gumbel_noise(shape, *, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    return gumbel_from_uniform(uniform_open(shape, generator=generator, device=device, dtype=dtype))


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
        g = gumbel_noise(logits.shape, generator=generator, device=logits.device, dtype=cdtype)
    else:
        if uniforms.shape != logits.shape:
            raise GumbenchError(f"uniforms must have the shape of logits {tuple(logits.shape)}, got {tuple(uniforms.shape)}")
        g = gumbel_from_uniform(uniforms.to(cdtype))
    perturbed = logits.to(cdtype) + g
    y_soft = torch.softmax(perturbed / tau, dim=-1)
    index = perturbed.argmax(dim=-1)
    if hard:
        y_hard = torch.zeros_like(y_soft).scatter_(-1, index.unsqueeze(-1), 1.0)
        y = y_hard - y_soft.detach() + y_soft
    else:
        y = y_soft
    return y.to(logits.dtype), index


def sample_categorical(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of z ~ Cat(softmax(logits)) over the last dim, by the Gumbel-max trick with safe noise."""
    g = gumbel_noise(logits.shape, generator=generator, device=logits.device, dtype=compute_dtype(logits.dtype))
    return (logits.detach().to(g.dtype) + g).argmax(dim=-1)


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
        log_p = torch.log_softmax(logits.detach().to(cdtype), dim=-1)  # -inf at masked entries
        if exponentials is None:
            exponentials = -torch.log(uniform_open(shape, generator=generator, device=logits.device, dtype=cdtype))
        elif tuple(exponentials.shape) != shape:
            raise GumbenchError(f"exponentials must have shape (samples, *logits.shape) = {shape}, got {tuple(exponentials.shape)}")
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
    soft = torch.softmax((logits.to(noise.dtype) + noise) / tau, dim=-1).mean(dim=0)
    hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
    return (hard + soft - soft.detach()).to(logits.dtype), index
