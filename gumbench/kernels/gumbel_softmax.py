"""Fused Gumbel-softmax in Triton: kernels, launcher, autograd Function, functional API.

Memory traffic, in passes over an (R, K) tensor of logits (one pass = R*K elements read
or written), for ``F.gumbel_softmax(logits, tau, hard=True)`` forward + backward:

    eager PyTorch       exponential_ W1, log R1W1, neg R1W1, add R2W1, div R1W1,
                        softmax R1W1, max R1, zeros W1, sub R2W1, add R2W1   = 20 forward
                        softmax backward R2W1, div backward R1W1             =  5 backward
                        13 kernels, 25 passes
    torch.compile       read x, write y, write saved y_soft | read dy, y_soft, write dx  ~ 6
    this kernel         read x, write y | read dy, read x, write dx                 =  5

The floor is 4 (read x, write y, read dy, write dx); the fifth pass is the backward
re-reading either the logits or a saved y. By default (``save_y=False``) the backward
regenerates the Gumbel noise from (seed, row, column) with Philox, a counter-based RNG,
and recomputes y from the logits, so no noise or probabilities are stored between the
passes. ``save_y=True`` keeps y instead and trades that memory for the backward's
recompute (noise + exp); with hard=True it costs one extra write of y_soft.

Layout. The launcher views the input as (rows, K) with a row stride and a column stride
(any (..., G, V) tensor whose leading dims merge, including slices and transposes, goes
in without a copy). For K up to ``_MAX_SINGLE_BLOCK`` one program holds whole rows in
registers, several rows per program when K is small; above it a looped path streams
each row in ``_LOOP_BLOCK`` chunks with an online (running max / rescaled sum) softmax.

Noise. Element (row, col) gets bits ``r[col % 4]`` of
``philox4x32_10(key=seed, counter=(col // 4, row_lo, row_hi, 0))``; the same generator
``tl.randint`` uses, called at its core so all four outputs serve four neighbouring
columns. The draw depends only on (seed, row, col), so single-block, multi-row and looped
paths, forward and backward, all see the same noise.
"""

from __future__ import annotations

import contextvars
import operator
import os
from dataclasses import dataclass

import torch

from gumbench.errors import GumbenchError, check_choice, check_positive
from gumbench.kernels.reference import check_logits, gumbel_softmax_reference

try:  # the "kernel" extra is optional: without Triton every call takes the reference path
    import triton
    import triton.language as tl

    _jit = triton.jit
except ImportError:  # pragma: no cover - exercised only where triton is missing
    triton = tl = None

    def _jit(fn=None, **kwargs):
        return fn if fn is not None else (lambda f: f)


__all__ = [
    "BACKENDS",
    "GumbelSoftmaxFunction",
    "get_backend",
    "gumbel_argmax",
    "gumbel_softmax",
    "gumbel_uniforms",
    "set_backend",
]

BACKENDS = ("auto", "triton", "reference")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BACKEND_ENV_VAR = "GUMBENCH_KERNEL_BACKEND"

# Launch configuration, read at call time (tests shrink them to reach the looped path).
_MAX_SINGLE_BLOCK = 8192  # widest row kept whole in registers (16 warps, 16 values a thread)
_LOOP_BLOCK = 4096  # chunk of the looped path
_ROWS_TILE = 2048  # elements per program when several short rows share one


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@_jit
def _uniform_tile(seed_lo, seed_hi, rows, group0, ROWS: tl.constexpr, BLOCK_K: tl.constexpr):
    """Uniforms for columns [4*group0, 4*group0 + BLOCK_K) of ``rows``: a (ROWS, BLOCK_K) fp32 tile.

    Safe noise: k = the top 23 bits of a 32-bit Philox output, u = (k + 0.5) * 2**-23.
    k < 2**23 converts to fp32 exactly and k + 0.5 needs 24 significant bits, which fp32
    has, so u is exact and lies in [2**-24, 1 - 2**-24]: never 0, never rounded to 1.
    This is the reference's ``uniform_open`` bit for bit.
    """
    GROUPS: tl.constexpr = BLOCK_K // 4
    zero = tl.zeros((ROWS, GROUPS), dtype=tl.uint32)
    c0 = zero + (group0 + tl.arange(0, GROUPS)).to(tl.uint32)[None, :]
    c1 = zero + rows.to(tl.uint32)[:, None]  # low 32 bits of the row
    c2 = zero + (rows >> 32).to(tl.uint32)[:, None]
    k0 = seed_lo.to(tl.uint32, bitcast=True)
    k1 = seed_hi.to(tl.uint32, bitcast=True)
    r0, r1, r2, r3 = tl.philox_impl(c0, c1, c2, zero, k0, k1)
    # (ROWS, GROUPS, 2, 2) with [..., a, b] = r[2a + b]: column 4*g + j gets r_j.
    bits = tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), (ROWS, BLOCK_K))
    return ((bits >> 9).to(tl.float32) + 0.5) * 1.1920928955078125e-07  # 2**-23


