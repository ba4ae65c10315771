"""How many threads torch computes with: the ``--threads`` option, else ``GUMBENCH_THREADS``, else 1.

One thread per process (per worker in a parallel sweep) is the default because it stays stable on a
shared machine: torch's own default, one thread per core, slowed calls up to 100-fold on a 2-core
machine whenever another process ran. torch is imported only when the count is applied.
"""

from __future__ import annotations

import os

from gumbench.errors import GumbenchError

ENV = "GUMBENCH_THREADS"
DEFAULT_THREADS = 1
MAX_THREADS = 1024


def torch_threads(value: int | None = None) -> int:
    """The thread count to use: ``value``, else $GUMBENCH_THREADS, else 1; anything but an integer
    from 1 to MAX_THREADS is a one-line GumbenchError."""
    source = "threads"
    if value is None:
        text = os.environ.get(ENV, "").strip()
        if not text:
            return DEFAULT_THREADS
        source, value = ENV, text
        try:
            value = int(text)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise GumbenchError(f"{source} must be an integer from 1 to {MAX_THREADS}, got {value!r}")
    return value


def use_threads(value: int | None = None) -> int:
    """Set torch's intra-op thread count by :func:`torch_threads`; returns it."""
    threads = torch_threads(value)
    import torch

    torch.set_num_threads(threads)
    return threads
