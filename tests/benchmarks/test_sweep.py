"""Sweeps: hashed seeds, resumable after SIGKILL, Dask equals local, clear errors, nothing half-written."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from gumbench.benchmarks.sweep.store import load_results, read_metadata, write_parquet
from gumbench.benchmarks.sweep import apply_overrides, derive_seed, expand_units, load_config, run_sweep
from gumbench.errors import GumbenchError

TIMING = ["step_seconds", "peak_memory_mb"]


def small_config(name="t", samples=400, estimators=("st-gumbel[tau=[0.5,1]]", "reinforce[baseline=loo]")):
    return {"name": name, "repetitions": 2,
            "gradstats": {"tasks": ["bernoulli", "categorical[groups=2,categories=3]"], "estimators": list(estimators), "samples": samples}}


def comparable(frame):
    drop = [c for c in ("git_commit",) if c in frame]
    frame = frame[~frame["metric"].isin(TIMING)].drop(columns=drop)
    return frame.sort_values(["unit_id", "step", "metric"]).reset_index(drop=True)


def test_seeds_are_hashes_not_positions():
    a, _ = expand_units(small_config())
    b, _ = expand_units(small_config(estimators=("reinforce[baseline=loo]", "st-gumbel[tau=[1,0.5]]")))
    assert {u.unit_id: u.seed for u in a} == {u.unit_id: u.seed for u in b}
    assert len({u.seed for u in a}) == len(a)
    assert derive_seed(0, "gradstats", "bernoulli", "st-gumbel[tau=1]", 0) != derive_seed(1, "gradstats", "bernoulli", "st-gumbel[tau=1]", 0)


def test_rows_do_not_depend_on_order(tmp_path):
    first = load_results([run_sweep(small_config(), out=tmp_path / "a", progress=False)])
    second = load_results([run_sweep(small_config(estimators=("reinforce[baseline=loo]", "st-gumbel[tau=[1,0.5]]")),
                                     out=tmp_path / "b", progress=False)])
    pd.testing.assert_frame_equal(comparable(first).drop(columns="config_hash"), comparable(second).drop(columns="config_hash"))


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


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text('name = "slow"\nrepetitions = 6\n[gradstats]\ntasks = ["categorical"]\n'
                      'estimators = ["reinforce[baseline=loo]"]\nsamples = 15000\n')
    code = "import sys; from gumbench.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-c", code, "sweep", str(config), "--out", str(out), "--no-report"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*/units/*.parquet"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("*/units/*.parquet")))
    assert 2 <= done_before < 6, "the kill should land mid-run"
    assert not list(out.glob("*/results.parquet"))
    path = run_sweep(load_config(config), out=out, progress=False).results
    resumed = pd.read_parquet(path)
    assert resumed["unit_id"].nunique() == 6
    assert len(resumed) == 6 * resumed.groupby("unit_id").size().iloc[0]
    assert not resumed.duplicated(["unit_id", "metric"]).any()
    fresh = load_results([run_sweep(load_config(config), out=tmp_path / "fresh", progress=False)])
    pd.testing.assert_frame_equal(comparable(resumed), comparable(fresh))


def test_dask_two_worker_cluster_equals_local(tmp_path):
    config = small_config()
    config["training"] = {"tasks": ["gmm-vq"], "estimators": ["st-gumbel"], "steps": 5}
    local = load_results([run_sweep(config, out=tmp_path / "local", progress=False)])
    dask = load_results([run_sweep(config, out=tmp_path / "dask", backend="dask", jobs=2, progress=False)])
    pd.testing.assert_frame_equal(comparable(local), comparable(dask), check_exact=True)


@pytest.mark.parametrize(
    "text, suffix, fragment",
    [
        ("bogus = 1", ".toml", "unknown config key 'bogus'; valid keys: name"),
        ("[gradstats]\nsampels = 3", ".toml", "unknown key 'sampels' in [gradstats]; valid keys: tasks, estimators, samples"),
        ("gradstats: {tasks: [bernoulli], estimators: [nope], samples: 10}", ".yaml", "unknown estimator 'nope'"),
        ("gradstats: {tasks: [bernoulli], estimators: [vq-commitment]}", ".yml", "grid is empty"),
        ("gradstats: [unclosed", ".yaml", "not valid YAML"),
        ("name = ", ".toml", "not valid TOML"),
        ("[gradstats]\nsamples = 0", ".toml", "must be >= 1"),
        ("name: x", ".json", "use a .toml, .yaml or .yml file"),
        ('[training]\ntasks = ["tones"]\nestimators = ["st-gumbel[tau=[]]"]', ".toml", "empty list"),
    ],
)
def test_bad_configs_fail_before_writing(tmp_path, text, suffix, fragment):
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    with pytest.raises(GumbenchError, match=fragment.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        run_sweep(load_config(path), out=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_cli_flags_override_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[gradstats]\ntasks = ["bernoulli"]\nestimators = ["st-gumbel"]\nsamples = 100\n')
    config = apply_overrides(load_config(path), samples=50, repetitions=3, estimators=["reinforce"])
    assert config["gradstats"] == {"tasks": ["bernoulli"], "estimators": ["reinforce"], "samples": 50}
    assert config["repetitions"] == 3


def test_default_sweep_grid_is_valid():
    units, _ = expand_units(load_config(None))
    kinds = {u.kind for u in units}
    assert kinds == {"gradstats", "training"}
    assert len({u.unit_id for u in units}) == len(units)