@_jit
def _gumbel_tile(seed_lo, seed_hi, rows, group0, ROWS: tl.constexpr, BLOCK_K: tl.constexpr):
    """Gumbel(0, 1) noise g = -log(-log(u)), finite everywhere.

    With u in [2**-24, 1 - 2**-24], -log(u) is in [5.96e-8, 16.64] (strictly positive:
    tl.log is libdevice's accurate logf, not the approximate lg2 whose absolute error
    near 1 exceeds -log(1 - 2**-24)), so g is in [-2.82, 16.64]. Added to fp32 logits of
    +-1e4 and scaled by 1/tau <= 100 that stays far inside fp32; -inf logits stay -inf,
    get exp(-inf) = 0 and are never the argmax of a row with a finite entry.
    """
    u = _uniform_tile(seed_lo, seed_hi, rows, group0, ROWS, BLOCK_K)
    return -tl.log(-tl.log(u))


@_jit
def _bad_rows(zmax, total):
    """Rows to reject: NaN, +inf or no finite entry (the reference's check, per row).

    zmax is the row max of z = x + g and total a row sum that is NaN when the row holds
    a NaN: the softmax denominator, or the sum of z where no softmax is computed (tl.max
    ignores NaN on the GPU, so the max alone would miss it).
    """
    return ~((zmax > float("-inf")) & (zmax < float("inf"))) | (total != total)


@_jit
def _first_argmax(z, zmax, cols, n_cols):
    """Index of the first column equal to the row max (torch.argmax's tie rule)."""
    idx = tl.min(tl.where(z == zmax[:, None], cols[None, :], 2147483647), axis=1)
    return tl.minimum(idx, n_cols - 1)  # a NaN row (rejected when checking) stays in range


@_jit
def _finite_or_zero(m):
    # Shift for exp2((z - m) * scale): a -inf max (nothing seen yet, or a padding row)
    # becomes 0, so exp2 sees -inf - 0 = -inf and gives 0 instead of exp2(NaN).
    return tl.where(m > float("-inf"), m, 0.0)


@_jit
def _softmax_rows(z, zmax, scale):
    """softmax(z / tau) along rows and its denominator; scale = log2(e) / tau, zmax = max(z).

    Padding lanes and -inf logits give exp2(-inf) = 0. A valid row has a finite max and
    a sum >= 1 (the max contributes exp2(0) = 1), so clamping the sum at 1 changes
    nothing there; it keeps rows past the end of the tensor (all -inf, sum 0) finite.
    """
    e = tl.exp2((z - _finite_or_zero(zmax)[:, None]) * scale)
    total = tl.sum(e, axis=1)
    return e * (1.0 / tl.maximum(total, 1.0))[:, None], total


