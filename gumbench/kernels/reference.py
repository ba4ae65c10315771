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
