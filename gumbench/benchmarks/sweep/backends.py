"""Execution backends behind one function: :func:`execute` runs a callable over items and yields
(item, result) as they finish, in any order.

local  joblib processes (``jobs`` > 1) or this process (``jobs`` = 1)
dask   a Dask cluster at ``scheduler``, or a local cluster of ``jobs`` worker processes
       (optional extra: ``pip install 'gumbench[dask]'``)
slurm  a job array through submitit, from a host with sbatch and srun; jobs run this Python
       (``sys.executable``) with this process's environment (optional extra: ``pip install 'gumbench[slurm]'``)

The callable is called as ``run(item, threads=n)``, in this process or in a worker, with the
``threads`` given to :func:`execute` (the thread policy's count, :mod:`gumbench.threads`: one per
worker unless set, so parallel items do not oversubscribe a shared machine). Workers unpickle it, so it
must be importable by module path (a module-level function). This module knows nothing of what
it runs: it imports nothing from the sweep runner.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from gumbench.errors import GumbenchError

BACKENDS = ("local", "dask", "slurm")


def _tagged(run: Callable, item, threads: int):
    """(item, run(item, threads=threads)): results come back with what produced them."""
    return item, run(item, threads=threads)


def execute(run: Callable, items: Iterable, *, backend: str = "local", jobs: int = 1, scheduler: str | None = None,
            slurm_partition: str | None = None, slurm_time: int = 60, slurm_folder: Path | None = None,
            threads: int = 1) -> Iterator:
    """An iterator of (item, run(item, threads=threads)) for every item, in the order they finish, on ``backend``.
    Bad arguments raise here, before anything runs (:func:`check_execution`)."""
    check_execution(backend, jobs, slurm_partition, slurm_time, scheduler)
    items = list(items)
    if not items:
        return iter(())
    if backend == "local":
        return _local(run, items, jobs, threads)
    if backend == "dask":
        return _dask(run, items, jobs, scheduler, threads)
    return _slurm(run, items, slurm_partition, slurm_time, slurm_folder, threads)


MAX_JOBS = 1024
MAX_SLURM_MINUTES = 7 * 24 * 60


def check_execution(backend: str, jobs: int, slurm_partition: str | None = None, slurm_time: int = 60,
                    scheduler: str | None = None) -> None:
    """The arguments of :func:`execute`, checked without running anything; a one-line error otherwise."""
    if backend not in BACKENDS:
        raise GumbenchError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise GumbenchError(f"jobs must be an integer from 1 to {MAX_JOBS}, got {jobs!r}")
    if backend == "dask" and scheduler is not None and not re.fullmatch(r"(\w+://)?[\w.\-\[\]:]+:\d+", scheduler):
        raise GumbenchError(f"--scheduler must be an address like tcp://host:8786, got {scheduler!r}")
    if backend == "slurm":
        if not slurm_partition:
            raise GumbenchError("--backend slurm needs --partition NAME")
        if isinstance(slurm_time, bool) or not isinstance(slurm_time, int) or not 1 <= slurm_time <= MAX_SLURM_MINUTES:
            raise GumbenchError(
                f"the SLURM time limit must be from 1 to {MAX_SLURM_MINUTES} minutes, got {slurm_time!r}"
            )


def _local(run, items, jobs, threads):
    if jobs == 1:
        for item in items:
            yield _tagged(run, item, threads)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
    yield from parallel(delayed(_tagged)(run, item, threads) for item in items)


def _dask(run, items, jobs, scheduler, threads):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise GumbenchError("--backend dask needs dask.distributed: pip install 'gumbench[dask]'") from None
    cluster = (
        None
        if scheduler
        else LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
    )
    try:
        client = Client(scheduler or cluster, timeout=30)
    except (OSError, ValueError, TimeoutError) as exc:
        raise GumbenchError(
            f"cannot reach the Dask scheduler {scheduler!r}: {' '.join(str(exc).split())[:160]}"
        ) from None
    try:
        futures = client.map(_tagged, [run] * len(items), items, threads=threads, pure=False)
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _slurm(run, items, partition, time_limit, folder, threads):
    try:
        import submitit
    except ImportError:
        raise GumbenchError("--backend slurm needs submitit: pip install 'gumbench[slurm]'") from None
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise GumbenchError("--backend slurm needs SLURM's sbatch and srun on PATH (run it where jobs are submitted)")
    executor = submitit.AutoExecutor(folder=str(folder or "slurm-logs"), cluster="slurm")
    executor.update_parameters(slurm_partition=partition, timeout_min=time_limit, cpus_per_task=threads)
    try:
        pending = list(executor.map_array(_tagged, [run] * len(items), items, [threads] * len(items)))
    except submitit.core.utils.FailedJobError as error:  # sbatch refused the array, e.g. an unknown partition
        raise GumbenchError(str(error).strip().splitlines()[-1]) from None
    while pending:
        done = [job for job in pending if job.done()]
        for job in done:
            pending.remove(job)
            yield job.result()
        if not done:
            time.sleep(1)  # done() looks for each job's result file; submitit spaces out its own sacct calls
