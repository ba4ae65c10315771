"""The results store: run metadata in every file and as columns, results never overwritten; atomic writes that leave no temporary file."""

import json
import os

import pandas as pd
import pytest

from gumbench.benchmarks.sweep import run_sweep
from gumbench.benchmarks.sweep.store import (
    read_metadata,
    write_atomic,
    write_bytes,
    write_csv,
    write_json,
    write_parquet,
    write_text,
)
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


def test_write_atomic_keeps_the_previous_file_and_no_temporary_when_the_writer_fails(tmp_path):
    path = write_text(tmp_path / "out" / "result.txt", "previous\n")  # creates the folder
    assert path == tmp_path / "out" / "result.txt" and path.read_text() == "previous\n"

    def failing(tmp):
        tmp.write_text("half of the new cont")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        write_atomic(path, failing)
    assert path.read_text() == "previous\n"
    assert os.listdir(tmp_path / "out") == ["result.txt"], "no temporary file is left"
    # a writer that raises before writing anything leaves nothing either, and no target
    with pytest.raises(ZeroDivisionError):
        write_atomic(tmp_path / "out" / "new.txt", lambda tmp: 1 / 0)
    assert os.listdir(tmp_path / "out") == ["result.txt"]


def test_text_bytes_json_and_csv_round_trip(tmp_path):
    assert write_text(tmp_path / "a.txt", "x = 1\nünïcode\n").read_text() == "x = 1\nünïcode\n"
    assert write_bytes(tmp_path / "b.bin", bytes(range(256))).read_bytes() == bytes(range(256))
    data = {"estimator": "st-gumbel[tau=0.5]", "values": [1.5, None, 3], "nested": {"ok": True}}
    path = write_json(tmp_path / "c.json", data)
    assert json.loads(path.read_text()) == data and path.read_text().endswith("\n")
    assert json.loads(write_json(tmp_path / "d.json", data, indent=None).read_text()) == data
    frame = pd.DataFrame({"step": [0, 1, 2], "loss": [0.5, 0.25, 0.125], "label": ["a", "b", "c"]})
    pd.testing.assert_frame_equal(pd.read_csv(write_csv(frame, tmp_path / "e.csv")), frame)
    # rewriting replaces the content
    assert write_text(tmp_path / "a.txt", "second").read_text() == "second"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin", "c.json", "d.json", "e.csv"]


def test_a_path_under_a_regular_file_raises_and_leaves_nothing(tmp_path):
    blocker = write_text(tmp_path / "file", "I am a file")
    for target in (blocker / "x.txt", blocker / "deeper" / "x.csv"):
        with pytest.raises(GumbenchError, match=f"cannot write {target}: {blocker} is a file, not a folder"):
            write_text(target, "never written")
    with pytest.raises(GumbenchError, match="cannot write .*y.csv"):
        write_csv(pd.DataFrame({"a": [1]}), blocker / "y.csv")
    assert os.listdir(tmp_path) == ["file"] and blocker.read_text() == "I am a file"


def test_a_folder_given_as_a_file_is_refused_by_name(tmp_path):
    (tmp_path / "out.csv").mkdir()
    with pytest.raises(GumbenchError, match=f"cannot write {tmp_path / 'out.csv'}: it is a folder; give a file path"):
        write_text(tmp_path / "out.csv", "x")
    assert os.listdir(tmp_path) == ["out.csv"] and os.listdir(tmp_path / "out.csv") == []

