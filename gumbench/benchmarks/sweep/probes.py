"""Asking a backend whether it is there before a sweep starts, within a time bound: a Dask scheduler must
answer in Dask's protocol, sbatch must accept a test submission. Each refusal is one line naming the address
or the command; nothing here waits longer than the timeout it is given.

A Dask scheduler speaks first: on a new connection it writes its handshake, a message whose first 8 bytes
are the little-endian length of the frames that follow (``distributed.comm.tcp``: a few hundred bytes). A web
server says nothing until asked (Dask's client would wait for it without end); a proxy answers ``HTTP/1.1 ...``,
whose first 8 bytes read as a length of about 3.5e18 bytes (the client would try to allocate it: "out of memory").
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import threading
import time
from typing import Callable

from gumbench.errors import GumbenchError

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
