"""Execution backends behind one function: :func:`execute` runs a callable over items and yields
(item, result) as they finish, in any order.

local  joblib processes (``jobs`` > 1) or this process (``jobs`` = 1)
dask   a Dask cluster at ``scheduler``, or a local cluster of ``jobs`` worker processes
       (optional extra: ``pip install 'gumbench[dask]'``)
slurm  a job array through submitit, from a host with sbatch and srun; jobs run this Python
       (``sys.executable``) with this process's environment (optional extra: ``pip install 'gumbench[slurm]'``)

:func:`check_backend` asks, before a caller makes anything, whether the backend is installed and answers
(:mod:`gumbench.benchmarks.sweep.probes`); every wait is bounded by ``connect_timeout`` (default
:data:`CONNECT_TIMEOUT` seconds; the job array's submission by :data:`SUBMIT_TIMEOUTS` of them).

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
            slurm_partition: str | None = None, slurm_time: int | None = None, slurm_folder: Path | None = None,
            threads: int = 1, connect_timeout: float | None = None) -> Iterator:
    """An iterator of (item, run(item, threads=threads)) for every item, in the order they finish, on ``backend``.
    Bad arguments raise here, before anything runs (:func:`check_execution`); :func:`check_backend` says, before
    a caller makes anything, whether the backend is there and answers."""
    check_execution(backend, jobs, slurm_partition, slurm_time, scheduler, connect_timeout)
    items = list(items)
    if not items:
        return iter(())
    timeout = CONNECT_TIMEOUT if connect_timeout is None else float(connect_timeout)
    if backend == "local":
        return _local(run, items, jobs, threads)
    if backend == "dask":
        return _dask(run, items, jobs, scheduler, threads, timeout)
    return _slurm(run, items, slurm_partition, slurm_time or SLURM_MINUTES, slurm_folder, threads, timeout)


MAX_JOBS = 1024
MAX_SLURM_MINUTES = 7 * 24 * 60
SLURM_MINUTES = 60  # the default time limit per unit
CONNECT_TIMEOUT = 10.0  # seconds a Dask scheduler or sbatch may take to answer (--connect-timeout)
MAX_CONNECT_TIMEOUT = 600.0
SUBMIT_TIMEOUTS = 12  # the job array's submission may take this many connect timeouts (pickling, a busy controller)
OPTION_BACKENDS = {"--scheduler": ("dask",), "--partition": ("slurm",), "--time": ("slurm",),
                   "--connect-timeout": ("dask", "slurm")}


def check_execution(backend: str, jobs: int, slurm_partition: str | None = None, slurm_time: int | None = None,
                    scheduler: str | None = None, connect_timeout: float | None = None) -> None:
    """The arguments of :func:`execute`, checked without running anything; a one-line error otherwise. An
    option the backend would ignore (a scheduler for local processes, a partition for Dask) is refused."""
    if backend not in BACKENDS:
        raise GumbenchError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise GumbenchError(f"jobs must be an integer from 1 to {MAX_JOBS}, got {jobs!r}")
    given = {"--scheduler": scheduler, "--partition": slurm_partition, "--time": slurm_time,
             "--connect-timeout": connect_timeout}
    for option, value in given.items():
        if value is not None and backend not in OPTION_BACKENDS[option]:
            raise GumbenchError(f"{option} applies to --backend {' or '.join(OPTION_BACKENDS[option])} only, "
                                f"not {backend}; leave it out or choose that backend")
    if backend == "slurm" and jobs != 1:
        raise GumbenchError("--jobs applies to --backend local or dask; SLURM runs every unit as a task of one job "
                            "array (its partition decides how many at once)")
    number = isinstance(connect_timeout, (int, float)) and not isinstance(connect_timeout, bool)
    if connect_timeout is not None and not (number and 0 < connect_timeout <= MAX_CONNECT_TIMEOUT):
        raise GumbenchError(f"--connect-timeout must be seconds in (0, {MAX_CONNECT_TIMEOUT:g}], "
                            f"got {connect_timeout!r}")
    if backend == "dask" and scheduler is not None and not re.fullmatch(r"(\w+://)?[\w.\-\[\]:]+:\d+", scheduler):
        raise GumbenchError(f"--scheduler must be an address like tcp://host:8786, got {scheduler!r}")
    if backend == "slurm":
        if not slurm_partition:
            raise GumbenchError("--backend slurm needs --partition NAME")
        if slurm_time is not None and (
            isinstance(slurm_time, bool) or not isinstance(slurm_time, int) or not 1 <= slurm_time <= MAX_SLURM_MINUTES
        ):
            raise GumbenchError(
                f"the SLURM time limit must be from 1 to {MAX_SLURM_MINUTES} minutes, got {slurm_time!r}"
            )


def check_backend(backend: str, *, scheduler: str | None = None, slurm_partition: str | None = None,
                  slurm_time: int | None = None, connect_timeout: float | None = None) -> None:
    """Whether ``backend`` is there and answers, asked before a caller makes anything (a sweep, its run folder):
    dask.distributed or submitit installed, a Dask scheduler that speaks Dask's protocol, an sbatch that accepts
    a test submission to the partition; each within ``connect_timeout`` seconds. A one-line error otherwise."""
    import importlib.util

    from gumbench.benchmarks.sweep.probes import probe_dask, probe_sbatch

    timeout = CONNECT_TIMEOUT if connect_timeout is None else float(connect_timeout)
    if backend == "dask":
        if importlib.util.find_spec("distributed") is None:
            raise GumbenchError("--backend dask needs dask.distributed: pip install 'gumbench[dask]'")
        if scheduler is not None:
            probe_dask(scheduler, timeout)
    elif backend == "slurm":
        if importlib.util.find_spec("submitit") is None:
            raise GumbenchError("--backend slurm needs submitit: pip install 'gumbench[slurm]'")
        if shutil.which("sbatch") is None or shutil.which("srun") is None:
            raise GumbenchError("--backend slurm needs SLURM's sbatch and srun on PATH (run it where jobs are "
                                "submitted)")
        probe_sbatch(slurm_partition, slurm_time or SLURM_MINUTES, timeout)


def _local(run, items, jobs, threads):
    if jobs == 1:
        for item in items:
            yield _tagged(run, item, threads)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
    yield from parallel(delayed(_tagged)(run, item, threads) for item in items)


def _dask(run, items, jobs, scheduler, threads, timeout):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise GumbenchError("--backend dask needs dask.distributed: pip install 'gumbench[dask]'") from None
    if scheduler:
        from gumbench.benchmarks.sweep.probes import probe_dask

        probe_dask(scheduler, timeout)  # Client would wait for a handshake that a web server never sends
    cluster = (
        None
        if scheduler
        else LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
    )
    try:
        client = Client(scheduler or cluster, timeout=timeout)
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


def _slurm(run, items, partition, time_limit, folder, threads, timeout):
    try:
        import submitit
    except ImportError:
        raise GumbenchError("--backend slurm needs submitit: pip install 'gumbench[slurm]'") from None
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise GumbenchError("--backend slurm needs SLURM's sbatch and srun on PATH (run it where jobs are submitted)")
    from gumbench.benchmarks.sweep.probes import bounded

    executor = submitit.AutoExecutor(folder=str(folder or "slurm-logs"), cluster="slurm")
    executor.update_parameters(slurm_partition=partition, timeout_min=time_limit, cpus_per_task=threads)
    try:
        pending = list(bounded(lambda: executor.map_array(_tagged, [run] * len(items), items, [threads] * len(items)),
                               timeout * SUBMIT_TIMEOUTS,
                               f"sbatch did not submit the job array to partition {partition!r}"))
    except submitit.core.utils.FailedJobError as error:  # sbatch refused the array, e.g. an unknown partition
        raise GumbenchError(str(error).strip().splitlines()[-1]) from None
    except submitit.core.utils.FailedSubmissionError as error:  # sbatch answered, but not with a job id
        reply = " ".join(str(error).split('"')[1].split()) if '"' in str(error) else str(error).splitlines()[0]
        raise GumbenchError(f"sbatch's reply to the submission is not SLURM's (no job id): {reply[:160]!r}") from None
    while pending:
        done = [job for job in pending if job.done()]
        for job in done:
            pending.remove(job)
            yield job.result()
        if not done:
            time.sleep(1)  # done() looks for each job's result file; submitit spaces out its own sacct calls
