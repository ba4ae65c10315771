"""A full disk, for real: a small tmpfs mounted for the test. A failed write names its path, keeps
the previous file and leaves no temporary file; a sweep that runs out of space mid-run keeps every
finished unit, and once there is room again the resumed run completes with the rows of a fresh one."""

import os
import subprocess

import pandas as pd
import pytest

from gumbench.benchmarks.sweep import load_results, run_sweep
from gumbench.benchmarks.sweep.store import read_results
from gumbench.errors import GumbenchError
from gumbench.files import write_bytes, write_text
from tests.benchmarks.sweep.sweeps import comparable, small_config
from tests.conftest import require


@pytest.fixture
def disk(tmp_path):
    """A 512 KiB tmpfs (mounting needs root: skipped with the reason otherwise, failed under CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    require(
        out.returncode == 0,
        f"needs a small tmpfs for a full disk (mount -t tmpfs, as root): {out.stderr.strip()[:100]}",
    )
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_write_to_a_full_disk_names_the_path_and_keeps_the_previous_file(disk):
    path = write_text(disk / "report.md", "previous")
    with pytest.raises(GumbenchError, match=f"cannot write {path}: No space left on device"):
        write_bytes(path, b"x" * 1024 * 1024)
    assert path.read_text() == "previous" and os.listdir(disk) == ["report.md"]


def test_a_sweep_that_fills_the_disk_loses_no_unit_and_resumes(disk, tmp_path):
    config = small_config()
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * 400 * 1024)  # leaves room for a few of the ~15 KB unit files
    with pytest.raises(GumbenchError, match="cannot write .*units.*No space left on device"):
        run_sweep(config, out=disk, progress=False)
    (folder,) = [p for p in disk.iterdir() if p.is_dir()]
    kept = sorted((folder / "units").glob("*.parquet"))
    assert 0 < len(kept) < 12, "the disk filled mid-run"
    assert all(len(read_results(p)) > 0 for p in kept), "every unit file left behind reads back whole"
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")], "no temporary file is left"
    ballast.unlink()
    resumed = run_sweep(config, out=disk, progress=False)
    assert not (folder / "set-aside").exists(), "nothing was damaged"
    fresh = run_sweep(config, out=tmp_path / "fresh", progress=False)
    pd.testing.assert_frame_equal(comparable(load_results([resumed])), comparable(load_results([fresh])))
