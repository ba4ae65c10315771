"""Execution backends behind one function: :func:`execute` yields (unit, rows) as units finish.

local  joblib processes (``jobs`` > 1) or this process (``jobs`` = 1)
dask   a Dask cluster at ``scheduler``, or a local cluster of ``jobs`` worker processes
       (optional extra: ``pip install 'gumbench[dask]'``)
slurm  a job array through submitit (optional extra: ``pip install 'gumbench[slurm]'``)

Workers import :func:`gumbench.benchmarks.sweep.run_unit` by module path; each gets
cores / jobs torch threads so parallel units do not oversubscribe the machine.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

from gumbench.errors import GumbenchError

BACKENDS = ("local", "dask", "slurm")


def _threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def execute(units, *, backend: str = "local", jobs: int = 1, scheduler: str | None = None,
            slurm_partition: str | None = None, slurm_time: int = 60, slurm_folder: Path | None = None) -> Iterator:
    from gumbench.benchmarks.sweep import run_unit

    if backend not in BACKENDS:
        raise GumbenchError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if jobs < 1:
        raise GumbenchError(f"jobs must be >= 1, got {jobs}")
    if not units:
        return
    if backend == "local":
        if jobs == 1:
            for unit in units:
                yield unit, run_unit(unit)
            return
        from joblib import Parallel, delayed

        threads = _threads(jobs)
        parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
        yield from parallel(delayed(_tagged)(unit, threads) for unit in units)
    elif backend == "dask":
        try:
            from distributed import Client, LocalCluster, as_completed
        except ImportError:
            raise GumbenchError("--backend dask needs dask.distributed: pip install 'gumbench[dask]'") from None
        cluster = None if scheduler else LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(scheduler or cluster)
        try:
            futures = client.map(_tagged, units, threads=_threads(jobs), pure=False)
            for future in as_completed(futures):
                yield future.result()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        try:
            import submitit
        except ImportError:
            raise GumbenchError("--backend slurm needs submitit: pip install 'gumbench[slurm]'") from None
        if not slurm_partition:
            raise GumbenchError("--backend slurm needs --partition NAME")
        executor = submitit.AutoExecutor(folder=str(slurm_folder or "slurm-logs"))
        executor.update_parameters(slurm_partition=slurm_partition, timeout_min=slurm_time, cpus_per_task=1)
        pending = list(executor.map_array(_tagged, units, [1] * len(units)))
        while pending:
            done = [job for job in pending if job.done()]
            for job in done:
                pending.remove(job)
                yield job.result()
            if not done:
                time.sleep(5)


def _tagged(unit, threads):
    from gumbench.benchmarks.sweep import run_unit

    return unit, run_unit(unit, threads=threads)
