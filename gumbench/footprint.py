"""Bounded memory by declaration: what a run may hold at its peak, estimated from parameters before it starts.

Every plugin (task, problem, estimator) answers :meth:`gumbench.plugin.Plugin.peak_memory` from its parameters
alone: by default :data:`STEP_COPIES` float32 copies of its largest declared size product (its ``limits``, the
products that size one step's tensors together); problems and tasks whose peak lies elsewhere (a reference
computed in chunks, a distance matrix) say so themselves. A run whose estimate exceeds the limit is refused up
front, in one line naming the sizes to lower. VQ estimators also check, when called, the distance matrix their
inputs would make (:func:`vq_bytes`), so the API refuses what the CLI refuses.

The limit: ``--max-memory`` (or ``$GUMBENCH_MAX_MEMORY``, which the CLI sets for its workers), else
:data:`DEFAULT_FRACTION` of the memory available when the check runs: the kernel's MemAvailable, and where an
address-space limit (``ulimit -v``, RLIMIT_AS) is set, what it leaves. This module imports no torch.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
from typing import NamedTuple

from gumbench.errors import GumbenchError

ENV = "GUMBENCH_MAX_MEMORY"
DEFAULT_FRACTION = 0.5  # of the available memory: the rest is for the interpreter, torch, the allocator's slack
STEP_COPIES = 8  # float32 copies of a step's largest tensor held at once (values, gradients, float64 copies)
# (rows, G, K) tensors a VQ forward and backward hold at once: distances, their cross term, the one-hot, its gradient
VQ_COPIES = 4
UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class Limit(NamedTuple):
    """A memory limit in bytes and where it comes from (for messages)."""

    bytes: int
    source: str


class Peak(NamedTuple):
    """An estimated peak in bytes and the parameters that size it (what to lower)."""

    bytes: int
    sizes: tuple[str, ...]


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'; 3.6e10 -> '33.5 GiB'."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"


def parse_size(text, owner: str = "--max-memory") -> int:
    """'8G', '512M', '1.5GiB', '2000000' (bytes) -> bytes; powers of 1024; a one-line error otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), flags=re.I | re.A)
    if not match or float(match.group(1)) * UNITS[match.group(2).lower()] < 2**20:
        raise GumbenchError(f"{owner} takes a size of at least 1M, like 8G, 512M or 1.5GiB, got {str(text)[:40]!r}")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _address_space_left() -> int | None:
    """What an RLIMIT_AS leaves this process (None: no such limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as handle:
            used = next((int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize:")), 0)
    except OSError:
        used = 0
    return max(soft - used, 0)


def available_bytes() -> int:
    """Memory this process can still take: MemAvailable (else the physical memory), and what RLIMIT_AS leaves."""
    free = _meminfo("MemAvailable")
    if free is None:
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    left = _address_space_left()
    return free if left is None else min(free, left)


def memory_limit(value: int | str | Limit | None = None) -> Limit:
    """The limit: ``value`` (bytes, or a size like '8G'), else $GUMBENCH_MAX_MEMORY, else DEFAULT_FRACTION of
    :func:`available_bytes`."""
    if isinstance(value, Limit):
        return value
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise GumbenchError(f"max_memory must be bytes or a size like '8G', got {value!r}")
        return Limit(parse_size(value), "--max-memory")
    text = os.environ.get(ENV, "").strip()
    if text:
        return Limit(parse_size(text, f"${ENV}"), f"${ENV}")
    free = available_bytes()
    return Limit(int(free * DEFAULT_FRACTION), f"{DEFAULT_FRACTION:.0%} of the {format_bytes(free)} available")


def check_peak(who: str, peak: Peak, limit: Limit | None = None) -> None:
    """Refuse, in one line, a run whose estimated ``peak`` exceeds ``limit`` (default :func:`memory_limit`)."""
    limit = memory_limit(limit)
    if peak.bytes > limit.bytes:
        lower = ", ".join(peak.sizes[:-1]) + (" or " if len(peak.sizes) > 1 else "") + peak.sizes[-1]
        raise GumbenchError(f"{who} would need about {format_bytes(peak.bytes)} of memory at its peak, over the limit "
                            f"of {format_bytes(limit.bytes)} ({limit.source}); lower {lower}, or raise --max-memory")


def check_training(task, estimators, limit: Limit | None = None) -> None:
    """Refuse, before the first run starts, an estimator ``task`` cannot train with or a run over ``limit``."""
    for est in estimators:
        task.check_estimator(est)
        check_peak(f"{est.label} on {task.spec}", combined(task.peak_memory(est), est.peak_memory()), limit)


def vq_bytes(rows: int, groups: int, codes: int, dim: int, itemsize: int = 4) -> int:
    """Peak bytes of a VQ forward and backward: VQ_COPIES (rows, G, K) tensors and STEP_COPIES (rows, G, D) ones."""
    return itemsize * (VQ_COPIES * rows * groups * codes + STEP_COPIES * rows * groups * dim)


def largest(*peaks: Peak) -> Peak:
    """The larger of several phases' peaks (they do not overlap)."""
    return max(peaks, key=lambda p: p.bytes)


def combined(*peaks: Peak) -> Peak:
    """The peak of parts held at once: bytes add, the sizes of the largest part come first."""
    ordered = sorted(peaks, key=lambda p: -p.bytes)
    sizes = tuple(dict.fromkeys(size for p in ordered for size in p.sizes))
    return Peak(sum(p.bytes for p in peaks), sizes or ("the sizes",))


@contextlib.contextmanager
def use_limit(value):
    """Within the block, $GUMBENCH_MAX_MEMORY holds ``value`` (a size; None: left as it is), so that the checks
    made when estimators are called, and worker processes started there, apply it; restored afterwards."""
    if value is None:
        yield memory_limit()
        return
    limit = memory_limit(value)
    before = os.environ.get(ENV)
    os.environ[ENV] = str(limit.bytes)
    try:
        yield limit
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
