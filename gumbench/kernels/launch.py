"""How a (rows, K) problem is cut into Triton programs: pure Python, shared by the dispatcher
(which checks limits without importing Triton) and the fused kernels' launchers.

Single-block path: one program holds whole rows in registers as two power-of-two tiles,
columns [0, block_a) and [block_a, block_a + block_b): K = 320 is 256 + 64 with no padding
lane, where one next_power_of_2 tile would spend 37.5% of its noise work on padding. Short
rows share a program. Rows wider than ``MAX_SINGLE_BLOCK`` take the looped path, which
streams each row in ``LOOP_BLOCK`` chunks (the Gumbel-Rao backward keeps two scalars per
draw there, so it takes at most ``MAX_LOOPED_SAMPLES`` draws). The limits are module globals
read at call time (tests shrink them to reach the looped path with small inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_SINGLE_BLOCK = 16384  # widest row kept whole in registers (16 warps, 32 values a thread, no spills)
LOOP_BLOCK = 4096  # chunk of the looped path
ROWS_TILE = 4096  # elements per program when several short rows share one
PHILOX_WIDTH = 4  # one Philox call feeds four neighbouring columns: tiles are at least this wide
MAX_LOOPED_SAMPLES = 1024  # Gumbel-Rao draws per row on the looped path (a register vector per row)


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

    def options(self) -> dict:
        """Launch options. fp fusion (a * b + c -> fma) is stated, not inherited: Triton 3.9
        defaults it on, 3.10 off; the instruction counts in results/kernel assume it on."""
        return {"num_warps": self.num_warps, "enable_fp_fusion": True}


def next_power_of_2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def prev_power_of_2(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def launch_config(n_rows: int, n_cols: int) -> LaunchConfig:
    """Tile widths, rows per program and warps, picked from K like Liger (no autotuning).

    K is covered by two power-of-two tiles, the largest power of two below K plus the rest
    rounded up (each at least ``PHILOX_WIDTH`` wide). Short rows share a program (about
    ``ROWS_TILE`` elements each); threads hold about 16 values, enough to amortise each
    program's reductions (SASS per element drops from 66 at 8 values to 50 at 16 for K = 320;
    see the kernel audit).
    """
    block_a = max(PHILOX_WIDTH, prev_power_of_2(n_cols - 1))
    block_b = max(PHILOX_WIDTH, next_power_of_2(n_cols - block_a))
    width = block_a + block_b
    if width <= MAX_SINGLE_BLOCK:
        rows = max(1, min(prev_power_of_2(ROWS_TILE // width), next_power_of_2(n_rows)))
        num_warps = min(16, prev_power_of_2(rows * width // 512))
        return LaunchConfig(block_a, block_b, rows, num_warps, looped=False)
    return LaunchConfig(LOOP_BLOCK, 0, 1, min(16, prev_power_of_2(LOOP_BLOCK // 512)), looped=True)


def as_rows(t: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
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


def split_seed(seed: int) -> tuple[int, int]:
    """A 64-bit seed as two int32 kernel arguments (signed, so Triton types both i32)."""
    seed &= (1 << 64) - 1
    lo, hi = seed & 0xFFFFFFFF, seed >> 32
    return lo - (1 << 32) * (lo >> 31), hi - (1 << 32) * (hi >> 31)
