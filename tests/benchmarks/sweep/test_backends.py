"""Backends: execute() runs any module-level callable over items, locally or on Dask; a Dask sweep equals a local one."""

import os

import pandas as pd
import pytest

from gumbench.benchmarks.sweep import load_results, run_sweep
from gumbench.benchmarks.sweep.backends import execute
from gumbench.errors import GumbenchError
from tests.benchmarks.sweep.sweeps import comparable, small_config


def test_dask_two_worker_cluster_equals_local(tmp_path):
    config = small_config()
    config["training"] = {"tasks": ["gmm-vq"], "estimators": ["st-gumbel"], "steps": 5}
    local = load_results([run_sweep(config, out=tmp_path / "local", progress=False)])
    dask = load_results([run_sweep(config, out=tmp_path / "dask", backend="dask", jobs=2, progress=False)])
    pd.testing.assert_frame_equal(comparable(local), comparable(dask), check_exact=True)


def square_with_threads(item, threads=None):
    """A module-level callable unrelated to sweeps: workers import it by module path."""
    return {"square": item * item, "threads": threads, "pid": os.getpid()}


@pytest.mark.parametrize("jobs", [1, 2])
def test_execute_runs_any_callable_and_yields_every_item_once(jobs):
    items = [3, -1, 0, 7, 12, 5]
    pairs = list(execute(square_with_threads, iter(items), backend="local", jobs=jobs))
    assert sorted(item for item, _ in pairs) == sorted(items), "every item exactly once"
    assert all(result["square"] == item * item for item, result in pairs), "each result comes back with its own item"
    if jobs == 1:  # in this process, called as run(item)
        assert {result["pid"] for _, result in pairs} == {os.getpid()}
        assert all(result["threads"] is None for _, result in pairs)
    else:  # in worker processes, called as run(item, threads=cores // jobs)
        assert os.getpid() not in {result["pid"] for _, result in pairs}
        assert {result["threads"] for _, result in pairs} == {max(1, (os.cpu_count() or 1) // 2)}
    assert list(execute(square_with_threads, [], jobs=jobs)) == []


def test_execute_rejects_an_unknown_backend_and_no_jobs():
    # the checks run when execute is called, before any item runs
    with pytest.raises(GumbenchError, match="unknown backend 'cluster'; allowed: local, dask, slurm"):
        list(execute(square_with_threads, [1], backend="cluster"))
    with pytest.raises(GumbenchError, match="jobs must be >= 1, got 0"):
        list(execute(square_with_threads, [1], jobs=0))
    with pytest.raises(GumbenchError, match="jobs must be >= 1"):
        next(execute(square_with_threads, [1], jobs=-2))
