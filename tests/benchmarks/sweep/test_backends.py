"""Backends: execute() runs any module-level callable over items; a sweep on a Dask local cluster, on a Dask
scheduler with separately started workers and on a one-node SLURM cluster gives exactly a local run's rows."""

import os

import pandas as pd
import pytest

from gumbench.benchmarks.sweep import load_results, run_sweep
from gumbench.benchmarks.sweep.backends import execute
from gumbench.errors import GumbenchError
from tests.benchmarks.sweep.clusters import dask_cluster, slurm_cluster
from tests.benchmarks.sweep.sweeps import comparable, small_config
from tests.conftest import require_package


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("dask")) as address:
        yield address


@pytest.fixture(scope="module")
def slurm_partition(tmp_path_factory):
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as partition:
        yield partition


def assert_rows_equal_local(config, out, **backend):
    local = load_results([run_sweep(config, out=out / "local", progress=False)])
    run = run_sweep(config, out=out / "remote", progress=False, **backend)
    pd.testing.assert_frame_equal(comparable(local), comparable(load_results([run])), check_exact=True)
    return run


def test_dask_two_worker_local_cluster_equals_local(tmp_path):
    require_package("dask.distributed")
    config = small_config()
    config["training"] = {"tasks": ["gmm-vq"], "estimators": ["st-gumbel"], "steps": 5}
    assert_rows_equal_local(config, tmp_path, backend="dask", jobs=2)


def test_dask_scheduler_with_two_separate_workers_equals_local(tmp_path, dask_scheduler):
    assert_rows_equal_local(small_config(), tmp_path, backend="dask", scheduler=dask_scheduler, jobs=2)


def test_slurm_job_array_on_a_one_node_cluster_equals_local(tmp_path, slurm_partition):
    config = {**small_config(estimators=["st-gumbel[tau=[0.5,1]]"]), "repetitions": 1}  # 4 units, 2 at a time
    run = assert_rows_equal_local(config, tmp_path, backend="slurm", slurm_partition=slurm_partition, slurm_time=5)
    # each unit ran as a task of a SLURM job array (submitit's log per task names the array job)
    logs = sorted((run.folder / "slurm").glob("*_log.out"))
    assert len(logs) == len(run.units) and all("_" in log.name.split("_log")[0] for log in logs)


def test_slurm_needs_sbatch_and_a_partition(tmp_path, monkeypatch):
    with pytest.raises(GumbenchError, match="^--backend slurm needs --partition NAME$"):
        run_sweep(small_config(), out=tmp_path, backend="slurm", progress=False)
    require_package("submitit")  # imported before sbatch is looked for
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch: refused, not run locally by submitit's fallback
    with pytest.raises(GumbenchError, match="^--backend slurm needs SLURM's sbatch and srun on PATH"):
        run_sweep(small_config(), out=tmp_path, backend="slurm", slurm_partition="any", progress=False)


def square_with_threads(item, threads=None):
    """A module-level callable unrelated to sweeps: workers import it by module path."""
    return {"square": item * item, "threads": threads, "pid": os.getpid()}


@pytest.mark.parametrize("jobs, threads", [(1, None), (2, None), (1, 3), (2, 2)])
def test_execute_runs_any_callable_and_yields_every_item_once(jobs, threads):
    items = [3, -1, 0, 7, 12, 5]
    given = {} if threads is None else {"threads": threads}
    pairs = list(execute(square_with_threads, iter(items), backend="local", jobs=jobs, **given))
    assert sorted(item for item, _ in pairs) == sorted(items), "every item exactly once"
    assert all(result["square"] == item * item for item, result in pairs), "each result comes back with its own item"
    pids = {result["pid"] for _, result in pairs}
    assert pids == {os.getpid()} if jobs == 1 else os.getpid() not in pids, "in this process only for one job"
    # called as run(item, threads=n) in this process and in workers alike: 1 unless given
    assert {result["threads"] for _, result in pairs} == {threads or 1}
    assert list(execute(square_with_threads, [], jobs=jobs)) == []


def test_execute_rejects_an_unknown_backend_and_no_jobs():
    # the checks run when execute is called, before any item runs
    with pytest.raises(GumbenchError, match="unknown backend 'cluster'; allowed: local, dask, slurm"):
        list(execute(square_with_threads, [1], backend="cluster"))
    with pytest.raises(GumbenchError, match="jobs must be an integer from 1 to 1024, got 0"):
        list(execute(square_with_threads, [1], jobs=0))
    with pytest.raises(GumbenchError, match="jobs must be an integer from 1 to 1024"):
        next(execute(square_with_threads, [1], jobs=-2))


def test_slurm_refusal_is_one_line(tmp_path, slurm_partition):
    # SLURM's own line, from the test submission (sbatch --test-only) made before the run folder exists
    with pytest.raises(
        GumbenchError,
        match="^(sbatch: error: Batch job submission failed|allocation failure): Invalid partition name specified$",
    ):
        run_sweep(small_config(), out=tmp_path, backend="slurm", slurm_partition="no-such-partition", progress=False)
    assert not any(tmp_path.iterdir()), "refused before the run folder is made"
