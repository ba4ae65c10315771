"""A run's rows are its own: the folder is named by config and code, resumed unit files are checked
(a truncated, empty or foreign one is set aside and its unit runs again), the results file must
hold exactly the run's units (else it is set aside and rebuilt from them), and one sweep at a time
holds a run folder."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from gumbench.benchmarks.sweep import load_results, run_sweep
from gumbench.benchmarks.sweep.config import config_hash
from gumbench.benchmarks.sweep.store import write_parquet
from gumbench.errors import GumbenchError
from gumbench.provenance import code_hash
from tests.benchmarks.sweep.sweeps import comparable, small_config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = run_sweep(small_config(), out=tmp_path_factory.mktemp("ref"), progress=False)
    return run, comparable(run.frame())


def test_run_folder_is_named_by_config_and_code(tmp_path, reference):
    run, _ = reference
    assert run.folder.name == f"t-{config_hash(small_config())}-{code_hash()}"
    assert set(run.frame()["code_hash"]) == {code_hash()}


def test_code_hash_changes_with_any_source_file(tmp_path, monkeypatch):
    import gumbench.provenance as provenance

    package = tmp_path / "gumbench"
    shutil.copytree(
        provenance.Path(provenance.__file__).resolve().parent,
        package,
        ignore=shutil.ignore_patterns("__pycache__", "data"),
    )
    monkeypatch.setattr(provenance, "__file__", str(package / "provenance.py"))
    before = provenance.code_hash()
    assert before == code_hash(), "the same sources give the same hash"
    (package / "estimators" / "gumbel.py").write_text(
        (package / "estimators" / "gumbel.py").read_text() + "\n# changed\n"
    )
    assert provenance.code_hash() != before


def copy_run(run, tmp_path):
    folder = tmp_path / run.folder.name
    shutil.copytree(run.folder, folder)
    (folder / "results.parquet").unlink()
    return folder


@pytest.mark.parametrize(
    "damage", ["truncated", "empty", "garbage", "no rows", "another unit's rows", "another code's"]
)
def test_a_damaged_unit_file_is_set_aside_and_its_unit_recomputed(tmp_path, reference, damage):
    run, expected = reference
    folder = copy_run(run, tmp_path)
    victim = sorted((folder / "units").glob("*.parquet"))[0]
    other = sorted((folder / "units").glob("*.parquet"))[1]
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "empty":
        victim.write_bytes(b"")
    elif damage == "garbage":
        victim.write_bytes(b"PAR1 not really parquet \xff\xfe" * 20)
    else:
        from gumbench.benchmarks.sweep.store import read_metadata

        meta = read_metadata(victim)
        rows = pd.read_parquet(other if damage == "another unit's rows" else victim).drop(
            columns=[
                "code_hash",
                "git_commit",
                "gumbench_version",
                "torch_version",
                "triton_version",
                "device",
                "base_seed",
                "config_hash",
            ]
        )
        if damage == "no rows":
            rows = rows.iloc[:0]
        if damage == "another code's":
            meta = {**meta, "code_hash": "0123456789"}
        victim.unlink()
        write_parquet(rows, victim, meta)
    again = run_sweep(small_config(), out=tmp_path, progress=False)
    assert again.folder == folder
    aside = list((folder / "set-aside").iterdir())
    assert [p.name.split(".parquet")[0] for p in aside] == [victim.stem], "the damaged file is kept, apart"
    assert victim.is_file(), "and its unit ran again"
    pd.testing.assert_frame_equal(comparable(again.frame()), expected)


@pytest.mark.parametrize("damage", ["a unit short", "garbage", "truncated"])
def test_a_damaged_results_file_is_set_aside_and_rebuilt_from_the_units(tmp_path, reference, capsys, damage):
    run, expected = reference
    folder = copy_run(run, tmp_path)
    frame = run.frame()
    results, original = folder / "results.parquet", run.results.read_bytes()
    if damage == "a unit short":
        from gumbench.benchmarks.sweep.store import METADATA_COLUMNS, read_metadata

        kept = frame[frame["unit_id"] != frame["unit_id"].iloc[0]].drop(columns=list(METADATA_COLUMNS))
        write_parquet(kept, results, read_metadata(run.results))
    else:
        results.write_bytes(b"PAR1 not parquet" if damage == "garbage" else original[: len(original) // 2])
    damaged = results.read_bytes()
    capsys.readouterr()
    again = run_sweep(small_config(), out=tmp_path, progress=True)
    notes = [line for line in capsys.readouterr().err.splitlines() if "results.parquet" in line]
    assert len(notes) == 1 and notes[0].startswith("set aside results.parquet (") and "rebuilt from" in notes[0], notes
    aside = list((folder / "set-aside").iterdir())
    assert len(aside) == 1 and aside[0].read_bytes() == damaged, "the damaged file is kept, apart, as it was"
    pd.testing.assert_frame_equal(comparable(again.frame()), expected)


def test_a_second_sweep_on_a_held_folder_is_refused_naming_the_holder(tmp_path):
    code = ("import sys, time; from pathlib import Path; from gumbench.benchmarks.sweep.store import RunStore\n"
            "store = RunStore(Path(sys.argv[1]), 't', {'config_hash': sys.argv[2], 'code_hash': sys.argv[3]})\n"
            "with store:\n    print('holding', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), config_hash(small_config()), code_hash()],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(
            GumbenchError, match=rf"is in use by process {holder.pid} on .*started .*wait for it to finish"
        ):
            run_sweep(small_config(), out=tmp_path, progress=False)
        assert not (tmp_path / f"t-{config_hash(small_config())}-{code_hash()}" / "units").exists(), (
            "refused before any work"
        )
    finally:
        holder.kill()
        holder.wait()
    run = run_sweep(small_config(), out=tmp_path, progress=False)  # free again once the holder is gone
    assert run.results.is_file()


def test_rerun_of_a_finished_run_verifies_and_returns_it_without_rewriting(tmp_path):
    first = run_sweep(small_config(), out=tmp_path, progress=False)
    mtime = first.results.stat().st_mtime_ns
    second = run_sweep(small_config(), out=tmp_path, progress=False)
    assert second.results == first.results and first.results.stat().st_mtime_ns == mtime
    timings = list((first.folder / "timings").glob("*.json"))
    assert len(timings) == 1, "an invocation that ran nothing records no timing"
    record = json.loads(timings[0].read_text())
    assert record["units_run"] == record["units"] == len(first.units) and record["wall_seconds"] > 0
    assert record["backend"] == "local" and record["jobs"] == 1 and len(record["load_average_before"]) == 3
    pd.testing.assert_frame_equal(load_results([second]), load_results([first]))
