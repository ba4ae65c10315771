"""Execution backends behind one function: :func:`execute` runs a callable over items and yields
(item, result) as they finish, in any order.

local  joblib processes (``jobs`` > 1) or this process (``jobs`` = 1)
dask   a Dask cluster at ``scheduler``, or a local cluster of ``jobs`` worker processes
       (optional extra: ``pip install 'gumbench[dask]'``)
slurm  a job array through submitit, from a host with sbatch and srun; jobs run this Python
       (``sys.executable``) with this process's environment (optional extra: ``pip install 'gumbench[slurm]'``)

:func:`check_backend` asks, before a caller makes anything, whether the backend is installed and answers
(the probes at the end of this module); every wait is bounded by ``connect_timeout`` (default
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
import socket
import struct
import subprocess
import threading
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


# --- probes ----------------------------------------------------------------------------------------------------
# Asking a backend whether it is there before a sweep starts, within a time bound: a Dask scheduler must
# answer in Dask's protocol, sbatch must accept a test submission. Each refusal is one line naming the address
# or the command; nothing here waits longer than the timeout it is given.
#
# A Dask scheduler speaks first: on a new connection it writes its handshake, a message whose first 8 bytes
# are the little-endian length of the frames that follow (``distributed.comm.tcp``: a few hundred bytes). A web
# server says nothing until asked (Dask's client would wait for it without end); a proxy answers ``HTTP/1.1 ...``,
# whose first 8 bytes read as a length of about 3.5e18 bytes (the client would try to allocate it: "out of memory").

MAX_HANDSHAKE = 2**24  # bytes: a scheduler's handshake is far below this; anything longer is not one


def split_address(address: str) -> tuple[str, str, int]:
    """'tcp://host:8786' -> ('tcp', 'host', 8786); a missing scheme is tcp; '[::1]:8786' is IPv6."""
    scheme, _, rest = address.rpartition("://")
    host, _, port = rest.rpartition(":")
    return scheme or "tcp", host.strip("[]"), int(port)


def _read_head(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def probe_dask(address: str, timeout: float) -> None:
    """Refuse, within ``timeout`` seconds, an address where no Dask scheduler answers (see the module docstring)."""
    scheme, host, port = split_address(address)
    where = f"the Dask scheduler {address}"
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise GumbenchError(f"cannot reach {where}: no answer within {timeout:g} s (--connect-timeout)") from None
    except OSError as exc:
        raise GumbenchError(f"cannot reach {where}: {exc.strerror or exc}") from None
    with sock:
        if scheme != "tcp":  # tls:// and others: the handshake is inside their own layer; reachable is what we can say
            return
        try:
            head = _read_head(sock, 8, deadline)
        except socket.timeout:
            raise GumbenchError(f"{address} accepts connections but sent no Dask handshake within {timeout:g} s: "
                                "not a Dask scheduler (a web server, another service?); give the scheduler's address "
                                "(--scheduler)") from None
        except OSError as exc:
            raise GumbenchError(f"cannot reach {where}: {exc.strerror or exc}") from None
    if len(head) < 8:
        raise GumbenchError(f"{address} closed the connection without a Dask handshake: not a Dask scheduler")
    if head.startswith(b"HTTP/"):
        raise GumbenchError(f"{address} answers in HTTP (a web server or a proxy), not in Dask's protocol: give the "
                            "scheduler's own address (--scheduler tcp://host:8786)")
    (length,) = struct.unpack("<Q", head)
    if not 0 < length <= MAX_HANDSHAKE:
        raise GumbenchError(f"{address} does not speak Dask's protocol (its first bytes are {head!r}); give the "
                            "scheduler's address (--scheduler)")


def bounded(work: Callable, timeout: float, what: str):
    """``work()``'s result, or a one-line error ``what`` once ``timeout`` seconds pass (the work is left
    behind in a daemon thread, which does not keep the process alive)."""
    result: dict = {}

    def target():
        try:
            result["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise GumbenchError(f"{what} within {timeout:g} s; check the SLURM controller (squeue), or raise "
                            "--connect-timeout")
    if "error" in result:
        raise result["error"]
    return result["value"]


def probe_sbatch(partition: str, minutes: int, timeout: float) -> None:
    """``sbatch --test-only`` to ``partition``, within ``timeout`` seconds: nothing is submitted; SLURM answers
    'Job N to start at ...' or refuses (an unknown partition, a time over its limit) with one line."""
    command = ["sbatch", "--test-only", f"--partition={partition}", f"--time={minutes}", "--wrap=true"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GumbenchError(f"sbatch did not answer a test submission to partition {partition!r} within {timeout:g} s; "
                            "check the SLURM controller (squeue), or raise --connect-timeout") from None
    except OSError as exc:
        raise GumbenchError(f"cannot run sbatch: {exc.strerror or exc}") from None
    reply = (done.stderr + "\n" + done.stdout).strip()
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    if done.returncode != 0:
        raise GumbenchError(lines[-1] if lines else f"sbatch refused a test submission to partition {partition!r} "
                            f"(exit status {done.returncode})")
    if not re.search(r"\bJob \d+ to start at\b", reply):
        shown = " ".join(reply.split())[:120]
        raise GumbenchError(f"sbatch's reply to a test submission is not SLURM's ('Job N to start at ...'): {shown!r}")
