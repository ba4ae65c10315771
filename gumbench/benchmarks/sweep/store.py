"""Where results go: parquet results with their run metadata, and the results store of sweeps.

Files are written atomically through :mod:`gumbench.files` (a temporary file renamed over the
target), so a reader, or a run killed at any point, never sees half a file.

Layout of one sweep run, named by its identity (the config's hash and the code's, see
:func:`code_hash`), so a run of changed code never meets the files of an older one:

    <root>/<name>-<config hash>-<code hash>/units/<unit id>.parquet  one per finished unit, written on finish
    <root>/<name>-<config hash>-<code hash>/results.parquet          all units, written once when all are done
    <root>/<name>-<config hash>-<code hash>/set-aside/               unreadable unit (or results) files found on resume
    <root>/<name>-<config hash>-<code hash>/.lock                    held by the process running the sweep

Parquet results are tidy long format and are never overwritten. Every file carries the run
metadata (:func:`run_metadata`: gumbench, torch and triton versions, git commit, code hash,
device, base seed, the resolved config; the sweep adds its torch thread count) in its parquet
key-value metadata under ``gumbench``, and the scalar fields also as columns (the thread count is
a row column written by each unit, so a run resumed with another count says which units used
which). Only parquet is read back: nothing is unpickled. A unit file counts as finished only when
it reads back whole, with this run's identity and one unit's rows; the results file only when it
holds exactly the run's units.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import socket
import time
from pathlib import Path
from typing import Callable

from gumbench.errors import GumbenchError
from gumbench.files import write_atomic
from gumbench.provenance import code_hash, git_commit

METADATA_KEY = b"gumbench"
METADATA_COLUMNS = (
    "gumbench_version",
    "git_commit",
    "code_hash",
    "torch_version",
    "triton_version",
    "device",
    "base_seed",
    "config_hash",
)
IDENTITY = ("config_hash", "code_hash")
ROW_COLUMNS = (
    "kind",
    "task",
    "task_name",
    "estimator",
    "estimator_name",
    "label",
    "tau",
    "repetition",
    "seed",
    "unit_id",
    "step",
    "metric",
    "value",
    "low",
    "high",
)


# --- results files -------------------------------------------------------------------------

def write_parquet(frame, path: Path, metadata: dict) -> Path:
    """Write ``frame`` with metadata columns and key-value metadata, atomically; refuse to overwrite."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.exists():
        raise GumbenchError(f"{path} exists: results are never overwritten")
    frame = frame.copy()
    for key in METADATA_COLUMNS:
        frame[key] = metadata[key]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata).encode()}
    )
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp))


# --- metadata -------------------------------------------------------------------------------

