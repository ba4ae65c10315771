"""gumbench.memory.keep_freed_memory: sets glibc's mmap threshold to 32 MiB and trim threshold to 256 MiB, once per
process; False where there is no mallopt. The effect is observed in fresh processes through glibc's mallinfo2:
a block of a few MiB comes from the heap and stays there when freed, one above 32 MiB is still mapped."""

import ctypes
import json
import platform
import subprocess
import sys

import pytest

from gumbench import memory

MiB = 2**20
glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


@pytest.fixture
def fresh():
    """keep_freed_memory with its once-per-process cache cleared before and after (the settings stay: they are
    what the suite runs with anyway)."""
    memory.keep_freed_memory.cache_clear()
    yield memory.keep_freed_memory
    memory.keep_freed_memory.cache_clear()


class FakeLibc:
    def __init__(self, answers=(1, 1)):
        self.calls, self.answers = [], list(answers)
        self.mallopt = self.Mallopt(self)

    class Mallopt:
        def __init__(self, libc):
            self.libc = libc

        def __call__(self, option, value):
            self.libc.calls.append((option, value))
            return self.libc.answers.pop(0)


def test_the_thresholds_are_glibcs_options_at_their_documented_values(fresh, monkeypatch):
    libc = FakeLibc()
    opened = []
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: opened.append(name) or libc)
    assert fresh() is True
    # malloc.h: M_TRIM_THRESHOLD -1, M_MMAP_THRESHOLD -3; the largest mmap threshold on 64-bit is 32 MiB
    assert libc.calls == [(-3, 32 * MiB), (-1, 256 * MiB)]
    assert (libc.mallopt.argtypes, libc.mallopt.restype) == ((ctypes.c_int, ctypes.c_int), ctypes.c_int)
    assert fresh() is True and len(libc.calls) == 2 and len(opened) == 1, "once per process"


@pytest.mark.parametrize("answers", [(0, 1), (1, 0)])
def test_a_refused_threshold_is_false(fresh, monkeypatch, answers):
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: FakeLibc(answers))
    assert fresh() is False


def test_no_c_library_or_no_mallopt_is_a_no_op(fresh, monkeypatch):
    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(memory.ctypes, "CDLL", missing)
    assert fresh() is False
    memory.keep_freed_memory.cache_clear()
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: object())  # a C library without mallopt
    assert fresh() is False


@glibc
def test_glibc_takes_them(fresh):
    assert fresh() is True


PROBE = """
import ctypes, ctypes.util, json, sys
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                                 "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
if sys.argv[1] == "keep":
    from gumbench.memory import keep_freed_memory
    assert keep_freed_memory()
def block(size):
    before = libc.mallinfo2()
    p = libc.malloc(size)
    mapped = libc.mallinfo2().hblkhd - before.hblkhd >= size
    libc.free(p)
    return {"mapped": mapped, "heap_kept": libc.mallinfo2().arena - before.arena >= size}
print(json.dumps([block(8 << 20), block(64 << 20)]))
"""


def probe(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@glibc
def test_freed_blocks_below_32_mib_stay_in_the_process():
    eight, sixty_four = probe("default")
    assert eight == {"mapped": True, "heap_kept": False}, "glibc's default: an 8 MiB block is mapped and unmapped"
    assert sixty_four["mapped"]
    eight, sixty_four = probe("keep")
    assert eight == {"mapped": False, "heap_kept": True}, "from the heap, and kept there when freed"
    assert sixty_four == {"mapped": True, "heap_kept": False}, "above the 32 MiB threshold: mapped as before"
