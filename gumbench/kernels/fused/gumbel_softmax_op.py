"""Fused Gumbel-softmax in Triton: kernels, launchers and the autograd Function.

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
regenerates the Gumbel noise from (seed, row, column) with Philox, a counter-based RNG
(see ``primitives``), and recomputes y from the logits, so no noise or probabilities are
stored between the passes. ``save_y=True`` keeps y instead and trades that memory for the
backward's recompute (noise + exp); with hard=True it costs one extra write of y_soft.

Layout. The launchers view the input as (rows, K) with a row stride and a column stride
(any (..., G, V) tensor whose leading dims merge, sliced or with strided columns, goes in
without a copy). For K up to ``launch.MAX_SINGLE_BLOCK`` one program holds whole rows in
registers as two power-of-two tiles (K = 320 is 256 + 64), several rows per program when
K is small; above it a looped path streams each row in ``launch.LOOP_BLOCK`` chunks with
an online (running max / rescaled sum) softmax.

Instructions. The noise costs compute the unfused paths never see (Philox, two logs);
``gumbench audit-kernel`` counts the SASS per element against what keeps an H100
memory-bound (results/kernel/ptx_audit.md).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gumbench.errors import GumbenchError
from gumbench.kernels.fused.primitives import (
    INTERPRETED,
    LOG2E,
    bad_rows,
    finite_or_zero,
    first_max_index,
    load_f32,
    perturbed_logits,
    store,
    two_tiles,
    uniform_tile,
)
from gumbench.kernels.launch import PHILOX_WIDTH, as_rows, launch_config, next_power_of_2, split_seed
from gumbench.kernels.reference import check_logits

__all__ = ["GumbelSoftmaxFunction", "launch_backward", "launch_forward", "launch_uniforms"]


# --------------------------------------------------------------------------------------
# Kernels
#
# Single-block kernels hold ROWS whole rows as two register tiles, columns [0, BLOCK_A)
# and [BLOCK_A, BLOCK_A + BLOCK_B), both powers of two (see ``launch``). Valid rows have a
# finite max and a softmax sum >= 1 (the max contributes exp2(0) = 1); clamping the sum at
# 1 only keeps padding rows (sum 0) finite.
# --------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["seed_lo", "seed_hi"])
def gumbel_softmax_fwd_kernel(
    x_ptr, y_ptr, y_soft_ptr, index_ptr, status_ptr,
    n_rows, n_cols, stride_x_row, stride_x_col,
    scale,  # log2(e) / tau
    seed_lo, seed_hi,
    BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, ROWS: tl.constexpr,
    HARD: tl.constexpr, WRITE_Y: tl.constexpr, WRITE_SOFT: tl.constexpr,
    WRITE_INDEX: tl.constexpr, CHECK: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Single-block forward: one read of the logits, the noise drawn in registers.

    Writes y (soft probabilities, or the one-hot of the argmax when HARD), optionally the
    soft y into y_soft (HARD with a saved-y backward) and the argmax index. A HARD
    forward computes no softmax at all: the argmax of x + g does not depend on tau.
    """
    NEED_SOFT: tl.constexpr = (WRITE_Y and not HARD) or WRITE_SOFT
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    za, cols_a, mask_a = perturbed_logits(
        x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, 0, ROWS, BLOCK_A, FAST_MATH
    )
    zb, cols_b, mask_b = perturbed_logits(
        x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, BLOCK_A, ROWS, BLOCK_B, FAST_MATH
    )
    zmax = tl.maximum(tl.max(za, axis=1), tl.max(zb, axis=1))
    out_a = rows[:, None] * n_cols + cols_a[None, :]
    out_b = rows[:, None] * n_cols + cols_b[None, :]

    if HARD or WRITE_INDEX:
        index = tl.minimum(first_max_index(za, zmax, cols_a), first_max_index(zb, zmax, cols_b))
        index = tl.minimum(index, n_cols - 1)  # a NaN row (rejected when checking) stays in range
        if WRITE_INDEX:
            tl.store(index_ptr + rows, index.to(tl.int64), mask=row_ok)
        if HARD and WRITE_Y:
            store(y_ptr, out_a, tl.where(cols_a[None, :] == index[:, None], 1.0, 0.0), mask_a)
            store(y_ptr, out_b, tl.where(cols_b[None, :] == index[:, None], 1.0, 0.0), mask_b)
    if NEED_SOFT:
        shift = finite_or_zero(zmax)
        ea = tl.exp2((za - shift[:, None]) * scale)  # masked lanes and -inf logits give 0
        eb = tl.exp2((zb - shift[:, None]) * scale)
        total = tl.sum(ea, axis=1) + tl.sum(eb, axis=1)
        inv_total = 1.0 / tl.maximum(total, 1.0)
        soft_ptr = y_soft_ptr if WRITE_SOFT else y_ptr
        store(soft_ptr, out_a, ea * inv_total[:, None], mask_a)
        store(soft_ptr, out_b, eb * inv_total[:, None], mask_b)
    else:
        total = tl.sum(za, axis=1) + tl.sum(zb, axis=1)
    if CHECK:
        tl.atomic_max(status_ptr + tl.zeros_like(rows), 1, mask=row_ok & bad_rows(zmax, total))


