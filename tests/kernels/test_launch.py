"""Launch configuration (pure Python): tiles cover K without waste, rows merge without copies, seeds split
losslessly."""

import pytest
import torch

from gumbench.kernels import launch


@pytest.mark.parametrize("n_cols", [1, 2, 5, 257, 320, 1000, 8192, 16384])
def test_two_tiles_cover_every_column(n_cols):
    cfg = launch.launch_config(64, n_cols)
    assert not cfg.looped
    for block in (cfg.block_a, cfg.block_b):
        assert block >= launch.PHILOX_WIDTH and block & (block - 1) == 0, "power-of-two tiles of whole Philox groups"
    assert cfg.block_a + cfg.block_b >= n_cols
    assert cfg.block_a < n_cols or n_cols <= launch.PHILOX_WIDTH, "the first tile lies inside the row"


def test_the_wav2vec_row_has_no_padding_and_short_rows_share_a_program():
    cfg = launch.launch_config(1 << 20, 320)
    assert (cfg.block_a, cfg.block_b) == (256, 64)
    assert cfg.rows_per_program * (cfg.block_a + cfg.block_b) <= launch.ROWS_TILE
    assert launch.launch_config(20, 320).grid(20) == (3,), "8 rows per program: 20 rows in 3 programs"
    assert launch.launch_config(3, 320).rows_per_program == 4, (
        "no more rows per program than the input has (rounded up)"
    )
    assert cfg.options() == {"num_warps": cfg.num_warps, "enable_fp_fusion": True}


def test_wide_rows_take_the_looped_path_read_at_call_time(monkeypatch):
    cfg = launch.launch_config(4, launch.MAX_SINGLE_BLOCK + 1)
    assert cfg.looped and cfg.block_a == launch.LOOP_BLOCK and cfg.rows_per_program == 1
    monkeypatch.setattr(launch, "MAX_SINGLE_BLOCK", 32)
    assert launch.launch_config(4, 40).looped


def test_rows_view_merges_leading_dims_without_a_copy():
    x = torch.randn(3, 4, 10)
    rows, n_rows, row_stride, col_stride = launch.as_rows(x)
    assert (n_rows, row_stride, col_stride) == (12, 10, 1) and rows.data_ptr() == x.data_ptr()
    transposed = torch.randn(10, 6).T  # a strided last dim, no copy either
    rows, n_rows, row_stride, col_stride = launch.as_rows(transposed)
    assert (n_rows, row_stride, col_stride) == (6, 1, 6) and rows.data_ptr() == transposed.data_ptr()
    vector = torch.randn(7)
    assert launch.as_rows(vector)[1:] == (1, 0, 1)


@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1])
def test_seeds_split_into_two_signed_int32_and_back(seed):
    lo, hi = launch.split_seed(seed)
    assert all(-(2**31) <= part < 2**31 for part in (lo, hi))
    assert (lo % 2**32) + ((hi % 2**32) << 32) == seed
