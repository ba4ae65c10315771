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
(any (..., G, V) tensor whose leading dims merge, sliced or with strided columns, goes in
without a copy). For K up to ``_MAX_SINGLE_BLOCK`` one program holds whole rows in
registers as two power-of-two tiles (K = 320 is 256 + 64), several rows per program when
K is small; above it a looped path streams each row in ``_LOOP_BLOCK`` chunks with an
online (running max / rescaled sum) softmax.

Instructions. The noise costs compute the unfused paths never see (Philox, two logs);
``python -m gumbench.kernels.ptx_audit`` counts the SASS per element against what keeps
an H100 memory-bound (results/kernel/ptx_audit.md).

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
import sys
from dataclasses import dataclass

import torch

from gumbench.errors import GumbenchError, check_choice, check_positive
from gumbench.kernels.reference import check_logits, gumbel_softmax_reference

# Triton (the optional "kernel" extra) is imported on the first call that needs it, not
# here: importing this module stays cheap, works without Triton, and cannot fix
# TRITON_INTERPRET too early. Triton decides compiled vs interpreted when it decorates a
# function, so the kernels below are plain functions until _load_triton() decorates them
# (and decorates them again if TRITON_INTERPRET has changed since).
triton = tl = None
_JIT_OPTIONS: dict[tuple[str, str], dict] = {}  # every kernel and helper by (module, name), with its triton.jit options
_kernels_interpreted: bool | None = None  # how the kernels are decorated now; None: not yet
_decorated: set[tuple[str, str]] = set()  # keys of _JIT_OPTIONS decorated for that mode


def _jit(fn=None, **options):
    def register(f):
        _JIT_OPTIONS[(f.__module__, f.__name__)] = options
        return f

    return register(fn) if fn is not None else register


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
_MAX_SINGLE_BLOCK = 16384  # widest row kept whole in registers (16 warps, 32 values a thread, no spills)
_LOOP_BLOCK = 4096  # chunk of the looped path
_ROWS_TILE = 4096  # elements per program when several short rows share one


# --------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------

LN2 = 0.6931471805599453
LOG2E = 1.4426950408889634


@_jit
def _uniform_from_bits(bits):
    # (k + 0.5) * 2**-23 as one fma: k * 2**-23 and the sum are exact, so one rounding is none.
    return tl.fma((bits >> 9).to(tl.float32), 1.1920928955078125e-07, 5.960464477539063e-08)


@_jit
def _philox(seed_lo, seed_hi, c0, rows, stream):
    """Philox-4x32-10 keyed by the seed at counters (c0, row low 32 bits, row high 32 bits,
    stream), ``rows`` (int64) and ``stream`` broadcast to c0's shape: four 32-bit outputs."""
    zero = tl.zeros_like(c0)
    c1 = zero + rows.to(tl.uint32)
    c2 = zero + (rows >> 32).to(tl.uint32)
    c3 = (zero + stream).to(tl.uint32)
    return tl.philox_impl(c0, c1, c2, c3, seed_lo.to(tl.uint32, bitcast=True), seed_hi.to(tl.uint32, bitcast=True))


@_jit
def _uniform_tile(seed_lo, seed_hi, rows, group0, stream, ROWS: tl.constexpr, WIDTH: tl.constexpr):
    """Uniforms for columns [4*group0, 4*group0 + WIDTH) of ``rows``: a (ROWS, WIDTH) fp32 tile.

    Safe noise, step 1: k = the top 23 bits of a 32-bit Philox output, u = (k + 0.5) * 2**-23.
    k < 2**23 converts to fp32 exactly and k + 0.5 needs 24 significant bits, which fp32
    has, so u is exact and lies in [2**-24, 1 - 2**-24]: never 0, never rounded to 1.
    This is the reference's ``uniform_open`` bit for bit.

    ``stream`` is the fourth Philox counter word: 0 for the Gumbel-softmax noise, 1..M for
    the Gumbel-Rao kernel's conditional draws, so no two uses share a draw.
    """
    GROUPS: tl.constexpr = WIDTH // 4
    c0 = tl.zeros((ROWS, GROUPS), dtype=tl.uint32) + (group0 + tl.arange(0, GROUPS)).to(tl.uint32)[None, :]
    r0, r1, r2, r3 = _philox(seed_lo, seed_hi, c0, rows[:, None], stream)
    # (ROWS, GROUPS, 2, 2) with [..., a, b] = r[2a + b]: column 4*g + j gets r_j.
    bits = tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), (ROWS, WIDTH))
    return _uniform_from_bits(bits)


