"""Writing files: atomic writes and writability checks, for every room that writes one.

Every file gumbench writes (sweep results, reports and their figures, the CLI's ``-o`` outputs,
studies, kernel profiles and audits) goes through :func:`write_atomic`: the content is written
to a hidden temporary file in the target folder and renamed over the target (``os.replace``, atomic
within one file system), so a reader, or a run killed at any point, never sees half a file, and no
temporary file survives a failure. :func:`check_writable` refuses, before any work starts, a path
that could not be written, with a one-line :class:`GumbenchError` naming it.

Reading results back, and what a sweep run's folder holds, is the store's
(:mod:`gumbench.benchmarks.sweep.store`).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from gumbench.errors import GumbenchError


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Refuse, before any work starts, a path gumbench could not write: one under a file, a folder
    given for a file (or a file for a folder), a folder without write permission, or one inside a
    folder the user may not look into."""
    path = Path(path)
    try:
        _refuse_unwritable(path, folder)
    except OSError as exc:  # a folder on the way that cannot be searched: even is_dir() cannot answer
        raise GumbenchError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _refuse_unwritable(path: Path, folder: bool) -> None:
    if folder and path.exists() and not path.is_dir():
        raise GumbenchError(f"cannot write into {path}: it is a file; give a folder")
    if not folder and path.is_dir():
        raise GumbenchError(f"cannot write {path}: it is a folder; give a file path")
    if not folder and (path.is_symlink() or path.exists() and not path.is_file()):
        raise GumbenchError(
            f"cannot write {path}: it is a link or a special file (a device, a pipe); give a regular file path"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise GumbenchError(f"cannot write {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise GumbenchError(f"cannot write {path}: no permission to write in {parent}")
            break


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Create ``path`` through ``write(temporary path)`` and a rename; returns ``path``. A path that
    cannot be written (under a file, a folder, no permission, a full disk) raises a one-line
    GumbenchError naming it; the previous file is kept and no temporary file is left."""
    path = check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GumbenchError(
            f"cannot write {path}: cannot make its folder {path.parent} ({exc.strerror or exc})"
        ) from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise GumbenchError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)  # only left when write or the rename failed
    return path


def write_text(path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_bytes(path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json(path, data, *, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def write_csv(frame, path) -> Path:
    """A pandas frame as CSV, without its index."""
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_figure(figure, path, *, dpi: int = 110) -> Path:
    """A matplotlib figure (or seaborn grid) as PNG."""
    return write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
