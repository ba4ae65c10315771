"""Fused Gumbel-Rao (Paulus, Maddison and Krause 2021) in Triton: M conditional draws in registers.

The estimator's forward is one hard sample, D = one-hot(k) with k = argmax(x + g) for the
Gumbel-softmax kernel's own noise (Philox stream 0): the forward *is* ``gumbel_argmax``
plus a one-hot write, run by ``gumbel_softmax_op.launch_forward``. Its backward averages M
softmax Jacobians,

    dx = 1/(M tau) sum_m s_m * (dy - <s_m, dy>),   s_m = softmax((x + g_m) / tau),

with g_m drawn from the law of the Gumbel noise given argmax(x + g) = k. The PyTorch
reference (``gumbel_rao_reference``) materialises the (M, rows, V) noise and M softmaxes;
this backward regenerates each draw from (seed, row, column, m) with Philox (stream m + 1)
and keeps one running sum in registers, so the autograd graph saves the logits and the
int64 index whatever M is, and the backward allocates only dx.

Per draw, the conditional sampler (the exponential race; see ``conditional_gumbel``) needs
E_i = -ln u_i for every column and E_k at the sampled column (one extra Philox call per
row). Written against the winner, the perturbed logits give the softmax directly:

    z_k = log Z - log E_k  is the row max (every z_i < z_k), so with e_k = 1,
    e_i = exp((z_i - z_k) / tau) = r_i ** (1 / tau),   r_i = E_k pi_i / (E_i + E_k pi_i) < 1,
    log2 r_i = log2 E_k + log2 pi_i - log2(E_i + E_k pi_i),   s_m = e / sum(e).

No max reduction per draw, no overflow (r_i <= 1), log2 pi from one log-sum-exp per row
(so logits of +-1e4 are fine), and a masked column (-inf logit, pi_i = 0) gets e_i = 0.
Each draw costs per element one quarter Philox call, two logs, one exp and one reciprocal.

Rows up to ``launch.MAX_SINGLE_BLOCK`` wide are held whole in registers (the Gumbel-softmax
kernels' two-tile layout); wider rows take a looped path that streams the row three times
(log-sum-exp; per-draw normaliser and <s_m, dy>; dx), keeping the 2 x M per-row scalars in
a register vector of ``next_power_of_2(M)`` entries (M <= ``launch.MAX_LOOPED_SAMPLES``
there).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gumbench.kernels.fused import gumbel_softmax_op
from gumbench.kernels.fused.primitives import (
    INTERPRETED,
    LOG2E,
    exponential_from_uniform,
    fast_log2,
    finite_or_zero,
    load_f32,
    store,
    two_tiles,
    uniform_at,
    uniform_tile,
)
from gumbench.kernels.launch import as_rows, launch_config, next_power_of_2, split_seed

__all__ = ["GumbelRaoFunction", "launch_backward"]


@triton.jit
def _log2_pi(x, shift, log2_norm):
    """log2 pi = (x - shift) * log2(e) - log2(sum exp(x - shift)); -inf at masked columns."""
    return (x - shift[:, None]) * LOG2E - log2_norm[:, None]


@triton.jit
def _draw_weights(
    log2_pi, pi, cols, k, log2_ek, ek, seed_lo, seed_hi, rows, col0, stream, inv_tau,
    ROWS: tl.constexpr, WIDTH: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Unnormalised softmax weights e_i = r_i ** (1/tau) of one conditional draw on one tile."""
    u = uniform_tile(seed_lo, seed_hi, rows, col0 // 4, stream, ROWS, WIDTH)
    e = exponential_from_uniform(u, FAST_MATH)
    log2_r = log2_ek[:, None] + log2_pi - fast_log2(tl.fma(ek[:, None], pi, e), FAST_MATH)
    log2_r = tl.where(cols[None, :] == k[:, None], 0.0, log2_r)  # the winner: e_k = 1
    return tl.exp2(log2_r * inv_tau)


@triton.jit
def _winner_exponential(seed_lo, seed_hi, rows, k, stream, FAST_MATH: tl.constexpr):
    """(E_k, log2 E_k) of one draw at each row's sampled column."""
    ek = exponential_from_uniform(uniform_at(seed_lo, seed_hi, rows, k, stream), FAST_MATH)
    return ek, fast_log2(ek, FAST_MATH)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "n_samples"])
