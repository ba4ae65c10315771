"""Triton building blocks shared by the fused ops: named constants, Philox noise, tile helpers.

Noise. Element (row, col) gets bits ``r[col % 4]`` of
``philox4x32_10(key=seed, counter=(col // 4, row_lo, row_hi, stream))``; the same generator
``tl.randint`` uses, called at its core so all four outputs serve four neighbouring
columns. The draw depends only on (seed, row, col, stream), so single-block, multi-row and
looped paths, forward and backward, all see the same noise. ``stream`` is 0 for the
Gumbel-softmax noise and 1..M for the Gumbel-Rao kernel's conditional draws.

Every function here is a ``@triton.jit`` helper, inlined into the kernels that call it.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)  # log2(e): exp(x) = exp2(x * LOG2E)
LN2 = tl.constexpr(0.6931471805599453)  # ln(2): ln(x) = LN2 * log2(x)
INT32_MAX = tl.constexpr(2147483647)  # "no column" in a min-reduction over column indices
UNIFORM_SHIFT = tl.constexpr(9)  # 32 - 23: keep the top 23 bits of a Philox output
UNIFORM_SCALE = tl.constexpr(1.1920928955078125e-07)  # 2**-23
UNIFORM_OFFSET = tl.constexpr(5.960464477539063e-08)  # 2**-24: half a step, u = (k + 0.5) * 2**-23
# -ln(1 - v) = 2 atanh(s) = s * (C1 + C3 s**2 + C5 s**4 + C7 s**6), the odd series to s**7
ATANH_C1 = tl.constexpr(2.0)
ATANH_C3 = tl.constexpr(0.6666666666666666)  # 2/3
ATANH_C5 = tl.constexpr(0.4)  # 2/5
ATANH_C7 = tl.constexpr(0.2857142857142857)  # 2/7
# The Philox group width (launch.PHILOX_WIDTH) stays a literal 4 in the code below: as a
# constexpr, ``0 // WIDTH`` would give a constexpr that the interpreter wraps around tensors.


# --------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------


@triton.jit
def uniform_from_bits(bits):
    # (k + 0.5) * 2**-23 as one fma: k * 2**-23 and the sum are exact, so one rounding is none.
    return tl.fma((bits >> UNIFORM_SHIFT).to(tl.float32), UNIFORM_SCALE, UNIFORM_OFFSET)


@triton.jit
def philox(seed_lo, seed_hi, c0, rows, stream):
    """Philox-4x32-10 keyed by the seed at counters (c0, row low 32 bits, row high 32 bits,
    stream), ``rows`` (int64) and ``stream`` broadcast to c0's shape: four 32-bit outputs."""
    zero = tl.zeros_like(c0)
    c1 = zero + rows.to(tl.uint32)
    c2 = zero + (rows >> 32).to(tl.uint32)
    c3 = (zero + stream).to(tl.uint32)
    return tl.philox_impl(c0, c1, c2, c3, seed_lo.to(tl.uint32, bitcast=True), seed_hi.to(tl.uint32, bitcast=True))


@triton.jit
def uniform_tile(seed_lo, seed_hi, rows, group0, stream, ROWS: tl.constexpr, WIDTH: tl.constexpr):
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
    r0, r1, r2, r3 = philox(seed_lo, seed_hi, c0, rows[:, None], stream)
    # (ROWS, GROUPS, 2, 2) with [..., a, b] = r[2a + b]: column 4*g + j gets r_j.
    bits = tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), (ROWS, WIDTH))
    return uniform_from_bits(bits)


