"""The results store: run metadata in every file and as columns, results never overwritten (atomic
writes themselves are tested in tests/test_files.py)."""

import pandas as pd
import pytest

from gumbench.benchmarks.sweep import run_sweep
from gumbench.benchmarks.sweep.store import read_metadata, write_parquet
from gumbench.errors import GumbenchError
from tests.benchmarks.sweep.sweeps import small_config


def test_metadata_in_file_and_columns(tmp_path):
    path = run_sweep(small_config(), out=tmp_path, progress=False).results
    meta = read_metadata(path)
    assert meta["config"]["gradstats"]["samples"] == 400
    for key in ("gumbench_version", "git_commit", "torch_version", "triton_version", "device", "base_seed"):
        assert key in meta
    frame = pd.read_parquet(path)
    assert {"gumbench_version", "torch_version", "device", "base_seed", "config_hash"} <= set(frame.columns)
    with pytest.raises(GumbenchError, match="never overwritten"):
        write_parquet(frame, path, meta)
    # a finished run is not rewritten by running it again
    mtime = path.stat().st_mtime_ns
    assert run_sweep(small_config(), out=tmp_path, progress=False).results == path
    assert path.stat().st_mtime_ns == mtime
