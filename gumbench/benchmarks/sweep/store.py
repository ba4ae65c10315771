"""Where results go: atomic writes, run metadata, and the results store of sweeps.

Every file gumbench writes (sweep results, reports and their figures, the CLI's ``-o`` outputs,
studies, kernel profiles and audits) goes through :func:`write_atomic`: the content is written
to a hidden temporary file in the target folder and renamed over the target, so a reader, or a
run killed at any point, never sees half a file, and no temporary file survives a failure.

Layout of one sweep run (a sweep config and its hash):

    <root>/<name>-<config hash>/units/<unit id>.parquet   one per finished unit, written on finish
    <root>/<name>-<config hash>/results.parquet           all units, written once when all are done

Parquet results are tidy long format and are never overwritten. Every file carries the run
metadata (:func:`run_metadata`: gumbench, torch and triton versions, git commit, device, base
seed, the resolved config) in its parquet key-value metadata under ``gumbench``, and the scalar
fields also as columns. Only parquet is read back: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Callable

from gumbench.errors import GumbenchError
from gumbench.provenance import git_commit

METADATA_KEY = b"gumbench"
METADATA_COLUMNS = ("gumbench_version", "git_commit", "torch_version", "triton_version", "device", "base_seed", "config_hash")


# --- atomic writes ------------------------------------------------------------------------

def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Create ``path`` through ``write(temporary path)`` and a rename; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
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
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_figure(figure, path, *, dpi: int = 110) -> Path:
    """A matplotlib figure (or seaborn grid) as PNG."""
    return write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))


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
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata).encode()})
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
        "device": device if device != "cpu" else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_metadata(config: dict, config_hash: str, device: str = "cpu") -> dict:
    """What every results file of a sweep run carries (see the module docstring)."""
    env = environment(device)
    return {key: env[key] for key in ("gumbench_version", "git_commit", "torch_version", "triton_version", "device")} | {
        "base_seed": int(config.get("base_seed", 0)),
        "config_hash": config_hash,
        "config": config,
    }


def read_metadata(path: Path) -> dict:
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise GumbenchError(f"{path} is not a gumbench results file (no gumbench metadata)")
    return json.loads(raw)


# --- the results store ----------------------------------------------------------------------

class RunStore:
    """The folder of one sweep run: ``<root>/<name>-<config hash>/``."""

    def __init__(self, root: Path, name: str, config_hash: str):
        self.folder = Path(root) / f"{name}-{config_hash}"
        self.units = self.folder / "units"
        self.results = self.folder / "results.parquet"

    def unit_path(self, unit_id: str) -> Path:
        return self.units / f"{unit_id}.parquet"

    def finished(self) -> set[str]:
        if not self.units.is_dir():
            return set()
        return {p.stem for p in self.units.glob("*.parquet")}

    def write_unit(self, unit_id: str, frame, metadata: dict) -> None:
        write_parquet(frame, self.unit_path(unit_id), metadata)

    def finalize(self, unit_ids: list[str], metadata: dict) -> Path:
        """Write results.parquet from the unit files once; later calls leave it as it is."""
        import pandas as pd

        if self.results.exists():
            return self.results
        frames = [pd.read_parquet(self.unit_path(u)) for u in unit_ids]
        combined = pd.concat(frames, ignore_index=True).drop(columns=list(METADATA_COLUMNS))
        return write_parquet(combined, self.results, metadata)


def load_results(paths):
    """Rows from results files, run folders (results.parquet, else the finished unit files) or a
    folder of runs; one DataFrame."""
    import pandas as pd

    files: list[Path] = []
    for raw in paths:
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
            raise GumbenchError(f"{raw}: not a results file or run folder (expected results.parquet or units/*.parquet)")
    if not files:
        raise GumbenchError("no results to read")
    for f in files:
        read_metadata(f)
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