@_jit
def _uniform_at(seed_lo, seed_hi, rows, cols, stream):
    """The uniform ``_uniform_tile`` draws at (rows[i], cols[i]) for each i: one column per row."""
    r0, r1, r2, r3 = _philox(seed_lo, seed_hi, (cols // 4).to(tl.uint32), rows, stream)
    j = cols % 4
    bits = tl.where(j == 0, r0, tl.where(j == 1, r1, tl.where(j == 2, r2, r3)))
    return _uniform_from_bits(bits)


@_jit
def _log2(x, FAST_MATH: tl.constexpr):
    if FAST_MATH:
        # MUFU.LG2: absolute error <= 2**-22 on [0.5, 2], 2 ulp elsewhere (CUDA's __log2f).
        # tl.log2 is libdevice's ~20-instruction log2f; the interpreter has no inline asm.
        return tl.inline_asm_elementwise(
            "lg2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.log2(x)


@_jit
def _reciprocal(x, FAST_MATH: tl.constexpr):
    if FAST_MATH:
        # MUFU.RCP, 1 ulp; '/' would be div.full.f32 with range checks for arguments we never pass
        return tl.inline_asm_elementwise(
            "rcp.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return 1.0 / x


@_jit
def _exponential_from_uniform(u, FAST_MATH: tl.constexpr):
    """E = -ln(u), an Exponential(1) draw, for u in [2**-24, 1 - 2**-24].

    Safe noise, step 2: E must stay > 0 as u -> 1, where -ln(u) is as small as 6e-8 and
    an approximate log (absolute error 2**-22 near 1) could return 0 or a negative. So
    u < 0.75 takes -ln2 * log2(u) (|log2(u)| >= 0.41: relative error <= 6e-7), and
    u >= 0.75 takes -ln(1 - v) = 2 atanh(v / (2 - v)) with v = 1 - u, exact there
    (Sterbenz); s = v / (2 - v) <= 1/7, so the odd series to s**7 is within 2e-8.
    E then lies in [5.96e-8, 16.64] and is never 0.
    """
    v = 1.0 - u
    s = v * _reciprocal(1.0 + u, FAST_MATH)  # 2 - v = 1 + u, in [1.75, 2)
    s2 = s * s
    series = s * tl.fma(s2, tl.fma(s2, tl.fma(s2, 0.2857142857142857, 0.4), 0.6666666666666666), 2.0)
    return tl.where(u < 0.75, -0.6931471805599453 * _log2(u, FAST_MATH), series)


@_jit
def _add_gumbel(x, seed_lo, seed_hi, rows, group0, ROWS: tl.constexpr, WIDTH: tl.constexpr, FAST_MATH: tl.constexpr):
    """x + g with Gumbel(0, 1) noise g = -ln(E), E = -ln(u): finite, in [-2.82, 16.64].

    Safe noise, step 3: with E in [5.96e-8, 16.64], g is bounded; added to fp32 logits of
    +-1e4 and scaled by 1/tau <= 100 it stays far inside fp32 (|z| <= 1e6). A -inf logit
    stays -inf, gets exp2(-inf) = 0 and never wins the argmax of a row with a finite entry.
    """
    e = _exponential_from_uniform(_uniform_tile(seed_lo, seed_hi, rows, group0, 0, ROWS, WIDTH), FAST_MATH)
    return tl.fma(_log2(e, FAST_MATH), -0.6931471805599453, x)


# --------------------------------------------------------------------------------------
# Row helpers
# --------------------------------------------------------------------------------------


@_jit
def _load_f32(ptr, rows, cols, stride_row, stride_col, mask, other):
    x = tl.load(ptr + rows[:, None] * stride_row + cols[None, :] * stride_col, mask=mask, other=other)
    return x.to(tl.float32)


@_jit
def _store(ptr, offsets, values, mask):
    tl.store(ptr + offsets, values.to(ptr.dtype.element_ty), mask=mask)


@_jit
def _perturbed_logits(
    x_ptr, rows, row_ok, n_cols, stride_row, stride_col, seed_lo, seed_hi, col0,
    ROWS: tl.constexpr, WIDTH: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """z = x + g on columns [col0, col0 + WIDTH) of ``rows`` in fp32; -inf where masked.

    Returns (z, cols, mask). col0 is a multiple of 4, so tiles start on Philox groups.
    """
    cols = col0 + tl.arange(0, WIDTH)
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    x = _load_f32(x_ptr, rows, cols, stride_row, stride_col, mask, float("-inf"))
    return _add_gumbel(x, seed_lo, seed_hi, rows, col0 // 4, ROWS, WIDTH, FAST_MATH), cols, mask


@_jit
def _two_tiles(n_rows, n_cols, ROWS: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr):
    """This program's rows and the two column tiles of the single-block layout, with masks."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    cols_a = tl.arange(0, BLOCK_A)
    cols_b = BLOCK_A + tl.arange(0, BLOCK_B)
    mask_a = row_ok[:, None] & (cols_a < n_cols)[None, :]
    mask_b = row_ok[:, None] & (cols_b < n_cols)[None, :]
    return rows, row_ok, cols_a, cols_b, mask_a, mask_b


@_jit
def _first_max_index(z, zmax, cols):
    """Per row, the first column where z equals the row max (torch.argmax's tie rule)."""
    return tl.min(tl.where(z == zmax[:, None], cols[None, :], 2147483647), axis=1)


@_jit
def _finite_or_zero(m):
    # Shift for exp2((z - m) * scale): a -inf max (nothing seen yet, or a row past the
    # end) becomes 0, so exp2 sees -inf - 0 = -inf and gives 0 instead of exp2(NaN).
    return tl.where(m > float("-inf"), m, 0.0)


@_jit
def _bad_rows(zmax, total):
    """Rows to reject: NaN, +inf or no finite entry (the reference's check, per row).

    zmax is the row max of z = x + g and total a row sum that is NaN when the row holds
    a NaN: the softmax denominator, or the sum of z where no softmax is computed (tl.max
    ignores NaN on the GPU, so the max alone would miss it).
    """
    return ~((zmax > float("-inf")) & (zmax < float("inf"))) | (total != total)


# --------------------------------------------------------------------------------------
# Kernels
#
# Single-block kernels hold ROWS whole rows as two register tiles, columns [0, BLOCK_A)
# and [BLOCK_A, BLOCK_A + BLOCK_B), both powers of two: K = 320 is 256 + 64 with no
# padding lane, where one next_power_of_2 tile would spend 37.5% of its noise work on
# padding. Valid rows have a finite max and a softmax sum >= 1 (the max contributes
# exp2(0) = 1); clamping the sum at 1 only keeps padding rows (sum 0) finite.
# --------------------------------------------------------------------------------------


@_jit(do_not_specialize=["seed_lo", "seed_hi"])
def _gumbel_softmax_fwd_kernel(
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
    za, cols_a, mask_a = _perturbed_logits(
        x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, 0, ROWS, BLOCK_A, FAST_MATH
    )
    zb, cols_b, mask_b = _perturbed_logits(
        x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, BLOCK_A, ROWS, BLOCK_B, FAST_MATH
    )
    zmax = tl.maximum(tl.max(za, axis=1), tl.max(zb, axis=1))
    out_a = rows[:, None] * n_cols + cols_a[None, :]
    out_b = rows[:, None] * n_cols + cols_b[None, :]

    if HARD or WRITE_INDEX:
        index = tl.minimum(_first_max_index(za, zmax, cols_a), _first_max_index(zb, zmax, cols_b))
        index = tl.minimum(index, n_cols - 1)  # a NaN row (rejected when checking) stays in range
        if WRITE_INDEX:
            tl.store(index_ptr + rows, index.to(tl.int64), mask=row_ok)
        if HARD and WRITE_Y:
            _store(y_ptr, out_a, tl.where(cols_a[None, :] == index[:, None], 1.0, 0.0), mask_a)
            _store(y_ptr, out_b, tl.where(cols_b[None, :] == index[:, None], 1.0, 0.0), mask_b)
    if NEED_SOFT:
        shift = _finite_or_zero(zmax)
        ea = tl.exp2((za - shift[:, None]) * scale)  # masked lanes and -inf logits give 0
        eb = tl.exp2((zb - shift[:, None]) * scale)
        total = tl.sum(ea, axis=1) + tl.sum(eb, axis=1)
        inv_total = 1.0 / tl.maximum(total, 1.0)
        soft_ptr = y_soft_ptr if WRITE_SOFT else y_ptr
        _store(soft_ptr, out_a, ea * inv_total[:, None], mask_a)
        _store(soft_ptr, out_b, eb * inv_total[:, None], mask_b)
    else:
        total = tl.sum(za, axis=1) + tl.sum(zb, axis=1)
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
        z, cols, _ = _perturbed_logits(
            x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, start, 1, BLOCK_K, FAST_MATH
        )
        zmax = tl.max(z, axis=1)
        if HARD or WRITE_INDEX:
            best_index = tl.where(zmax > best, _first_max_index(z, zmax, cols), best_index)  # strict: first max wins
        best = tl.maximum(best, zmax)
        if NEED_SOFT:
            m_new = tl.maximum(m, zmax)
            shift = _finite_or_zero(m_new)
            denom = denom * tl.exp2((m - shift) * scale) + tl.sum(tl.exp2((z - shift[:, None]) * scale), axis=1)
            m = m_new
        elif CHECK:
            total += tl.sum(z, axis=1)
    best_index = tl.minimum(best_index, n_cols - 1)
    if CHECK:
        tl.atomic_max(status_ptr + tl.zeros_like(rows), 1, mask=_bad_rows(best, denom if NEED_SOFT else total))
    if WRITE_INDEX:
        tl.store(index_ptr + rows, best_index.to(tl.int64))

    if (HARD and WRITE_Y) or NEED_SOFT:
        shift = _finite_or_zero(m)
        inv_denom = 1.0 / tl.maximum(denom, 1.0)
        for start in range(0, n_cols, BLOCK_K):
            cols = start + tl.arange(0, BLOCK_K)
            col_ok = (cols < n_cols)[None, :]
            out = rows[:, None] * n_cols + cols[None, :]
            if HARD and WRITE_Y:
                _store(y_ptr, out, tl.where(cols[None, :] == best_index[:, None], 1.0, 0.0), col_ok)
            if NEED_SOFT:
                z, _, _ = _perturbed_logits(
                    x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, start, 1, BLOCK_K,
                    FAST_MATH,
                )  # fmt: skip
                y_soft = tl.exp2((z - shift[:, None]) * scale) * inv_denom[:, None]
                _store(y_soft_ptr if WRITE_SOFT else y_ptr, out, y_soft, col_ok)


@_jit(do_not_specialize=["seed_lo", "seed_hi"])
def _gumbel_softmax_bwd_kernel(
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
    rows, row_ok, cols_a, cols_b, mask_a, mask_b = _two_tiles(n_rows, n_cols, ROWS, BLOCK_A, BLOCK_B)
    dya = _load_f32(dy_ptr, rows, cols_a, stride_dy_row, stride_dy_col, mask_a, 0.0)
    dyb = _load_f32(dy_ptr, rows, cols_b, stride_dy_row, stride_dy_col, mask_b, 0.0)
    if RECOMPUTE:
        za, _, _ = _perturbed_logits(
            x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, 0, ROWS, BLOCK_A, FAST_MATH
        )
        zb, _, _ = _perturbed_logits(
            x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, BLOCK_A, ROWS, BLOCK_B, FAST_MATH
        )
        shift = _finite_or_zero(tl.maximum(tl.max(za, axis=1), tl.max(zb, axis=1)))
        ea = tl.exp2((za - shift[:, None]) * scale)
        eb = tl.exp2((zb - shift[:, None]) * scale)
        inv_total = 1.0 / tl.maximum(tl.sum(ea, axis=1) + tl.sum(eb, axis=1), 1.0)
        ya = ea * inv_total[:, None]
        yb = eb * inv_total[:, None]
    else:
        ya = _load_f32(y_ptr, rows, cols_a, n_cols, 1, mask_a, 0.0)
        yb = _load_f32(y_ptr, rows, cols_b, n_cols, 1, mask_b, 0.0)
    dot = tl.sum(dya * ya, axis=1) + tl.sum(dyb * yb, axis=1)
    _store(dx_ptr, rows[:, None] * n_cols + cols_a[None, :], ya * (dya - dot[:, None]) * inv_tau, mask_a)
    _store(dx_ptr, rows[:, None] * n_cols + cols_b[None, :], yb * (dyb - dot[:, None]) * inv_tau, mask_b)


@_jit(do_not_specialize=["seed_lo", "seed_hi"])
def _gumbel_softmax_bwd_looped_kernel(
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
        dy = _load_f32(dy_ptr, rows, cols, stride_dy_row, stride_dy_col, col_ok, 0.0)
        if RECOMPUTE:
            z, _, _ = _perturbed_logits(
                x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, start, 1, BLOCK_K, FAST_MATH
            )
            m_new = tl.maximum(m, tl.max(z, axis=1))
            shift = _finite_or_zero(m_new)
            rescale = tl.exp2((m - shift) * scale)
            e = tl.exp2((z - shift[:, None]) * scale)
            denom = denom * rescale + tl.sum(e, axis=1)
            dot = dot * rescale + tl.sum(dy * e, axis=1)
            m = m_new
        else:
            dot += tl.sum(dy * _load_f32(y_ptr, rows, cols, n_cols, 1, col_ok, 0.0), axis=1)
    shift = _finite_or_zero(m)
    inv_denom = 1.0 / tl.maximum(denom, 1.0)
    if RECOMPUTE:
        dot = dot * inv_denom

    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        col_ok = (cols < n_cols)[None, :]
        dy = _load_f32(dy_ptr, rows, cols, stride_dy_row, stride_dy_col, col_ok, 0.0)
        if RECOMPUTE:
            z, _, _ = _perturbed_logits(
                x_ptr, rows, row_ok, n_cols, stride_x_row, stride_x_col, seed_lo, seed_hi, start, 1, BLOCK_K, FAST_MATH
            )
            y = tl.exp2((z - shift[:, None]) * scale) * inv_denom[:, None]
        else:
            y = _load_f32(y_ptr, rows, cols, n_cols, 1, col_ok, 0.0)
        _store(dx_ptr, rows[:, None] * n_cols + cols[None, :], y * (dy - dot[:, None]) * inv_tau, col_ok)


@_jit(do_not_specialize=["seed_lo", "seed_hi"])
def _gumbel_uniforms_kernel(u_ptr, n_rows, n_cols, seed_lo, seed_hi, stream, BLOCK_K: tl.constexpr, ROWS: tl.constexpr):
    """Debug kernel: writes the uniforms the other kernels draw for (seed, row, col)."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    for start in range(0, n_cols, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
        u = _uniform_tile(seed_lo, seed_hi, rows, start // 4, stream, ROWS, BLOCK_K)
        tl.store(u_ptr + rows[:, None] * n_cols + cols[None, :], u, mask=mask)


# --------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchConfig:
    """How a (rows, K) problem is cut: tile widths, rows per program, warps, path."""

    block_a: int  # first tile (single-block) or chunk width (looped)
    block_b: int  # second tile (single-block); 0 on the looped path
    rows_per_program: int
    num_warps: int
    looped: bool

    def grid(self, n_rows: int) -> tuple[int]:
        return (-(-n_rows // self.rows_per_program),)


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _prev_power_of_2(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def launch_config(n_rows: int, n_cols: int) -> LaunchConfig:
    """Tile widths, rows per program and warps, picked from K like Liger (no autotuning).

    K is covered by two power-of-two tiles, the largest power of two below K plus the
    rest rounded up (each at least 4 wide: one Philox call feeds 4 columns). Short rows
    share a program (about ``_ROWS_TILE`` elements each); threads hold about 16 values,
    enough to amortise each program's reductions (SASS per element drops from 66 at 8
    values to 50 at 16 for K = 320; see ptx_audit).
    Rows wider than ``_MAX_SINGLE_BLOCK`` take the looped path.
    """
    block_a = max(4, _prev_power_of_2(n_cols - 1))
    block_b = max(4, _next_power_of_2(n_cols - block_a))
    width = block_a + block_b
    if width <= _MAX_SINGLE_BLOCK:
        rows = max(1, min(_prev_power_of_2(_ROWS_TILE // width), _next_power_of_2(n_rows)))
        num_warps = min(16, _prev_power_of_2(rows * width // 512))
        return LaunchConfig(block_a, block_b, rows, num_warps, looped=False)
    return LaunchConfig(_LOOP_BLOCK, 0, 1, min(16, _prev_power_of_2(_LOOP_BLOCK // 512)), looped=True)


def _launch_options(cfg: LaunchConfig) -> dict:
    # fp fusion (a * b + c -> fma) stated, not inherited: Triton 3.9 defaults it on, 3.10 off;
    # the instruction counts in results/kernel assume it on.
    return {"num_warps": cfg.num_warps, "enable_fp_fusion": True}


def _as_rows(t: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
    """View ``t`` as (rows, K); returns (tensor, rows, row stride, column stride).

    Leading dims that merge (contiguous, sliced, expanded, a transposed last dim) need no
    copy; others are copied once.
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
    _load_triton()
    n_cols = logits.shape[-1]
    x, n_rows, stride_row, stride_col = _as_rows(logits)
    new = dict(dtype=logits.dtype, device=logits.device)
    y = torch.empty(logits.shape, **new) if write_y else None
    y_soft = torch.empty(logits.shape, **new) if write_soft else None
    index = torch.empty(logits.shape[:-1], dtype=torch.int64, device=logits.device) if write_index else None
    if n_rows == 0:
        return y, y_soft, index
    status = torch.zeros(1, dtype=torch.int32, device=logits.device) if check else None
    seed_lo, seed_hi = _split_seed(seed)
    cfg = launch_config(n_rows, n_cols)
    unused = x  # pointer for an output this variant never touches
    args = (
        x, unused if y is None else y, unused if y_soft is None else y_soft,
        unused if index is None else index, unused if status is None else status,
        n_rows, n_cols, stride_row, stride_col, LOG2E / tau, seed_lo, seed_hi,
    )  # fmt: skip
    flags = dict(
        HARD=hard, WRITE_Y=write_y, WRITE_SOFT=write_soft, WRITE_INDEX=write_index, CHECK=check,
        FAST_MATH=not triton_interpreting(), **_launch_options(cfg),
    )  # fmt: skip
    if cfg.looped:
        _gumbel_softmax_fwd_looped_kernel[cfg.grid(n_rows)](*args, BLOCK_K=cfg.block_a, **flags)
    else:
        _gumbel_softmax_fwd_kernel[cfg.grid(n_rows)](
            *args, BLOCK_A=cfg.block_a, BLOCK_B=cfg.block_b, ROWS=cfg.rows_per_program, **flags
        )
    if check and status.item():  # one host sync; check=False skips it
        _raise_bad_logits(logits)
    return y, y_soft, index


def _backward(dy, saved, tau, seed, *, recompute, dtype):
    """Launch the backward; ``saved`` is the logits (recompute) or a contiguous y."""
    _load_triton()
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
    flags = dict(RECOMPUTE=recompute, FAST_MATH=not triton_interpreting(), **_launch_options(cfg))
    if cfg.looped:
        _gumbel_softmax_bwd_looped_kernel[cfg.grid(n_rows)](*args, BLOCK_K=cfg.block_a, **flags)
    else:
        _gumbel_softmax_bwd_kernel[cfg.grid(n_rows)](
            *args, BLOCK_A=cfg.block_a, BLOCK_B=cfg.block_b, ROWS=cfg.rows_per_program, **flags
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


def _load_triton() -> bool:
    """Import Triton and decorate the kernels for the current TRITON_INTERPRET setting.

    Returns False when Triton is not installed.
    """
    global triton, tl, _kernels_interpreted
    if triton is None:
        try:
            import triton as triton_module
            import triton.language as tl_module
        except ImportError:
            return False
        triton, tl = triton_module, tl_module
    interpret = bool(triton.knobs.runtime.interpret)
    if _kernels_interpreted is not interpret or len(_decorated) != len(_JIT_OPTIONS):
        if interpret and isinstance(tl.philox_impl, triton.runtime.JITFunction):
            raise GumbenchError(
                "TRITON_INTERPRET=1 was set after triton was imported; Triton's own library is then "
                "compiled-only. Set it before anything imports triton."
            )
        if _kernels_interpreted is not interpret:
            _decorated.clear()
        # every registered function not yet decorated this way: after a mode change all of
        # them, after an import of another kernel module (gumbel_rao) just its own
        for key, options in _JIT_OPTIONS.items():
            if key in _decorated:
                continue
            module = sys.modules[key[0]].__dict__
            module["tl"] = tl  # kernels in other modules resolve tl in their own globals
            module[key[1]] = triton.jit(getattr(module[key[1]], "fn", module[key[1]]), **options)
            _decorated.add(key)
        _kernels_interpreted = interpret
    return True


def triton_interpreting() -> bool:
    """True when the kernels run in Triton's interpreter (TRITON_INTERPRET=1), on CPU."""
    return _load_triton() and _kernels_interpreted


def _resolve_backend(backend, logits: torch.Tensor) -> str:
    name = get_backend() if backend is None else _check_backend(backend)
    if name == "auto":
        use_triton = logits.is_cuda and logits.dtype in TRITON_DTYPES and _load_triton()
        return "triton" if use_triton else "reference"
    if name == "triton":
        if not _load_triton():
            raise GumbenchError("backend 'triton' needs the triton package: pip install 'gumbench[kernel]'")
        if logits.dtype not in TRITON_DTYPES:
            allowed = ", ".join(str(d).removeprefix("torch.") for d in TRITON_DTYPES)
            raise GumbenchError(f"backend 'triton' takes logits of dtype {allowed}; got {logits.dtype}")
        if not logits.is_cuda and not (triton_interpreting() and logits.device.type == "cpu"):
            raise GumbenchError(
                f"backend 'triton' needs a CUDA tensor, got one on {logits.device}; on CPU it runs only "
                "under Triton's interpreter (set TRITON_INTERPRET=1)"
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
    """A 63-bit kernel seed drawn from ``generator``, else from the global CPU RNG (seeded
    by torch.manual_seed; no GPU sync). A CUDA generator costs one sync."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, device=device, dtype=torch.int64))


def _reference_generator(seed, generator, device) -> torch.Generator | None:
    if generator is not None or seed is None:
        return generator
    return torch.Generator(device=device).manual_seed(seed & ((1 << 64) - 1))


def _check_input(logits) -> None:
    """Type and shape, without a pass over the values (those are checked where they are read)."""
    ok = isinstance(logits, torch.Tensor) and logits.is_floating_point() and logits.dim() >= 1
    if not ok or logits.shape[-1] < 1:
        check_logits(logits)  # raises the reference's message


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


def gumbel_uniforms(shape, seed: int, *, stream: int = 0, device="cpu") -> torch.Tensor:
    """The uniforms the Triton kernels draw for ``seed`` over a (..., K) shape.

    Feeding them to ``gumbel_softmax_reference(uniforms=...)`` reproduces the kernel's
    forward; tests use it to compare the two paths draw for draw. ``stream`` 0 is the
    Gumbel-softmax noise (and the Gumbel-Rao sample), 1..M the Gumbel-Rao kernel's
    conditional draws.
    """
    seed = _check_seed(seed)
    stream = _check_seed(stream)
    if not 0 <= stream < 2**31:
        raise GumbenchError(f"stream must be in [0, 2**31), got {stream}")
    if not _load_triton():
        raise GumbenchError("gumbel_uniforms needs the triton package: pip install 'gumbench[kernel]'")
    if torch.device(device).type != "cuda" and not triton_interpreting():
        raise GumbenchError("gumbel_uniforms runs on a CUDA device, or on CPU under TRITON_INTERPRET=1")
    shape = tuple(shape)
    u = torch.empty(shape, dtype=torch.float32, device=device)
    n_cols = shape[-1] if shape else 1
    n_rows = u.numel() // max(n_cols, 1)
    if u.numel() == 0:
        return u
    block = max(4, min(1024, _next_power_of_2(n_cols)))
    rows = max(1, min(1024 // block, _next_power_of_2(n_rows)))
    seed_lo, seed_hi = _split_seed(seed)
    _gumbel_uniforms_kernel[(-(-n_rows // rows),)](u, n_rows, n_cols, seed_lo, seed_hi, stream, BLOCK_K=block, ROWS=rows)
    return u
