"""Checkpoints of a training run, so that a run stopped at any point resumes bit-identically.

:func:`gumbench.benchmarks.training.train` given a :class:`Checkpointing` writes, every ``every``
seconds of training (and never more than once a step), one file holding everything the rest of the
run depends on:

- the model, pickled whole (its estimator is one of its modules, so an estimator's state, including
  state made lazily during training such as EMA codebook statistics or a k-means initialization, comes
  with it), and the optimizer's ``state_dict``;
- the run's generator (every task draws its batches, masks and negatives from it, and estimators
  their noise), the process's torch, numpy and Python ``random`` states;
- the usage trackers, the previous evaluation's codes (for code churn), the step, and the rows logged
  so far (as a DataFrame per checkpoint interval, compact at 10^5 steps), and the records a step
  callback keeps (``records``: the ELBO-gradient probes of a sweep unit).

Each write is atomic (:func:`gumbench.files.write_atomic`): a run killed while writing keeps the
previous checkpoint. Given the same file again, ``train`` resumes from it and returns the rows an
uninterrupted run returns, bit for bit, except the timing and memory columns (``step_seconds``,
``peak_memory_mb``), which measure the process. The file carries the run's identity (task,
estimator, seed, steps, learning rate, optimizer, evaluation steps): a file of another run, or one that
does not read back (truncated, not a checkpoint, a newer format), is refused with one line naming it.

The files are pickles (``torch.load(weights_only=False)``): load only checkpoints you wrote. A sweep
keeps them under ``<run folder>/checkpoints/<unit id>.pt`` and deletes each once its unit's rows are
stored (:mod:`gumbench.benchmarks.sweep.runner`); :func:`read_checkpoint` reads one back for the rows
of a run that has not finished (``gumbench rungs``).
"""

from __future__ import annotations

import pickle
import random
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from gumbench.errors import GumbenchError

FORMAT = "gumbench-training-checkpoint"
VERSION = 1
DEFAULT_EVERY = 180.0  # seconds between checkpoints: a few minutes of work lost at most


@dataclass
class Checkpointing:
    """Where and how often :func:`train` checkpoints. ``meta`` is stored beside the state as given (a sweep
    stores its unit's identity there); ``records`` is a list a step callback appends to, saved with each
    checkpoint and refilled in place on resume."""

    path: Path
    every: float = DEFAULT_EVERY
    meta: dict = field(default_factory=dict)
    records: list | None = None

    def __post_init__(self):
        self.path = Path(self.path)
        self.every = check_every(self.every)


def check_every(every) -> float:
    """A checkpoint interval: seconds >= 0 (0: after every step), or one line."""
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 <= every < float("inf"):
        raise GumbenchError(f"checkpoint interval must be a number of seconds >= 0, got {every!r}")
    return float(every)


@dataclass
class RunState:
    """What changes while a run trains: restored whole from a checkpoint."""

    step: int
    model: object
    optimizer: object
    generator: object
    tracker: object
    stage_columns: object
    previous_eval: object = None
    rows: list = field(default_factory=list)


class Saver:
    """Writes ``state`` to ``checkpointing.path`` when ``every`` seconds have passed since the last write;
    resumes a state from the file if there is one."""

    def __init__(self, checkpointing: Checkpointing, identity: dict):
        self.config, self.identity = checkpointing, identity
        self.last = time.monotonic()
        self.chunks = []  # row frames of the checkpoints so far
        self.saved_rows = 0

    def maybe_save(self, state: RunState) -> None:
        if time.monotonic() - self.last >= self.config.every:
            self.save(state)
            self.last = time.monotonic()

    def save(self, state: RunState) -> None:
        import numpy as np
        import pandas as pd
        import torch

        from gumbench.files import write_atomic

        if len(state.rows) > self.saved_rows:
            self.chunks.append(pd.DataFrame(state.rows[self.saved_rows:]))
            self.saved_rows = len(state.rows)
        payload = {
            "format": FORMAT, "version": VERSION, "identity": self.identity, "meta": self.config.meta,
            "step": state.step, "model": state.model, "optimizer": state.optimizer.state_dict(),
            "generator": state.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(), "python_rng": random.getstate(), "tracker": state.tracker,
            "stage_columns": state.stage_columns, "previous_eval": state.previous_eval, "rows": self.chunks,
            "records": list(self.config.records or []),
        }
        write_atomic(self.config.path, lambda tmp: torch.save(payload, tmp))

    def resume(self, state: RunState, make_optimizer) -> RunState:
        """``state`` as the checkpoint left it (a new optimizer from ``make_optimizer(model)``), or ``state``
        itself where there is no checkpoint yet."""
        import numpy as np
        import torch

        if not self.config.path.exists():
            return state
        saved = read_checkpoint(self.config.path)
        if saved["identity"] != self.identity:
            differ = sorted(k for k in self.identity if saved["identity"].get(k) != self.identity[k])
            raise GumbenchError(f"checkpoint {self.config.path} is of another run (its {', '.join(differ)} differ); "
                                "delete it to train this run from the start")
        optimizer = make_optimizer(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        np.random.set_state(saved["numpy_rng"])
        random.setstate(saved["python_rng"])
        self.chunks, rows = saved["rows"], [r for chunk in saved["rows"] for r in chunk.to_dict("records")]
        self.saved_rows = len(rows)
        if self.config.records is not None:
            self.config.records[:] = saved["records"]
        return RunState(saved["step"], saved["model"], optimizer, state.generator, saved["tracker"],
                        saved["stage_columns"], saved["previous_eval"], rows)


CHECKPOINT_KEYS = ("identity", "meta", "step", "model", "optimizer", "generator", "rows", "records")


def read_checkpoint(path) -> dict:
    """A checkpoint's contents (see the module docstring), or one line saying why ``path`` is not one."""
    import torch

    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise GumbenchError(f"checkpoint {path} does not exist") from None
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
            AttributeError, ImportError, IndexError, TypeError) as exc:
        raise GumbenchError(f"checkpoint {path} does not read back ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); delete it to train this run "
                            "from the start") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or not all(k in saved for k in CHECKPOINT_KEYS):
        raise GumbenchError(f"{path} is not a gumbench training checkpoint; delete it to train this run from the start")
    if saved.get("version") != VERSION:
        raise GumbenchError(f"checkpoint {path} has format version {saved.get('version')!r}; this gumbench reads "
                            f"version {VERSION} (delete it to train this run from the start)")
    return saved


def checkpoint_rows(path):
    """The rows (a DataFrame, :func:`train`'s columns) a checkpoint holds, with its ``meta`` as columns."""
    import pandas as pd

    saved = read_checkpoint(path)
    rows = pd.concat(saved["rows"], ignore_index=True) if saved["rows"] else pd.DataFrame()
    for key, value in saved["meta"].items():
        if key not in rows:  # train()'s own columns (its scheduled tau) win
            rows[key] = value
    return rows