@triton.jit
def uniform_at(seed_lo, seed_hi, rows, cols, stream):
    """The uniform ``uniform_tile`` draws at (rows[i], cols[i]) for each i: one column per row."""
    r0, r1, r2, r3 = philox(seed_lo, seed_hi, (cols // 4).to(tl.uint32), rows, stream)
    j = cols % 4
    bits = tl.where(j == 0, r0, tl.where(j == 1, r1, tl.where(j == 2, r2, r3)))
    return uniform_from_bits(bits)


@triton.jit
def fast_log2(x, FAST_MATH: tl.constexpr):
    """log2(x): MUFU.LG2 with FAST_MATH, else libdevice's (the interpreter has no inline asm)."""
    if FAST_MATH:
        # MUFU.LG2: absolute error <= 2**-22 on [0.5, 2], 2 ulp elsewhere (CUDA's __log2f).
        # tl.log2 is libdevice's ~20-instruction log2f.
        return tl.inline_asm_elementwise(
            "lg2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.log2(x)


@triton.jit
def fast_reciprocal(x, FAST_MATH: tl.constexpr):
    """1 / x: MUFU.RCP with FAST_MATH, else an exact division."""
    if FAST_MATH:
        # MUFU.RCP, 1 ulp; '/' would be div.full.f32 with range checks for arguments we never pass
        return tl.inline_asm_elementwise(
            "rcp.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return 1.0 / x


@triton.jit
def exponential_from_uniform(u, FAST_MATH: tl.constexpr):
    """E = -ln(u), an Exponential(1) draw, for u in [2**-24, 1 - 2**-24].

    Safe noise, step 2: E must stay > 0 as u -> 1, where -ln(u) is as small as 6e-8 and
    an approximate log (absolute error 2**-22 near 1) could return 0 or a negative. So
    u < 0.75 takes -ln2 * log2(u) (|log2(u)| >= 0.41: relative error <= 6e-7), and
    u >= 0.75 takes -ln(1 - v) = 2 atanh(v / (2 - v)) with v = 1 - u, exact there
    (Sterbenz); s = v / (2 - v) <= 1/7, so the odd series to s**7 is within 2e-8.
    E then lies in [5.96e-8, 16.64] and is never 0.
    """
    v = 1.0 - u
    s = v * fast_reciprocal(1.0 + u, FAST_MATH)  # 2 - v = 1 + u, in [1.75, 2)
    s2 = s * s
    series = s * tl.fma(s2, tl.fma(s2, tl.fma(s2, ATANH_C7, ATANH_C5), ATANH_C3), ATANH_C1)
    return tl.where(u < 0.75, fast_log2(u, FAST_MATH) * -LN2, series)


@triton.jit
def add_gumbel(x, seed_lo, seed_hi, rows, group0, ROWS: tl.constexpr, WIDTH: tl.constexpr, FAST_MATH: tl.constexpr):
    """x + g with Gumbel(0, 1) noise g = -ln(E), E = -ln(u): finite, in [-2.82, 16.64].

    Safe noise, step 3: with E in [5.96e-8, 16.64], g is bounded; added to fp32 logits of
    +-1e4 and scaled by 1/tau <= 100 it stays far inside fp32 (|z| <= 1e6). A -inf logit
    stays -inf, gets exp2(-inf) = 0 and never wins the argmax of a row with a finite entry.
    """
    e = exponential_from_uniform(uniform_tile(seed_lo, seed_hi, rows, group0, 0, ROWS, WIDTH), FAST_MATH)
    return tl.fma(fast_log2(e, FAST_MATH), -LN2, x)


# --------------------------------------------------------------------------------------
# Tiles and rows
# --------------------------------------------------------------------------------------


@triton.jit
def load_f32(ptr, rows, cols, stride_row, stride_col, mask, other):
    x = tl.load(ptr + rows[:, None] * stride_row + cols[None, :] * stride_col, mask=mask, other=other)
    return x.to(tl.float32)


@triton.jit
def store(ptr, offsets, values, mask):
    tl.store(ptr + offsets, values.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def perturbed_logits(
    x_ptr, rows, row_ok, n_cols, stride_row, stride_col, seed_lo, seed_hi, col0,
    ROWS: tl.constexpr, WIDTH: tl.constexpr, FAST_MATH: tl.constexpr,
):  # fmt: skip
    """z = x + g on columns [col0, col0 + WIDTH) of ``rows`` in fp32; -inf where masked.

    Returns (z, cols, mask). col0 is a multiple of 4, so tiles start on Philox groups.
    """
    cols = col0 + tl.arange(0, WIDTH)
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    x = load_f32(x_ptr, rows, cols, stride_row, stride_col, mask, float("-inf"))
    return add_gumbel(x, seed_lo, seed_hi, rows, col0 // 4, ROWS, WIDTH, FAST_MATH), cols, mask


@triton.jit
def two_tiles(n_rows, n_cols, ROWS: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr):
    """This program's rows and the two column tiles of the single-block layout, with masks."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    cols_a = tl.arange(0, BLOCK_A)
    cols_b = BLOCK_A + tl.arange(0, BLOCK_B)
    mask_a = row_ok[:, None] & (cols_a < n_cols)[None, :]
    mask_b = row_ok[:, None] & (cols_b < n_cols)[None, :]
    return rows, row_ok, cols_a, cols_b, mask_a, mask_b


@triton.jit
def first_max_index(z, zmax, cols):
    """Per row, the first column where z equals the row max (torch.argmax's tie rule)."""
    return tl.min(tl.where(z == zmax[:, None], cols[None, :], INT32_MAX), axis=1)


@triton.jit
def finite_or_zero(m):
    # Shift for exp2((z - m) * scale): a -inf max (nothing seen yet, or a row past the
    # end) becomes 0, so exp2 sees -inf - 0 = -inf and gives 0 instead of exp2(NaN).
    return tl.where(m > float("-inf"), m, 0.0)


@triton.jit
def bad_rows(zmax, total):
    """Rows to reject: NaN, +inf or no finite entry (the reference's check, per row).

    zmax is the row max of z = x + g and total a row sum that is NaN when the row holds
    a NaN: the softmax denominator, or the sum of z where no softmax is computed (tl.max
    ignores NaN on the GPU, so the max alone would miss it).
    """
    return ~((zmax > float("-inf")) & (zmax < float("inf"))) | (total != total)


# How Triton decorated the functions above, fixed at import: interpreted (TRITON_INTERPRET=1,
# on CPU) or compiled. Launchers pass FAST_MATH = not INTERPRETED (the interpreter has no PTX).
INTERPRETED = not isinstance(bad_rows, triton.runtime.JITFunction)