@_jit(do_not_specialize=["seed_lo", "seed_hi"])
def _gumbel_softmax_fwd_kernel(
    x_ptr, y_ptr, y_soft_ptr, index_ptr, status_ptr,
    n_rows, n_cols, stride_x_row, stride_x_col,
    scale,  # log2(e) / tau
    seed_lo, seed_hi,
    BLOCK_K: tl.constexpr, ROWS: tl.constexpr,
    HARD: tl.constexpr, WRITE_Y: tl.constexpr, WRITE_SOFT: tl.constexpr,
    WRITE_INDEX: tl.constexpr, CHECK: tl.constexpr,
):  # fmt: skip
    """Single-block forward: ROWS whole rows per program, one read of the logits.

    Writes y (soft probabilities, or the one-hot of the argmax when HARD), optionally the
    soft y into y_soft (HARD with a saved-y backward) and the argmax index.
    """
    NEED_SOFT: tl.constexpr = (WRITE_Y and not HARD) or WRITE_SOFT
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_K)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < n_cols)[None, :]

    x = tl.load(x_ptr + rows[:, None] * stride_x_row + cols[None, :] * stride_x_col, mask=mask, other=float("-inf"))
    z = x.to(tl.float32) + _gumbel_tile(seed_lo, seed_hi, rows, 0, ROWS, BLOCK_K)
    zmax = tl.max(z, axis=1)

    out = rows[:, None] * n_cols + cols[None, :]
    if HARD or WRITE_INDEX:
        index = _first_argmax(z, zmax, cols, n_cols)
        if WRITE_INDEX:
            tl.store(index_ptr + rows, index.to(tl.int64), mask=row_ok)
        if HARD and WRITE_Y:
            one_hot = tl.where(cols[None, :] == index[:, None], 1.0, 0.0)
            tl.store(y_ptr + out, one_hot.to(y_ptr.dtype.element_ty), mask=mask)
    if NEED_SOFT:
        y_soft, total = _softmax_rows(z, zmax, scale)
        if WRITE_SOFT:
            tl.store(y_soft_ptr + out, y_soft.to(y_soft_ptr.dtype.element_ty), mask=mask)
        if WRITE_Y and not HARD:
            tl.store(y_ptr + out, y_soft.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        total = tl.sum(z, axis=1)
    if CHECK:
        tl.atomic_max(status_ptr + tl.zeros_like(rows), 1, mask=row_ok & _bad_rows(zmax, total))


@_jit(do_not_specialize=["seed_lo", "seed_hi"])
def _gumbel_softmax_fwd_looped_kernel(
    x_ptr, y_ptr, y_soft_ptr, index_ptr, status_ptr,
    n_rows, n_cols, stride_x_row, stride_x_col,
    scale,
    seed_lo, seed_hi,
    BLOCK_K: tl.constexpr,
    HARD: tl.constexpr, WRITE_Y: tl.constexpr, WRITE_SOFT: tl.constexpr,
    WRITE_INDEX: tl.constexpr, CHECK: tl.constexpr,
):  # fmt: skip
    """Looped forward for long rows: one row per program, BLOCK_K columns at a time.

    Pass 1 keeps the running max of z = x + g (with its first index) and the softmax
    denominator rescaled online; pass 2 writes the one-hot (no reads) or re-reads the
    logits, regenerates the same noise and writes the probabilities.
    """
    NEED_SOFT: tl.constexpr = (WRITE_Y and not HARD) or WRITE_SOFT
    row = tl.program_id(0).to(tl.int64)
    rows = row + tl.arange(0, 1)
    x_row = x_ptr + row * stride_x_row
    cols0 = tl.arange(0, BLOCK_K)

    best = tl.full((1,), float("-inf"), tl.float32)  # running max of z
    best_index = tl.zeros((1,), tl.int32)
    m = tl.full((1,), float("-inf"), tl.float32)  # running max for the softmax
    denom = tl.zeros((1,), tl.float32)
    total = tl.zeros((1,), tl.float32)  # sum of z, NaN-detector when no softmax is computed
    for start in range(0, n_cols, BLOCK_K):
        cols = start + cols0
        x = tl.load(x_row + cols[None, :] * stride_x_col, mask=(cols < n_cols)[None, :], other=float("-inf"))
        z = x.to(tl.float32) + _gumbel_tile(seed_lo, seed_hi, rows, start // 4, 1, BLOCK_K)
        zmax = tl.max(z, axis=1)
        if HARD or WRITE_INDEX:
            index = _first_argmax(z, zmax, cols, n_cols)
            best_index = tl.where(zmax > best, index, best_index)  # strict: first max wins
        best = tl.maximum(best, zmax)
        if CHECK and not NEED_SOFT:
            total += tl.sum(z, axis=1)
        if NEED_SOFT:
            m_new = tl.maximum(m, zmax)
            shift = _finite_or_zero(m_new)
            denom = denom * tl.exp2((m - shift) * scale) + tl.sum(tl.exp2((z - shift[:, None]) * scale), axis=1)
            m = m_new
    if CHECK:
        tl.atomic_max(status_ptr + tl.zeros_like(rows), 1, mask=_bad_rows(best, denom if NEED_SOFT else total))
    if WRITE_INDEX:
        tl.store(index_ptr + rows, best_index.to(tl.int64))

    if (HARD and WRITE_Y) or NEED_SOFT:
        if NEED_SOFT:
            shift = _finite_or_zero(m)
            inv_denom = 1.0 / tl.maximum(denom, 1.0)
        for start in range(0, n_cols, BLOCK_K):
            cols = start + cols0
            col_ok = (cols < n_cols)[None, :]
            out = row * n_cols + cols[None, :]
            if HARD and WRITE_Y:
                one_hot = tl.where(cols[None, :] == best_index[:, None], 1.0, 0.0)
                tl.store(y_ptr + out, one_hot.to(y_ptr.dtype.element_ty), mask=col_ok)
            if NEED_SOFT:
                x = tl.load(x_row + cols[None, :] * stride_x_col, mask=col_ok, other=float("-inf"))
                z = x.to(tl.float32) + _gumbel_tile(seed_lo, seed_hi, rows, start // 4, 1, BLOCK_K)
                y_soft = tl.exp2((z - shift[:, None]) * scale) * inv_denom[:, None]
                if WRITE_SOFT:
                    tl.store(y_soft_ptr + out, y_soft.to(y_soft_ptr.dtype.element_ty), mask=col_ok)
                if WRITE_Y and not HARD:
                    tl.store(y_ptr + out, y_soft.to(y_ptr.dtype.element_ty), mask=col_ok)


@_jit(do_not_specialize=["seed_lo", "seed_hi"])
def _gumbel_softmax_bwd_kernel(
    dy_ptr, x_ptr, y_ptr, dx_ptr,
    n_rows, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col,
    scale, inv_tau,
    seed_lo, seed_hi,
    BLOCK_K: tl.constexpr, ROWS: tl.constexpr, RECOMPUTE: tl.constexpr,
):  # fmt: skip
    """Single-block backward: dx = (1/tau) * y * (dy - sum(dy * y)), one pass.

    RECOMPUTE regenerates y from the logits and the seed; otherwise y is read from a
    saved contiguous tensor.
    """
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_K)
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]

    dy = tl.load(dy_ptr + rows[:, None] * stride_dy_row + cols[None, :] * stride_dy_col, mask=mask, other=0.0)
    dy = dy.to(tl.float32)
    if RECOMPUTE:
        x = tl.load(x_ptr + rows[:, None] * stride_x_row + cols[None, :] * stride_x_col, mask=mask, other=float("-inf"))
        z = x.to(tl.float32) + _gumbel_tile(seed_lo, seed_hi, rows, 0, ROWS, BLOCK_K)
        y, _ = _softmax_rows(z, tl.max(z, axis=1), scale)
    else:
        y = tl.load(y_ptr + rows[:, None] * n_cols + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    dot = tl.sum(dy * y, axis=1)
    dx = y * (dy - dot[:, None]) * inv_tau
    tl.store(dx_ptr + rows[:, None] * n_cols + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)


@_jit(do_not_specialize=["seed_lo", "seed_hi"])
def _gumbel_softmax_bwd_looped_kernel(
    dy_ptr, x_ptr, y_ptr, dx_ptr,
    n_rows, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col,
    scale, inv_tau,
    seed_lo, seed_hi,
    BLOCK_K: tl.constexpr, RECOMPUTE: tl.constexpr,
):  # fmt: skip
    """Looped backward: pass 1 accumulates sum(dy * y) (online, with the softmax
    denominator, when recomputing), pass 2 writes dx."""
    row = tl.program_id(0).to(tl.int64)
    rows = row + tl.arange(0, 1)
    dy_row = dy_ptr + row * stride_dy_row
    x_row = x_ptr + row * stride_x_row
    cols0 = tl.arange(0, BLOCK_K)

    m = tl.full((1,), float("-inf"), tl.float32)
    denom = tl.zeros((1,), tl.float32)
    dot = tl.zeros((1,), tl.float32)  # sum(dy * e) when recomputing, sum(dy * y) otherwise
    for start in range(0, n_cols, BLOCK_K):
        cols = start + cols0
        col_ok = (cols < n_cols)[None, :]
        dy = tl.load(dy_row + cols[None, :] * stride_dy_col, mask=col_ok, other=0.0).to(tl.float32)
        if RECOMPUTE:
            x = tl.load(x_row + cols[None, :] * stride_x_col, mask=col_ok, other=float("-inf"))
            z = x.to(tl.float32) + _gumbel_tile(seed_lo, seed_hi, rows, start // 4, 1, BLOCK_K)
            m_new = tl.maximum(m, tl.max(z, axis=1))
            shift = _finite_or_zero(m_new)
            rescale = tl.exp2((m - shift) * scale)
            e = tl.exp2((z - shift[:, None]) * scale)
            denom = denom * rescale + tl.sum(e, axis=1)
            dot = dot * rescale + tl.sum(dy * e, axis=1)
            m = m_new
        else:
            y = tl.load(y_ptr + row * n_cols + cols[None, :], mask=col_ok, other=0.0).to(tl.float32)
            dot += tl.sum(dy * y, axis=1)
    if RECOMPUTE:
        shift = _finite_or_zero(m)
        inv_denom = 1.0 / tl.maximum(denom, 1.0)
        dot = dot * inv_denom

    for start in range(0, n_cols, BLOCK_K):
        cols = start + cols0
        col_ok = (cols < n_cols)[None, :]
        dy = tl.load(dy_row + cols[None, :] * stride_dy_col, mask=col_ok, other=0.0).to(tl.float32)
        if RECOMPUTE:
            x = tl.load(x_row + cols[None, :] * stride_x_col, mask=col_ok, other=float("-inf"))
            z = x.to(tl.float32) + _gumbel_tile(seed_lo, seed_hi, rows, start // 4, 1, BLOCK_K)
            y = tl.exp2((z - shift[:, None]) * scale) * inv_denom[:, None]
        else:
            y = tl.load(y_ptr + row * n_cols + cols[None, :], mask=col_ok, other=0.0).to(tl.float32)
        dx = y * (dy - dot[:, None]) * inv_tau
        tl.store(dx_ptr + row * n_cols + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=col_ok)


@_jit(do_not_specialize=["seed_lo", "seed_hi"])
def _gumbel_uniforms_kernel(u_ptr, n_rows, n_cols, seed_lo, seed_hi, BLOCK_K: tl.constexpr, ROWS: tl.constexpr):
    """Debug kernel: writes the uniforms the other kernels draw for (seed, row, col)."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols0 = tl.arange(0, BLOCK_K)
    for start in range(0, n_cols, BLOCK_K):
        cols = start + cols0
        u = _uniform_tile(seed_lo, seed_hi, rows, start // 4, ROWS, BLOCK_K)
        mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
        tl.store(u_ptr + rows[:, None] * n_cols + cols[None, :], u, mask=mask)


# --------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------

LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class LaunchConfig:
    block_k: int
    rows_per_program: int
    num_warps: int
    looped: bool

    def grid(self, n_rows: int) -> tuple[int]:
        return (n_rows if self.looped else -(-n_rows // self.rows_per_program),)


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def launch_config(n_rows: int, n_cols: int) -> LaunchConfig:
    """Block size, rows per program and warps, picked from K like Liger (no autotuning).

    Blocks are at least 4 wide (one Philox call feeds 4 columns); a program holds about
    ``_ROWS_TILE`` elements when rows are short, and 8-16 values per thread otherwise.
    """
    block = max(4, _next_power_of_2(n_cols))
    if block <= _MAX_SINGLE_BLOCK:
        rows = max(1, min(_ROWS_TILE // block, _next_power_of_2(n_rows)))
        num_warps = min(16, max(1, rows * block // 512))
        return LaunchConfig(block, rows, num_warps, looped=False)
    return LaunchConfig(_LOOP_BLOCK, 1, min(16, max(1, _LOOP_BLOCK // 512)), looped=True)


def _as_rows(t: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
    """View ``t`` as (rows, K); returns (tensor, rows, row stride, column stride).

    Leading dims that merge (contiguous, sliced, expanded) need no copy; others are copied.
    """
    n_cols = t.shape[-1]
    if t.dim() == 1:
        return t, 1, 0, t.stride(0)
    try:
        t2 = t.view(-1, n_cols)
    except RuntimeError:
        t2 = t.reshape(-1, n_cols)
    return t2, t2.shape[0], t2.stride(0), t2.stride(1)


def _split_seed(seed: int) -> tuple[int, int]:
    """A 64-bit seed as two int32 kernel arguments (signed, so Triton types both i32)."""
    seed &= (1 << 64) - 1
    lo, hi = seed & 0xFFFFFFFF, seed >> 32
    return lo - (1 << 32) * (lo >> 31), hi - (1 << 32) * (hi >> 31)


def _raise_bad_logits(logits: torch.Tensor) -> None:
    check_logits(logits)  # raises the reference's precise message
    raise GumbenchError("logits overflow to +-inf or NaN after adding Gumbel noise; keep |logits| well below 3e38")


def _forward(logits, tau, seed, *, hard, write_y, write_soft, write_index, check):
    """Launch the forward; returns (y or None, y_soft or None, index or None)."""
    n_cols = logits.shape[-1]
    x, n_rows, stride_row, stride_col = _as_rows(logits)
    y = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device) if write_y else None
    y_soft = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device) if write_soft else None
    index = torch.empty(logits.shape[:-1], dtype=torch.int64, device=logits.device) if write_index else None
    if n_rows == 0:
        return y, y_soft, index
    status = torch.zeros(1, dtype=torch.int32, device=logits.device) if check else None
    seed_lo, seed_hi = _split_seed(seed)
    cfg = launch_config(n_rows, n_cols)
    placeholder = x  # pointer for an output the variant never touches
    args = (
        x, placeholder if y is None else y, placeholder if y_soft is None else y_soft,
        placeholder if index is None else index, placeholder if status is None else status,
        n_rows, n_cols, stride_row, stride_col, LOG2E / tau, seed_lo, seed_hi,
    )  # fmt: skip
    flags = dict(HARD=hard, WRITE_Y=write_y, WRITE_SOFT=write_soft, WRITE_INDEX=write_index, CHECK=check)
    if cfg.looped:
        _gumbel_softmax_fwd_looped_kernel[cfg.grid(n_rows)](*args, BLOCK_K=cfg.block_k, num_warps=cfg.num_warps, **flags)
    else:
        _gumbel_softmax_fwd_kernel[cfg.grid(n_rows)](
            *args, BLOCK_K=cfg.block_k, ROWS=cfg.rows_per_program, num_warps=cfg.num_warps, **flags
        )
    if check and status.item():  # one host sync; check=False skips it
        _raise_bad_logits(logits)
    return y, y_soft, index


def _backward(dy, saved, tau, seed, *, recompute, dtype):
    """Launch the backward; ``saved`` is the logits (recompute) or a contiguous y."""
    n_cols = dy.shape[-1]
    dy2, n_rows, stride_dy_row, stride_dy_col = _as_rows(dy)
    dx = torch.empty(dy.shape, dtype=dtype, device=dy.device)
    if n_rows == 0:
        return dx
    if recompute:
        x, _, stride_x_row, stride_x_col = _as_rows(saved)
        y = x
    else:
        y, x, stride_x_row, stride_x_col = saved, saved, 0, 0
    seed_lo, seed_hi = _split_seed(seed)
    cfg = launch_config(n_rows, n_cols)
    args = (
        dy2, x, y, dx, n_rows, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col,
        LOG2E / tau, 1.0 / tau, seed_lo, seed_hi,
    )  # fmt: skip
    if cfg.looped:
        _gumbel_softmax_bwd_looped_kernel[cfg.grid(n_rows)](
            *args, BLOCK_K=cfg.block_k, RECOMPUTE=recompute, num_warps=cfg.num_warps
        )
    else:
        _gumbel_softmax_bwd_kernel[cfg.grid(n_rows)](
            *args, BLOCK_K=cfg.block_k, ROWS=cfg.rows_per_program, RECOMPUTE=recompute, num_warps=cfg.num_warps
        )
    return dx


class GumbelSoftmaxFunction(torch.autograd.Function):
    """Autograd Function over the Triton kernels.

    ``apply(logits, tau, hard, seed, save_y, return_index, check)`` returns y, or
    (y, index) with ``return_index``. The backward is the Jacobian of the soft y with the
    forward's noise, also for hard=True (straight-through).
    """

    @staticmethod
    def forward(ctx, logits, tau, hard, seed, save_y, return_index, check):
        needs_grad = ctx.needs_input_grad[0]
        save_soft = needs_grad and save_y and hard
        y, y_soft, index = _forward(
            logits, tau, seed, hard=hard, write_y=True, write_soft=save_soft, write_index=return_index, check=check
        )
        ctx.tau, ctx.seed, ctx.recompute = tau, seed, not save_y
        if needs_grad:
            ctx.save_for_backward(logits if not save_y else (y_soft if hard else y))
        if return_index:
            ctx.mark_non_differentiable(index)
            return y, index
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, *_index_grad):
        (saved,) = ctx.saved_tensors
        dx = _backward(dy, saved, ctx.tau, ctx.seed, recompute=ctx.recompute, dtype=saved.dtype)
        return dx, None, None, None, None, None, None


# --------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------

_backend_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("gumbench_kernel_backend", default=None)


def _check_backend(name) -> str:
    return check_choice("backend", name, BACKENDS)


def get_backend() -> str:
    """The default backend: ``set_backend``'s value, else $GUMBENCH_KERNEL_BACKEND, else "auto"."""
    name = _backend_override.get()
    if name is None:
        name = os.environ.get(BACKEND_ENV_VAR) or "auto"
        if name not in BACKENDS:
            raise GumbenchError(f"${BACKEND_ENV_VAR} must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


class set_backend:
    """Force a backend: ``set_backend("reference")`` sets it for the current context,
    ``with set_backend("triton"): ...`` sets it for the block and restores it after."""

    def __init__(self, name: str):
        self._token = _backend_override.set(_check_backend(name))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        _backend_override.reset(self._token)


def triton_interpreting() -> bool:
    """True when the kernels were defined under TRITON_INTERPRET=1 (they then run on CPU)."""
    return triton is not None and not isinstance(_gumbel_softmax_fwd_kernel, triton.runtime.JITFunction)


def _resolve_backend(backend, logits: torch.Tensor) -> str:
    name = get_backend() if backend is None else _check_backend(backend)
    if name == "auto":
        use_triton = triton is not None and logits.is_cuda and logits.dtype in TRITON_DTYPES
        return "triton" if use_triton else "reference"
    if name == "triton":
        if triton is None:
            raise GumbenchError("backend 'triton' needs the triton package: pip install 'gumbench[kernel]'")
        if logits.dtype not in TRITON_DTYPES:
            allowed = ", ".join(str(d).removeprefix("torch.") for d in TRITON_DTYPES)
            raise GumbenchError(f"backend 'triton' takes logits of dtype {allowed}; got {logits.dtype}")
        if not logits.is_cuda and not (triton_interpreting() and logits.device.type == "cpu"):
            raise GumbenchError(
                f"backend 'triton' needs a CUDA tensor, got one on {logits.device}; on CPU it runs only "
                "under Triton's interpreter (set TRITON_INTERPRET=1 before importing gumbench.kernels)"
            )
    return name


def _check_seed(seed) -> int:
    if isinstance(seed, bool):
        raise GumbenchError(f"seed must be an integer, got {seed!r}")
    try:
        return operator.index(seed)
    except TypeError:
        raise GumbenchError(f"seed must be an integer, got {seed!r}") from None


def _draw_seed(generator: torch.Generator | None) -> int:
    """A 63-bit kernel seed drawn from ``generator`` (or the global CPU RNG, no GPU sync)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, device=device, dtype=torch.int64))


def _reference_generator(seed, generator, device) -> torch.Generator | None:
    if generator is not None or seed is None:
        return generator
    return torch.Generator(device=device).manual_seed(seed & ((1 << 64) - 1))


def _check_input(logits) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        check_logits(logits)  # raises its message for the non-tensor / integer / 0-d cases
    if logits.shape[-1] < 1:
        check_logits(logits)


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    hard: bool = False,
    seed: int | None = None,
    *,
    generator: torch.Generator | None = None,
    backend: str | None = None,
    save_y: bool = False,
    return_index: bool = False,
    check: bool = True,
):
    """Gumbel-softmax over the last dimension of ``logits`` (shape (..., K)).

    Returns y in ``logits.dtype``: softmax((logits + g) / tau) computed in fp32, or with
    ``hard=True`` the one-hot of argmax(logits + g) whose gradient is the soft y's
    (straight-through). With ``return_index=True`` returns (y, index), index of shape
    logits.shape[:-1] (int64, not differentiable).

    backend: None (the ``get_backend()`` default), "auto" (Triton on CUDA tensors of
    fp32/fp16/bf16, the PyTorch reference otherwise), "triton" or "reference".
    seed / generator: the triton backend draws noise from an integer seed, taken from
    ``seed``, else drawn from ``generator``, else from the global torch RNG; the
    reference backend uses ``generator``, else a generator seeded with ``seed``, else
    the global RNG. The two backends give different draws for the same seed.
    save_y: the triton backward reads a saved y instead of recomputing it from the logits
    and the seed (more memory, less compute; hard=True then writes y_soft once more).
    check: reject NaN, +inf and all -inf rows with GumbenchError (the triton backend
    checks inside the kernel, then syncs once with the host; check=False skips the sync
    and leaves the output of such rows undefined).
    """
    tau = check_positive("tau", tau)
    if seed is not None:
        seed = _check_seed(seed)
    _check_input(logits)
    if _resolve_backend(backend, logits) == "reference":
        gen = _reference_generator(seed, generator, logits.device)
        y, index = gumbel_softmax_reference(logits, tau, bool(hard), generator=gen, check=check)
        return (y, index) if return_index else y
    if seed is None:
        seed = _draw_seed(generator)
    return GumbelSoftmaxFunction.apply(logits, tau, bool(hard), seed, bool(save_y), bool(return_index), bool(check))


def gumbel_argmax(
    logits: torch.Tensor,
    seed: int | None = None,
    *,
    generator: torch.Generator | None = None,
    backend: str | None = None,
    check: bool = True,
) -> torch.Tensor:
    """argmax(logits + g) over the last dimension: a sample of the softmax's categorical.

    Same noise as ``gumbel_softmax(..., seed=seed, return_index=True)[1]`` on the same
    backend; the triton kernel only reads the logits and writes the int64 index.
    """
    if seed is not None:
        seed = _check_seed(seed)
    _check_input(logits)
    if _resolve_backend(backend, logits) == "reference":
        gen = _reference_generator(seed, generator, logits.device)
        with torch.no_grad():
            return gumbel_softmax_reference(logits, 1.0, False, generator=gen, check=check)[1]
    if seed is None:
        seed = _draw_seed(generator)
    with torch.no_grad():
        return _forward(logits, 1.0, seed, hard=True, write_y=False, write_soft=False, write_index=True, check=check)[2]


def gumbel_uniforms(shape, seed: int, *, device="cpu") -> torch.Tensor:
    """The uniforms the Triton kernels draw for ``seed`` over a (..., K) shape.

    Feeding them to ``gumbel_softmax_reference(uniforms=...)`` reproduces the kernel's
    forward; tests use it to compare the two paths draw for draw.
    """
    seed = _check_seed(seed)
    shape = tuple(shape)
    u = torch.empty(shape, dtype=torch.float32, device=device)
    n_cols = shape[-1] if shape else 1
    n_rows = u.numel() // max(n_cols, 1)
    if u.numel() == 0:
        return u
    cfg = launch_config(n_rows, n_cols)
    seed_lo, seed_hi = _split_seed(seed)
    grid = (-(-n_rows // cfg.rows_per_program),)
    _gumbel_uniforms_kernel[grid](
        u, n_rows, n_cols, seed_lo, seed_hi, BLOCK_K=cfg.block_k, ROWS=cfg.rows_per_program, num_warps=cfg.num_warps
    )
    return u