def gumbel_rao_bwd_kernel(
    dy_ptr, x_ptr, index_ptr, dx_ptr,
    n_rows, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col,
    inv_tau, grad_scale, n_samples,
    seed_lo, seed_hi,
    BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, ROWS: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Single-block backward: whole rows in two register tiles, one loop over the M draws."""
    rows, row_ok, cols_a, cols_b, mask_a, mask_b = two_tiles(n_rows, n_cols, ROWS, BLOCK_A, BLOCK_B)
    xa = load_f32(x_ptr, rows, cols_a, stride_x_row, stride_x_col, mask_a, float("-inf"))
    xb = load_f32(x_ptr, rows, cols_b, stride_x_row, stride_x_col, mask_b, float("-inf"))
    dya = load_f32(dy_ptr, rows, cols_a, stride_dy_row, stride_dy_col, mask_a, 0.0)
    dyb = load_f32(dy_ptr, rows, cols_b, stride_dy_row, stride_dy_col, mask_b, 0.0)
    k = tl.load(index_ptr + rows, mask=row_ok, other=0).to(tl.int32)
    # log pi once per row: the draws only ever see pi and log2 pi
    shift = finite_or_zero(tl.maximum(tl.max(xa, axis=1), tl.max(xb, axis=1)))
    total = tl.sum(tl.exp2((xa - shift[:, None]) * LOG2E), axis=1)
    total += tl.sum(tl.exp2((xb - shift[:, None]) * LOG2E), axis=1)
    log2_norm = tl.log2(tl.maximum(total, 1.0))  # total >= 1 on real rows (the max term is 1)
    log2_pi_a = _log2_pi(xa, shift, log2_norm)
    log2_pi_b = _log2_pi(xb, shift, log2_norm)
    pi_a = tl.exp2(log2_pi_a)
    pi_b = tl.exp2(log2_pi_b)
    acc_a = tl.zeros((ROWS, BLOCK_A), tl.float32)
    acc_b = tl.zeros((ROWS, BLOCK_B), tl.float32)
    for m in range(n_samples):
        stream = m + 1
        ek, log2_ek = _winner_exponential(seed_lo, seed_hi, rows, k, stream, FAST_MATH)
        ea = _draw_weights(
            log2_pi_a,
            pi_a,
            cols_a,
            k,
            log2_ek,
            ek,
            seed_lo,
            seed_hi,
            rows,
            0,
            stream,
            inv_tau,
            ROWS,
            BLOCK_A,
            FAST_MATH,
        )
        eb = _draw_weights(
            log2_pi_b, pi_b, cols_b, k, log2_ek, ek, seed_lo, seed_hi, rows, BLOCK_A, stream, inv_tau, ROWS, BLOCK_B,
            FAST_MATH,
        )  # fmt: skip
        inv_denom = 1.0 / (tl.sum(ea, axis=1) + tl.sum(eb, axis=1))  # >= 1 term: e_k = 1
        dot = (tl.sum(ea * dya, axis=1) + tl.sum(eb * dyb, axis=1)) * inv_denom
        acc_a += ea * inv_denom[:, None] * (dya - dot[:, None])
        acc_b += eb * inv_denom[:, None] * (dyb - dot[:, None])
    store(dx_ptr, rows[:, None] * n_cols + cols_a[None, :], acc_a * grad_scale, mask_a)
    store(dx_ptr, rows[:, None] * n_cols + cols_b[None, :], acc_b * grad_scale, mask_b)


@triton.jit
def _pick(vector, index, slots):
    """vector[index] of a register vector (a masked sum: Triton has no dynamic indexing)."""
    return tl.sum(tl.where(slots == index, vector, 0.0), axis=0)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "n_samples"])
def gumbel_rao_bwd_looped_kernel(
    dy_ptr, x_ptr, index_ptr, dx_ptr,
    n_rows, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col,
    inv_tau, grad_scale, n_samples,
    seed_lo, seed_hi,
    BLOCK_K: tl.constexpr, SAMPLES: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Looped backward, one row per program, for rows wider than a register block.

    Pass 1: online log-sum-exp of x. Pass 2, per draw: the normaliser sum(e) and sum(e * dy),
    kept in two vectors of SAMPLES (>= M) entries. Pass 3, per chunk: dx summed over the
    draws and written once.
    """
    rows = tl.program_id(0).to(tl.int64) + tl.arange(0, 1)
    row_ok = rows < n_rows
    k = tl.load(index_ptr + rows, mask=row_ok, other=0).to(tl.int32)
    shift, log2_norm = _looped_log_norm(x_ptr, rows, n_cols, stride_x_row, stride_x_col, BLOCK_K)
    slots = tl.arange(0, SAMPLES)
    inv_denoms, dots = _looped_draw_sums(
        dy_ptr, x_ptr, rows, k, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col, shift, log2_norm,
        inv_tau, n_samples, seed_lo, seed_hi, slots, BLOCK_K, SAMPLES, FAST_MATH,
    )  # fmt: skip
    _looped_write_dx(
        dy_ptr, x_ptr, dx_ptr, rows, k, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col, shift,
        log2_norm, inv_tau, grad_scale, n_samples, seed_lo, seed_hi, slots, inv_denoms, dots, BLOCK_K, FAST_MATH,
    )  # fmt: skip


@triton.jit
def _looped_log_norm(x_ptr, rows, n_cols, stride_x_row, stride_x_col, BLOCK_K: tl.constexpr):
    """Pass 1: online log-sum-exp of the row; returns (shift, log2 sum exp(x - shift))."""
    m_run = tl.full((1,), float("-inf"), tl.float32)
    total = tl.zeros((1,), tl.float32)
    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        x = load_f32(x_ptr, rows, cols, stride_x_row, stride_x_col, (cols < n_cols)[None, :], float("-inf"))
        m_new = tl.maximum(m_run, tl.max(x, axis=1))
        shift = finite_or_zero(m_new)
        total = total * tl.exp2((m_run - shift) * LOG2E)
        total += tl.sum(tl.exp2((x - shift[:, None]) * LOG2E), axis=1)
        m_run = m_new
    shift = finite_or_zero(m_run)
    return shift, tl.log2(tl.maximum(total, 1.0))


@triton.jit
def _looped_draw_sums(
    dy_ptr, x_ptr, rows, k, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col, shift, log2_norm,
    inv_tau, n_samples, seed_lo, seed_hi, slots,
    BLOCK_K: tl.constexpr, SAMPLES: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Pass 2: per draw m, 1 / sum(e) and <s_m, dy> at slot m of two SAMPLES-entry vectors."""
    denoms = tl.zeros((SAMPLES,), tl.float32)
    dots = tl.zeros((SAMPLES,), tl.float32)
    for m in range(n_samples):
        stream = m + 1
        ek, log2_ek = _winner_exponential(seed_lo, seed_hi, rows, k, stream, FAST_MATH)
        denom = tl.zeros((1,), tl.float32)
        dot = tl.zeros((1,), tl.float32)
        for start in range(0, n_cols, BLOCK_K):
            cols = start + tl.arange(0, BLOCK_K)
            col_ok = (cols < n_cols)[None, :]
            x = load_f32(x_ptr, rows, cols, stride_x_row, stride_x_col, col_ok, float("-inf"))
            dy = load_f32(dy_ptr, rows, cols, stride_dy_row, stride_dy_col, col_ok, 0.0)
            log2_pi = _log2_pi(x, shift, log2_norm)
            e = _draw_weights(
                log2_pi, tl.exp2(log2_pi), cols, k, log2_ek, ek, seed_lo, seed_hi, rows, start, stream, inv_tau,
                1, BLOCK_K, FAST_MATH,
            )  # fmt: skip
            denom += tl.sum(e, axis=1)
            dot += tl.sum(e * dy, axis=1)
        denoms = tl.where(slots == m, tl.sum(denom, axis=0), denoms)
        dots = tl.where(slots == m, tl.sum(dot, axis=0), dots)
    inv_denoms = 1.0 / tl.where(slots < n_samples, denoms, 1.0)
    return inv_denoms, dots * inv_denoms


@triton.jit
def _looped_write_dx(
    dy_ptr, x_ptr, dx_ptr, rows, k, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col, shift,
    log2_norm, inv_tau, grad_scale, n_samples, seed_lo, seed_hi, slots, inv_denoms, dots,
    BLOCK_K: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """Pass 3: per chunk, dx summed over the M draws (regenerated) and written once."""
    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        col_ok = (cols < n_cols)[None, :]
        x = load_f32(x_ptr, rows, cols, stride_x_row, stride_x_col, col_ok, float("-inf"))
        dy = load_f32(dy_ptr, rows, cols, stride_dy_row, stride_dy_col, col_ok, 0.0)
        log2_pi = _log2_pi(x, shift, log2_norm)
        pi = tl.exp2(log2_pi)
        acc = tl.zeros((1, BLOCK_K), tl.float32)
        for m in range(n_samples):
            stream = m + 1
            ek, log2_ek = _winner_exponential(seed_lo, seed_hi, rows, k, stream, FAST_MATH)
            e = _draw_weights(
                log2_pi, pi, cols, k, log2_ek, ek, seed_lo, seed_hi, rows, start, stream, inv_tau, 1, BLOCK_K, FAST_MATH
            )
            acc += e * _pick(inv_denoms, m, slots) * (dy - _pick(dots, m, slots))
        store(dx_ptr, rows[:, None] * n_cols + cols[None, :], acc * grad_scale, col_ok)


def launch_backward(dy, logits, index, tau, samples, seed):
    """Launch the backward: dx from the saved logits and index, the M draws regenerated."""
    n_cols = dy.shape[-1]
    dy2, n_rows, stride_dy_row, stride_dy_col = as_rows(dy)
    x, _, stride_x_row, stride_x_col = as_rows(logits)
    dx = torch.empty(dy.shape, dtype=logits.dtype, device=dy.device)
    if n_rows == 0:
        return dx
    seed_lo, seed_hi = split_seed(seed)
    cfg = launch_config(n_rows, n_cols)
    args = (
        dy2, x, index.reshape(-1), dx, n_rows, n_cols, stride_dy_row, stride_dy_col, stride_x_row, stride_x_col,
        1.0 / tau, 1.0 / (tau * samples), samples, seed_lo, seed_hi,
    )  # fmt: skip
    flags = dict(FAST_MATH=not INTERPRETED, **cfg.options())
    if cfg.looped:
        sample_slots = next_power_of_2(samples)
        gumbel_rao_bwd_looped_kernel[cfg.grid(n_rows)](*args, BLOCK_K=cfg.block_a, SAMPLES=sample_slots, **flags)
    else:
        gumbel_rao_bwd_kernel[cfg.grid(n_rows)](
            *args, BLOCK_A=cfg.block_a, BLOCK_B=cfg.block_b, ROWS=cfg.rows_per_program, **flags
        )
    return dx


class GumbelRaoFunction(torch.autograd.Function):
    """``apply(logits, tau, samples, seed, check)`` returns (y, index): y the one-hot sample,
    its gradient the Gumbel-Rao average over ``samples`` conditional draws. Saves the logits
    and the index, nothing that grows with ``samples``."""

    @staticmethod
    def forward(ctx, logits, tau, samples, seed, check):
        y, _, index = gumbel_softmax_op.launch_forward(
            logits, 1.0, seed, hard=True, write_y=True, write_soft=False, write_index=True, check=check
        )
        ctx.tau, ctx.samples, ctx.seed = tau, samples, seed
        ctx.save_for_backward(logits, index)
        ctx.mark_non_differentiable(index)
        return y, index

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _index_grad):
        logits, index = ctx.saved_tensors
        return launch_backward(dy, logits, index, ctx.tau, ctx.samples, ctx.seed), None, None, None, None
