"""Atomic writes and writability checks: a failed write keeps the previous file and leaves no
temporary file, a reader never sees half a file, and a path that cannot be written is refused with
one line naming it, before anything is written."""

import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from gumbench.errors import GumbenchError
from gumbench.files import check_writable, write_atomic, write_bytes, write_csv, write_figure, write_json, write_text


def test_write_atomic_keeps_the_previous_file_and_no_temporary_when_the_writer_fails(tmp_path):
    path = write_text(tmp_path / "out" / "result.txt", "previous\n")  # creates the folder
    assert path == tmp_path / "out" / "result.txt" and path.read_text() == "previous\n"

    def failing(tmp):
        tmp.write_text("half of the new cont")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        write_atomic(path, failing)
    assert path.read_text() == "previous\n"
    assert os.listdir(tmp_path / "out") == ["result.txt"], "no temporary file is left"
    # a writer that raises before writing anything leaves nothing either, and no target
    with pytest.raises(ZeroDivisionError):
        write_atomic(tmp_path / "out" / "new.txt", lambda tmp: 1 / 0)
    assert os.listdir(tmp_path / "out") == ["result.txt"]


def test_text_bytes_json_and_csv_round_trip(tmp_path):
    assert write_text(tmp_path / "a.txt", "x = 1\nünïcode\n").read_text() == "x = 1\nünïcode\n"
    assert write_bytes(tmp_path / "b.bin", bytes(range(256))).read_bytes() == bytes(range(256))
    data = {"estimator": "st-gumbel[tau=0.5]", "values": [1.5, None, 3], "nested": {"ok": True}}
    path = write_json(tmp_path / "c.json", data)
    assert json.loads(path.read_text()) == data and path.read_text().endswith("\n")
    assert json.loads(write_json(tmp_path / "d.json", data, indent=None).read_text()) == data
    frame = pd.DataFrame({"step": [0, 1, 2], "loss": [0.5, 0.25, 0.125], "label": ["a", "b", "c"]})
    pd.testing.assert_frame_equal(pd.read_csv(write_csv(frame, tmp_path / "e.csv")), frame)
    # rewriting replaces the content
    assert write_text(tmp_path / "a.txt", "second").read_text() == "second"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin", "c.json", "d.json", "e.csv"]


def test_a_path_under_a_regular_file_raises_and_leaves_nothing(tmp_path):
    blocker = write_text(tmp_path / "file", "I am a file")
    for target in (blocker / "x.txt", blocker / "deeper" / "x.csv"):
        with pytest.raises(GumbenchError, match=f"cannot write {target}: {blocker} is a file, not a folder"):
            write_text(target, "never written")
    with pytest.raises(GumbenchError, match="cannot write .*y.csv"):
        write_csv(pd.DataFrame({"a": [1]}), blocker / "y.csv")
    assert os.listdir(tmp_path) == ["file"] and blocker.read_text() == "I am a file"


def test_a_folder_given_as_a_file_is_refused_by_name(tmp_path):
    (tmp_path / "out.csv").mkdir()
    with pytest.raises(GumbenchError, match=f"cannot write {tmp_path / 'out.csv'}: it is a folder; give a file path"):
        write_text(tmp_path / "out.csv", "x")
    assert os.listdir(tmp_path) == ["out.csv"] and os.listdir(tmp_path / "out.csv") == []



def test_the_temporary_file_sits_beside_the_target_and_readers_see_the_old_file_meanwhile(tmp_path):
    path = write_text(tmp_path / "report.md", "previous")
    seen = {}

    def writer(tmp):
        tmp.write_text("new")
        seen.update(folder=tmp.parent, hidden=tmp.name.startswith("."), during=path.read_text())

    write_atomic(path, writer)
    assert seen == {"folder": tmp_path, "hidden": True, "during": "previous"}  # same folder: the rename is atomic
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["report.md"]


def test_an_os_error_while_writing_is_one_line_naming_the_path_and_keeps_the_previous_file(tmp_path):
    path = write_text(tmp_path / "r.csv", "previous\n")

    def full_disk(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(GumbenchError) as caught:
        write_atomic(path, full_disk)
    assert str(caught.value) == f"cannot write {path}: No space left on device"
    assert path.read_text() == "previous\n" and os.listdir(tmp_path) == ["r.csv"]


def test_a_figure_is_written_as_png(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    path = write_figure(fig, tmp_path / "figures" / "line.png", dpi=50)
    plt.close(fig)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and os.listdir(path.parent) == ["line.png"]


def test_a_file_given_for_a_folder_and_links_or_pipes_for_a_file_are_refused(tmp_path):
    file = write_text(tmp_path / "file", "x")
    with pytest.raises(GumbenchError, match=f"^cannot write into {file}: it is a file; give a folder$"):
        check_writable(file, folder=True)
    assert check_writable(tmp_path / "new" / "folder", folder=True) == tmp_path / "new" / "folder"
    assert not (tmp_path / "new").exists(), "a check creates nothing"
    (tmp_path / "link").symlink_to(file)
    os.mkfifo(tmp_path / "pipe")
    for special in ("link", "pipe"):
        with pytest.raises(GumbenchError, match=f"^cannot write {tmp_path / special}: it is a link or a special file"):
            write_text(tmp_path / special, "never")
    assert file.read_text() == "x"


CHECK_AS_ANOTHER_USER = """
import os, sys
from gumbench.errors import GumbenchError
from gumbench.files import check_writable
if os.geteuid() == 0:  # root may write anywhere: check as nobody
    os.setgid(65534)
    os.setuid(65534)
for target in sys.argv[1:]:
    try:
        check_writable(target.removesuffix("/"), folder=target.endswith("/"))
        print("writable")
    except GumbenchError as exc:
        print(exc)
"""


@pytest.fixture
def shared_folder():
    """A folder every user can look into (pytest's tmp_path sits under root's private folder)."""
    with tempfile.TemporaryDirectory() as name:
        os.chmod(name, 0o755)
        yield Path(name)
        for folder, _, _ in os.walk(name):
            os.chmod(folder, 0o755)


def test_a_folder_without_permission_is_refused_by_name_before_anything_is_written(shared_folder):
    locked, hidden, open_ = shared_folder / "locked", shared_folder / "hidden", shared_folder / "open"
    for folder, mode in ((locked, 0o555), (hidden, 0o000), (open_, 0o777)):
        folder.mkdir()
        folder.chmod(mode)
    targets = [
        locked / "out.csv",
        f"{locked / 'sub' / 'reports'}/",
        hidden / "out.csv",
        open_ / "out.csv",
        f"{open_ / 'sub'}/",
    ]
    out = subprocess.run(
        [sys.executable, "-c", CHECK_AS_ANOTHER_USER, *map(str, targets)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"cannot write {locked / 'out.csv'}: no permission to write in {locked}",
                                       f"cannot write {locked / 'sub' / 'reports'}: no permission to write in {locked}",
                                       f"cannot write {hidden / 'out.csv'}: Permission denied",  # cannot even look in
                                       "writable", "writable"]
    assert os.listdir(locked) == [] and os.listdir(open_) == []