def environment(device: str = "cpu") -> dict:
    """Versions, git commit, device and time of a run; ``device`` "cpu" is described with its cores."""
    import torch

    import gumbench

    try:
        from importlib.metadata import version

        triton_version = version("triton")
    except Exception:  # triton is optional
        triton_version = "not installed"
    return {
        "gumbench_version": gumbench.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "triton_version": triton_version,
        "python_version": platform.python_version(),
        "device": device
        if device != "cpu"
        else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_metadata(config: dict, config_hash: str, device: str = "cpu") -> dict:
    """What every results file of a sweep run carries (see the module docstring)."""
    env = environment(device)
    return {
        key: env[key] for key in ("gumbench_version", "git_commit", "torch_version", "triton_version", "device")
    } | {
        "code_hash": code_hash(),
        "base_seed": int(config.get("base_seed", 0)),
        "config_hash": config_hash,
        "config": config,
    }


def read_metadata(path: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    except (pa.ArrowException, OSError) as exc:
        raise GumbenchError(f"{path} is not a readable parquet file ({str(exc).splitlines()[0]})") from None
    if raw is None:
        raise GumbenchError(f"{path} is not a gumbench results file (no gumbench metadata)")
    try:
        found = json.loads(raw)
    except ValueError:  # also invalid UTF-8
        found = None
    if not isinstance(found, dict) or not isinstance(found.get("config", {}), dict):
        raise GumbenchError(f"{path} is not a gumbench results file (its gumbench metadata is damaged)")
    return found


def read_results(path: Path, metadata: dict | None = None):
    """The rows of one results file, checked: readable whole, gumbench's, and (given a run's
    ``metadata``) of that run's identity. Anything else raises a one-line GumbenchError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found = read_metadata(path)
    if metadata is not None:
        for key in IDENTITY:
            if found.get(key) != metadata[key]:
                raise GumbenchError(
                    f"{path} belongs to another run ({key} {found.get(key)}, this run's {metadata[key]})"
                )
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise GumbenchError(f"{path} is not a readable parquet file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ROW_COLUMNS if c not in frame.columns]
    if missing:
        raise GumbenchError(f"{path} is not a gumbench results file: no column {', '.join(missing)}")
    import pandas as pd

    if not all(pd.api.types.is_numeric_dtype(frame[c]) for c in ("value", "low", "high", "step")):
        raise GumbenchError(f"{path} is not a gumbench results file: value, low, high and step must be numbers")
    if set(frame["kind"]) - {"gradstats", "training"}:
        raise GumbenchError(f"{path} is not a gumbench results file: kind must be gradstats or training")
    return frame


# --- the results store ----------------------------------------------------------------------

class RunStore:
    """The folder of one sweep run: ``<root>/<name>-<config hash>-<code hash>/`` (module docstring)."""

    def __init__(self, root: Path, name: str, metadata: dict):
        self.metadata = metadata
        self.folder = Path(root) / f"{name}-{metadata['config_hash']}-{metadata['code_hash']}"
        self.units = self.folder / "units"
        self.results = self.folder / "results.parquet"
        self._lock = None
        self._made: Path | None = None

    def unit_path(self, unit_id: str) -> Path:
        return self.units / f"{unit_id}.parquet"

    # holding the folder: one sweep at a time
    def __enter__(self) -> "RunStore":
        """Hold the run folder (an exclusive lock on ``.lock``); a second holder is refused at once,
        named by the process id, host and start time the first wrote there."""
        missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self._made = missing[-1] if missing else None  # the outermost folder this run makes (None: it existed)
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise GumbenchError(
                f"run folder {self.folder} is in use by {holder}; wait for it to finish or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()} (started {time.strftime('%Y-%m-%d %H:%M:%S')})")
        handle.flush()
        self._lock = handle
        return self

    def __exit__(self, kind, *exc) -> None:
        """Release the folder; a run that failed before any unit finished, in a folder it made, leaves nothing."""
        if self._lock is not None:
            self._lock.close()  # closing releases the lock
            self._lock = None
        kept = any(self.units.glob("*.parquet")) or any((self.folder / "checkpoints").glob("*.pt"))
        if kind is not None and self._made is not None and not kept:  # checkpoints are work to resume, too
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)
            for parent in self.folder.parents:  # the folders made on the way, while nothing else is in them
                if not parent.is_relative_to(self._made):
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break

    def set_aside(self, path: Path, reason: str) -> Path:
        """Move ``path`` to ``set-aside/`` under a timestamped name (never over another); returns where it went."""
        aside = self.folder / "set-aside" / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}"
        aside.parent.mkdir(exist_ok=True)
        count = 1
        while aside.exists():
            aside = aside.with_name(f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.{count}")
            count += 1
        os.replace(path, aside)
        return aside

    def finished(self, unit_ids, note: Callable[[str], None] = lambda text: None) -> set[str]:
        """The units of ``unit_ids`` whose files read back whole with this run's identity and their own
        rows; a file that does not (truncated, empty, another run's) is moved to ``set-aside/``, reported
        through ``note``, and its unit runs again."""
        wanted = set(unit_ids)
        done = set()
        for path in sorted(self.units.glob("*.parquet")) if self.units.is_dir() else []:
            try:
                rows = read_results(path, self.metadata)
                if rows.empty or set(rows["unit_id"]) != {path.stem} or path.stem not in wanted:
                    raise GumbenchError(f"{path} does not hold the rows of unit {path.stem} of this run")
                done.add(path.stem)
            except (GumbenchError, KeyError) as exc:
                aside = self.set_aside(path, str(exc))
                note(f"set aside {path.name} ({str(exc).split(' (')[0]}); its unit runs again: {aside}")
        return done

    def write_unit(self, unit_id: str, frame) -> None:
        write_parquet(frame, self.unit_path(unit_id), self.metadata)

    def finalize(self, unit_ids: list[str], note: Callable[[str], None] = lambda text: None) -> Path:
        """Write results.parquet from the unit files once. An existing one is kept only when it reads back whole
        with exactly ``unit_ids`` and this run's identity; anything else (damaged, truncated, another run's) is
        set aside like a damaged unit, said through ``note``, and rebuilt from the units."""
        import pandas as pd

        expected = set(unit_ids)
        if self.results.exists():
            try:
                found = set(read_results(self.results, self.metadata)["unit_id"])
                if found != expected:
                    raise GumbenchError(f"{self.results} holds {len(found)} units, {len(found & expected)} of this "
                                        f"run's {len(expected)}")
                return self.results
            except GumbenchError as exc:
                aside = self.set_aside(self.results, str(exc))
                reason = str(exc).removeprefix(f"{self.results} ").split(" (")[0]
                note(f"set aside results.parquet ({reason}); rebuilt from the {len(expected)} unit files: "
                     f"{aside}")
        frames = [read_results(self.unit_path(u), self.metadata) for u in unit_ids]
        combined = pd.concat(frames, ignore_index=True).drop(columns=list(METADATA_COLUMNS))
        if set(combined["unit_id"]) != expected:
            raise GumbenchError(f"{self.units} does not hold every unit of this run")
        return write_parquet(combined, self.results, self.metadata)


def load_results(paths):
    """Rows from results files, run folders (results.parquet, else the finished unit files) or a
    folder of runs; one DataFrame."""
    import pandas as pd

    files: list[Path] = []
    for raw in paths:
        if not isinstance(raw, (str, os.PathLike)):
            raise GumbenchError(f"results are paths to run folders or results.parquet files, got {type(raw).__name__}")
        path = Path(raw)
        if path.is_file():
            files.append(path)
        elif (path / "results.parquet").is_file():
            files.append(path / "results.parquet")
        elif (path / "units").is_dir():
            files.extend(sorted((path / "units").glob("*.parquet")))
        elif path.is_dir() and any(path.glob("*/results.parquet")):
            files.extend(sorted(path.glob("*/results.parquet")))
        else:
            raise GumbenchError(
                f"{raw}: not a results file or run folder (expected results.parquet or units/*.parquet)"
            )
    if not files:
        raise GumbenchError("no results to read")
    frame = pd.concat([read_results(f) for f in files], ignore_index=True)
    if frame.empty:
        raise GumbenchError(f"no rows in {', '.join(str(f) for f in files[:3])}{' ...' if len(files) > 3 else ''}")
    return frame
