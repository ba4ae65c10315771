"""Running sweeps: rows independent of grid order, resumable after SIGKILL with nothing lost or duplicated."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd

from gumbench.benchmarks.sweep import load_config, load_results, run_sweep
from tests.benchmarks.sweep.sweeps import comparable, small_config


def test_rows_do_not_depend_on_order(tmp_path):
    first = load_results([run_sweep(small_config(), out=tmp_path / "a", progress=False)])
    second = load_results([run_sweep(small_config(estimators=("reinforce[baseline=loo]", "st-gumbel[tau=[1,0.5]]")),
                                     out=tmp_path / "b", progress=False)])
    pd.testing.assert_frame_equal(
        comparable(first).drop(columns="config_hash"), comparable(second).drop(columns="config_hash")
    )


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