@triton.jit(do_not_specialize=["seed_lo", "seed_hi"])
def gumbel_softmax_fwd_looped_kernel(
    x_ptr, y_ptr, y_soft_ptr, index_ptr, status_ptr,
    n_rows, n_cols, stride_x_row, stride_x_col,
    scale,
    seed_lo, seed_hi,
    BLOCK_K: tl.constexpr,
    HARD: tl.constexpr, WRITE_Y: tl.constexpr, WRITE_SOFT: tl.constexpr,
    WRITE_INDEX: tl.constexpr, CHECK: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Looped forward for long rows: one row per program, BLOCK_K columns at a time.

    Pass 1 keeps the running max of z = x + g with its first index and, for the soft
    output, the softmax denominator rescaled online (Milakov & Gimelshein, 2018).
    Pass 2 writes the one-hot (no reads), or re-reads the logits, regenerates the same
    noise and writes the probabilities.
    """
    NEED_SOFT: tl.constexpr = (WRITE_Y and not HARD) or WRITE_SOFT
    rows = tl.program_id(0).to(tl.int64) + tl.arange(0, 1)
    row_ok = rows < n_rows
    best = tl.full((1,), float("-inf"), tl.float32)  # running max of z
    best_index = tl.zeros((1,), tl.int32)
    m = tl.full((1,), float("-inf"), tl.float32)  # running max for the softmax
    denom = tl.zeros((1,), tl.float32)
    total = tl.zeros((1,), tl.float32)  # sum of z: the NaN detector when no softmax is computed
    for start in range(0, n_cols, BLOCK_K):
        z, cols, _ = perturbed_logits(
            x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, start, 1, BLOCK_K, FAST_MATH
        )
        zmax = tl.max(z, axis=1)
        if HARD or WRITE_INDEX:
            best_index = tl.where(zmax > best, first_max_index(z, zmax, cols), best_index)  # strict: first max wins
        best = tl.maximum(best, zmax)
        if NEED_SOFT:
            m_new = tl.maximum(m, zmax)
            shift = finite_or_zero(m_new)
            denom = denom * tl.exp2((m - shift) * scale) + tl.sum(tl.exp2((z - shift[:, None]) * scale), axis=1)
            m = m_new
        elif CHECK:
            total += tl.sum(z, axis=1)
    best_index = tl.minimum(best_index, n_cols - 1)
    if CHECK:
        tl.atomic_max(status_ptr + tl.zeros_like(rows), 1, mask=bad_rows(best, denom if NEED_SOFT else total))
    if WRITE_INDEX:
        tl.store(index_ptr + rows, best_index.to(tl.int64))

    if (HARD and WRITE_Y) or NEED_SOFT:
        _fwd_looped_write(
            x_ptr, y_ptr, y_soft_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, scale, seed_lo, seed_hi,
            best_index, m, denom, BLOCK_K, HARD, WRITE_Y, WRITE_SOFT, NEED_SOFT, FAST_MATH,
        )  # fmt: skip


@triton.jit
def _fwd_looped_write(
    x_ptr, y_ptr, y_soft_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, scale, seed_lo, seed_hi,
    best_index, m, denom,
    BLOCK_K: tl.constexpr, HARD: tl.constexpr, WRITE_Y: tl.constexpr, WRITE_SOFT: tl.constexpr,
    NEED_SOFT: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Pass 2 of the looped forward: the one-hot of ``best_index`` (no reads) and/or the
    probabilities from the logits and the regenerated noise, given the row's max ``m`` and
    softmax denominator."""
    shift = finite_or_zero(m)
    inv_denom = 1.0 / tl.maximum(denom, 1.0)
    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        col_ok = (cols < n_cols)[None, :]
        out = rows[:, None] * n_cols + cols[None, :]
        if HARD and WRITE_Y:
            store(y_ptr, out, tl.where(cols[None, :] == best_index[:, None], 1.0, 0.0), col_ok)
        if NEED_SOFT:
            z, _, _ = perturbed_logits(
                x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, start, 1, BLOCK_K, FAST_MATH
            )
            y_soft = tl.exp2((z - shift[:, None]) * scale) * inv_denom[:, None]
            store(y_soft_ptr if WRITE_SOFT else y_ptr, out, y_soft, col_ok)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi"])
def gumbel_softmax_bwd_kernel(
    dy_ptr, x_ptr, y_ptr, dx_ptr,
    n_rows, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col,
    scale, inv_tau,
    seed_lo, seed_hi,
    BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, ROWS: tl.constexpr,
    RECOMPUTE: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Single-block backward: dx = (1/tau) * y * (dy - sum(dy * y)), one pass.

    RECOMPUTE regenerates y from the logits and the seed; otherwise y is read from a
    saved contiguous tensor.
    """
    rows, row_ok, cols_a, cols_b, mask_a, mask_b = two_tiles(n_rows, n_cols, ROWS, BLOCK_A, BLOCK_B)
    dya = load_f32(dy_ptr, rows, cols_a, stride_dy_row, stride_dy_col, mask_a, 0.0)
    dyb = load_f32(dy_ptr, rows, cols_b, stride_dy_row, stride_dy_col, mask_b, 0.0)
    if RECOMPUTE:
        za, _, _ = perturbed_logits(
            x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, 0, ROWS, BLOCK_A, FAST_MATH
        )
        zb, _, _ = perturbed_logits(
            x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, BLOCK_A, ROWS, BLOCK_B, FAST_MATH
        )
        shift = finite_or_zero(tl.maximum(tl.max(za, axis=1), tl.max(zb, axis=1)))
        ea = tl.exp2((za - shift[:, None]) * scale)
        eb = tl.exp2((zb - shift[:, None]) * scale)
        inv_total = 1.0 / tl.maximum(tl.sum(ea, axis=1) + tl.sum(eb, axis=1), 1.0)
        ya = ea * inv_total[:, None]
        yb = eb * inv_total[:, None]
    else:
        ya = load_f32(y_ptr, rows, cols_a, n_cols, 1, mask_a, 0.0)
        yb = load_f32(y_ptr, rows, cols_b, n_cols, 1, mask_b, 0.0)
    dot = tl.sum(dya * ya, axis=1) + tl.sum(dyb * yb, axis=1)
    store(dx_ptr, rows[:, None] * n_cols + cols_a[None, :], ya * (dya - dot[:, None]) * inv_tau, mask_a)
    store(dx_ptr, rows[:, None] * n_cols + cols_b[None, :], yb * (dyb - dot[:, None]) * inv_tau, mask_b)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi"])
def gumbel_softmax_bwd_looped_kernel(
    dy_ptr, x_ptr, y_ptr, dx_ptr,
    n_rows, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col,
    scale, inv_tau,
    seed_lo, seed_hi,
    BLOCK_K: tl.constexpr, RECOMPUTE: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Looped backward: pass 1 accumulates sum(dy * y) (online, with the softmax
    denominator, when recomputing), pass 2 writes dx."""
    rows = tl.program_id(0).to(tl.int64) + tl.arange(0, 1)
    row_ok = rows < n_rows
    m = tl.full((1,), float("-inf"), tl.float32)
    denom = tl.zeros((1,), tl.float32)
    dot = tl.zeros((1,), tl.float32)  # sum(dy * e) when recomputing, sum(dy * y) otherwise
    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        col_ok = (cols < n_cols)[None, :]
        dy = load_f32(dy_ptr, rows, cols, stride_dy_row, stride_dy_col, col_ok, 0.0)
        if RECOMPUTE:
            z, _, _ = perturbed_logits(
                x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, start, 1, BLOCK_K, FAST_MATH
            )
            m_new = tl.maximum(m, tl.max(z, axis=1))
            shift = finite_or_zero(m_new)
            rescale = tl.exp2((m - shift) * scale)
            e = tl.exp2((z - shift[:, None]) * scale)
            denom = denom * rescale + tl.sum(e, axis=1)
            dot = dot * rescale + tl.sum(dy * e, axis=1)
            m = m_new
        else:
            dot += tl.sum(dy * load_f32(y_ptr, rows, cols, n_cols, 1, col_ok, 0.0), axis=1)
    shift = finite_or_zero(m)
    inv_denom = 1.0 / tl.maximum(denom, 1.0)
    if RECOMPUTE:
        dot = dot * inv_denom

    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        col_ok = (cols < n_cols)[None, :]
        dy = load_f32(dy_ptr, rows, cols, stride_dy_row, stride_dy_col, col_ok, 0.0)
        if RECOMPUTE:
            z, _, _ = perturbed_logits(
                x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, start, 1, BLOCK_K, FAST_MATH
            )
            y = tl.exp2((z - shift[:, None]) * scale) * inv_denom[:, None]
        else:
            y = load_f32(y_ptr, rows, cols, n_cols, 1, col_ok, 0.0)
        store(dx_ptr, rows[:, None] * n_cols + cols[None, :], y * (dy - dot[:, None]) * inv_tau, col_ok)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi"])
def gumbel_uniforms_kernel(u_ptr, n_rows, n_cols, seed_lo, seed_hi, stream, BLOCK_K: tl.constexpr, ROWS: tl.constexpr):
    """Debug kernel: writes the uniforms the other kernels draw for (seed, row, col)."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
        u = uniform_tile(seed_lo, seed_hi, rows, start // 4, stream, ROWS, BLOCK_K)
        tl.store(u_ptr + rows[:, None] * n_cols + cols[None, :], u, mask=mask)


# --------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------


def _raise_bad_logits(logits: torch.Tensor) -> None:
    check_logits(logits)  # raises the reference's precise message
    raise GumbenchError("logits overflow to +-inf or NaN after adding Gumbel noise; keep |logits| well below 3e38")


def launch_forward(logits, tau, seed, *, hard, write_y, write_soft, write_index, check):
    """Launch the forward; returns (y or None, y_soft or None, index or None)."""
    n_cols = logits.shape[-1]
    x, n_rows, stride_row, stride_col = as_rows(logits)
    new = dict(dtype=logits.dtype, device=logits.device)
    y = torch.empty(logits.shape, **new) if write_y else None
    y_soft = torch.empty(logits.shape, **new) if write_soft else None
    index = torch.empty(logits.shape[:-1], dtype=torch.int64, device=logits.device) if write_index else None
    if n_rows == 0:
        return y, y_soft, index
    status = torch.zeros(1, dtype=torch.int32, device=logits.device) if check else None
    seed_lo, seed_hi = split_seed(seed)
    cfg = launch_config(n_rows, n_cols)
    unused = x  # pointer for an output this variant never touches
    args = (
        x, unused if y is None else y, unused if y_soft is None else y_soft,
        unused if index is None else index, unused if status is None else status,
        n_rows, n_cols, stride_row, stride_col, LOG2E.value / tau, seed_lo, seed_hi,
    )  # fmt: skip
    flags = dict(
        HARD=hard, WRITE_Y=write_y, WRITE_SOFT=write_soft, WRITE_INDEX=write_index, CHECK=check,
        FAST_MATH=not INTERPRETED, **cfg.options(),
    )  # fmt: skip
    if cfg.looped:
        gumbel_softmax_fwd_looped_kernel[cfg.grid(n_rows)](*args, BLOCK_K=cfg.block_a, **flags)
    else:
        gumbel_softmax_fwd_kernel[cfg.grid(n_rows)](
            *args, BLOCK_A=cfg.block_a, BLOCK_B=cfg.block_b, ROWS=cfg.rows_per_program, **flags
        )
    if check and status.item():  # one host sync; check=False skips it
        _raise_bad_logits(logits)
    return y, y_soft, index


def launch_backward(dy, saved, tau, seed, *, recompute, dtype):
    """Launch the backward; ``saved`` is the logits (recompute) or a contiguous y."""
    n_cols = dy.shape[-1]
    dy2, n_rows, stride_dy_row, stride_dy_col = as_rows(dy)
    dx = torch.empty(dy.shape, dtype=dtype, device=dy.device)
    if n_rows == 0:
        return dx
    if recompute:
        x, _, stride_x_row, stride_x_col = as_rows(saved)
        y = x
    else:
        y, x, stride_x_row, stride_x_col = saved, saved, 0, 0
    seed_lo, seed_hi = split_seed(seed)
    cfg = launch_config(n_rows, n_cols)
    args = (
        dy2, x, y, dx, n_rows, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col,
        LOG2E.value / tau, 1.0 / tau, seed_lo, seed_hi,
    )  # fmt: skip
    flags = dict(RECOMPUTE=recompute, FAST_MATH=not INTERPRETED, **cfg.options())
    if cfg.looped:
        gumbel_softmax_bwd_looped_kernel[cfg.grid(n_rows)](*args, BLOCK_K=cfg.block_a, **flags)
    else:
        gumbel_softmax_bwd_kernel[cfg.grid(n_rows)](
            *args, BLOCK_A=cfg.block_a, BLOCK_B=cfg.block_b, ROWS=cfg.rows_per_program, **flags
        )
    return dx


def launch_uniforms(shape: tuple, seed: int, stream: int, device) -> torch.Tensor:
    """The uniforms the kernels draw for ``seed`` and ``stream`` over a (..., K) shape, in fp32."""
    u = torch.empty(shape, dtype=torch.float32, device=device)
    n_cols = shape[-1] if shape else 1
    n_rows = u.numel() // max(n_cols, 1)
    if u.numel() == 0:
        return u
    block = max(PHILOX_WIDTH, min(1024, next_power_of_2(n_cols)))
    rows = max(1, min(1024 // block, next_power_of_2(n_rows)))
    seed_lo, seed_hi = split_seed(seed)
    gumbel_uniforms_kernel[(-(-n_rows // rows),)](u, n_rows, n_cols, seed_lo, seed_hi, stream, BLOCK_K=block, ROWS=rows)
    return u


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
        y, y_soft, index = launch_forward(
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
        dx = launch_backward(dy, saved, ctx.tau, ctx.seed, recompute=ctx.recompute, dtype=saved.dtype)
        return dx, None, None, None, None, None, None
