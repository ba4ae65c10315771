"""Running a sweep: every unit of a config on a backend, its rows into the store, resumable.

Each unit's tidy rows are written as their own parquet file the moment it finishes, so a sweep
killed at any point and started again runs only what is missing; when every unit is there, the
run's single results file is written once (:mod:`gumbench.benchmarks.sweep.store`).
"""

from __future__ import annotations

import copy
import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gumbench.benchmarks.sweep.backends import check_backend, check_execution, execute
from gumbench.benchmarks.sweep.config import DEFAULT_CONFIG, Unit, config_hash, expand_units
from gumbench.benchmarks.sweep.store import RunStore, run_metadata
from gumbench.benchmarks.training.checkpoint import DEFAULT_EVERY, Checkpointing, check_every
from gumbench.errors import GumbenchError
from gumbench.files import write_json
from gumbench.footprint import memory_limit
from gumbench.registry import parse_spec
from gumbench.threads import torch_threads, use_threads

ROW_COLUMNS = ("step", "metric", "value", "low", "high")


@dataclass(frozen=True)
class SweepRun:
    """A finished sweep: its folder in the store, its units and the pairs left out. It is a
    path-like of its folder, so ``load_results([run])`` and ``build_report(run, ...)`` take it."""

    store: RunStore
    units: tuple[Unit, ...]
    skipped: tuple[str, ...]

    @property
    def folder(self) -> Path:
        return self.store.folder

    def __fspath__(self) -> str:
        return str(self.folder)

    @property
    def results(self) -> Path:
        """The run's results.parquet."""
        return self.store.results

    def frame(self):
        """The run's rows (a DataFrame)."""
        import pandas as pd

        return pd.read_parquet(self.results)


def run_unit(unit: Unit, threads: int | None = None, checkpoints: Path | None = None,
             checkpoint_every: float = DEFAULT_EVERY):
    """Run one unit with ``threads`` torch threads (:mod:`gumbench.threads`); returns its tidy long-format
    rows (a DataFrame), which record the thread count. Importable by workers. A training unit given a
    ``checkpoints`` folder checkpoints there every ``checkpoint_every`` seconds as ``<unit id>.pt`` and resumes
    from that file when it is there (:mod:`gumbench.benchmarks.training.checkpoint`)."""
    use_threads(threads)
    import torch

    from gumbench.estimators import make_estimator

    est = make_estimator(unit.estimator)
    base = {
        "kind": unit.kind,
        "task": unit.task,
        "task_name": parse_spec(unit.task).name,
        "estimator": unit.estimator,
        "estimator_name": est.name,
        "label": est.label,
        "tau": est.temperature,
        "repetition": unit.repetition,
        "instance": unit.repetition,  # gradstats: the problem instance (seed + r); training: the seeded run
        "seed": unit.seed,
        "unit_id": unit.unit_id,
        "torch_threads": torch.get_num_threads(),
    }
    if unit.lr is not None:  # a column only where a config set it: rows of units without one stay as they were
        base["lr"] = unit.lr
    if unit.optimizer is not None:  # likewise
        base["optimizer"] = unit.optimizer
    if unit.ladder:  # a budget ladder's unit (its rungs, comma-separated): read by the ladder verdict, not ranked
        base["ladder"] = ",".join(map(str, unit.ladder))
    if unit.kind == "gradstats":
        return _gradstats_rows(unit, est, base)
    return _training_rows(unit, est, base, checkpoints, checkpoint_every)


@functools.lru_cache(maxsize=16)
def cached_problem(spec: str):
    """The problem of ``spec``, built once per worker process: a problem is a function of its spec, and
    its reference (2^20 antithetic pairs for quantizer-smoothed) is computed once per instance."""
    from gumbench.benchmarks.problems import make_problem

    return make_problem(spec)


def _gradstats_rows(unit: Unit, est, base: dict):
    import pandas as pd

    from gumbench.benchmarks.gradstats import problem_statistics
    from gumbench.benchmarks.problems import instance_spec

    problem = cached_problem(instance_spec(unit.task, unit.repetition))
    reference = problem.reference()
    if problem.vanishes(reference):  # reported, not measured: relative statistics against it would be noise
        return pd.DataFrame([{**base, "step": -1, "metric": metric, "value": value, "low": float("nan"),
                              "high": float("nan")}
                             for metric, value in (("vanishing_gradient", 1.0),
                                                   ("exact_norm", float(reference.gradient.norm())),
                                                   ("loss_evaluations", float(problem.loss_evaluations(est))))])
    stats = problem_statistics(est, problem, unit.budget, unit.seed)
    rows = []
    for metric in stats.SCALARS:
        interval = getattr(stats, metric)
        if interval is not None:
            rows.append(
                {
                    **base,
                    "step": -1,
                    "metric": metric,
                    "value": interval.value,
                    "low": interval.low,
                    "high": interval.high,
                }
            )
    extra = {
        "expected_loss": stats.expected_loss,
        "exact_norm": stats.exact_norm,
        "mean_norm": float(stats.mean_gradient.norm()),
        "loss_evaluations": float(stats.loss_evaluations),
        "seconds_per_estimate": stats.seconds_per_estimate,
        "vanishing_gradient": 0.0,
    }
    if stats.reference_error is not None:
        extra["reference_error"] = stats.reference_error
    for metric, value in extra.items():
        rows.append({**base, "step": -1, "metric": metric, "value": value, "low": float("nan"), "high": float("nan")})
    return pd.DataFrame(rows)


def _training_rows(unit: Unit, est, base: dict, checkpoints: Path | None = None, every: float = DEFAULT_EVERY):
    import pandas as pd

    from gumbench.benchmarks.training import make_training_task, train
    from gumbench.benchmarks.training.bits import bits_per_frame

    callback, probes = None, []
    task = make_training_task(unit.task)  # built once: the run and its bits per frame share it
    bits = {**base, "step": unit.budget, "metric": "bits_per_frame", "value": bits_per_frame(task, est),
            "low": float("nan"), "high": float("nan")}  # a constant of the unit, at its last step
    if unit.gradient_checkpoints:
        from gumbench.benchmarks.probes import gradient_probe
        from gumbench.benchmarks.problems.elbo import checked_study
        from gumbench.benchmarks.sweep.config import GRADIENT_POINTS, GRADIENT_SAMPLES

        task, est = checked_study(task, est)
        callback, probes = gradient_probe(task, est, unit.gradient_checkpoints, points=GRADIENT_POINTS,
                                          samples=GRADIENT_SAMPLES, seed=unit.seed % (2**31))
    checkpoint = None if checkpoints is None else Checkpointing(checkpoint_path(checkpoints, unit), every, base, probes)
    frame = train(task, est, steps=unit.budget, seed=unit.seed, eval_every=unit.eval_every, lr=unit.lr,
                  optimizer=unit.optimizer or "adam", callback=callback, eval_steps=unit.ladder, checkpoint=checkpoint)
    numeric = [
        c
        for c in frame.columns
        if c not in ("task", "estimator", "label", "seed", "step") and pd.api.types.is_numeric_dtype(frame[c])
    ]
    long = frame.melt(id_vars=["step"], value_vars=numeric, var_name="metric", value_name="value").dropna(
        subset=["value"]
    )
    long["value"] = long["value"].astype(float)
    for key, value in base.items():
        long[key] = value
    long["low"] = float("nan")
    long["high"] = float("nan")
    if probes:  # per checkpoint, the means over the probed images
        means = pd.DataFrame(probes).groupby("step")[["relative_bias", "relative_std", "cosine"]].mean()
        extra = pd.DataFrame([{**base, "step": int(step), "metric": f"elbo_gradient_{metric}", "value": float(value),
                               "low": float("nan"), "high": float("nan")}
                              for step, row in means.iterrows() for metric, value in row.items()])
        long = pd.concat([long[list(base) + list(ROW_COLUMNS)], extra], ignore_index=True)
    long = pd.concat([long[list(base) + list(ROW_COLUMNS)], pd.DataFrame([bits])], ignore_index=True)
    return long[list(base) + list(ROW_COLUMNS)].reset_index(drop=True)


def checkpoint_path(folder: Path, unit: Unit) -> Path:
    """Where a training unit of a run keeps its checkpoint."""
    return Path(folder) / f"{unit.unit_id}.pt"


def _write_timings(store, metadata, run, total, began, load_before, backend, jobs, threads) -> None:
    write_json(
        store.folder / "timings" / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json",
        {
            "units_run": run,
            "units": total,
            "wall_seconds": round(time.perf_counter() - began, 1),
            "backend": backend,
            "jobs": jobs,
            "torch_threads": threads,
            "device": metadata["device"],
            "git_commit": metadata["git_commit"],
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    )


class Progress:
    """A rich progress bar on a terminal (done of total, elapsed, ETA, current unit); plain lines otherwise."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.done, self.enabled = total, 0, enabled
        self.stream = stream or sys.stderr
        self.bar = None
        if enabled and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=Console(file=self.stream),
            )
            self.task = self.bar.add_task("", total=total)

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()

    def note(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def advance(self, unit: Unit, seconds: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=unit.describe())
        elif self.enabled:
            print(f"[{self.done}/{self.total}] {unit.describe()} ({seconds:.1f} s)", file=self.stream, flush=True)


DEFAULT_OUT = Path("runs")


def run_sweep(config: dict | None = None, *, out: str | Path = DEFAULT_OUT, backend: str = "local", jobs: int = 1,
              scheduler: str | None = None, slurm_partition: str | None = None, slurm_time: int | None = None,
              progress: bool = True, threads: int | None = None, connect_timeout: float | None = None,
              max_memory: int | str | None = None, checkpoint_every: float = DEFAULT_EVERY) -> SweepRun:
    """Run (or resume) a sweep into ``out``/<name>-<config hash>-<code hash>/; returns the finished run.

    Only this run's rows come back: units already in the folder count when they read back whole with
    this run's identity (same config, same code), others are set aside and run again; a second sweep
    on the same folder is refused while this one holds it. Each unit computes with ``threads`` torch
    threads (default: $GUMBENCH_THREADS, else 1 per worker), recorded in the run metadata and per row.

    Training units checkpoint every ``checkpoint_every`` seconds into the run folder's ``checkpoints/`` (deleted once
    the unit's rows are stored), and a rerun resumes each unfinished one from its checkpoint, bit-identically.

    Everything that can be refused is refused before the run folder is made: the config, every unit (sizes, pairs,
    peak memory against ``max_memory``) and the backend (answering within ``connect_timeout`` s: check_backend)."""
    config = copy.deepcopy(DEFAULT_CONFIG if config is None else config)
    check_execution(backend, jobs, slurm_partition, slurm_time, scheduler, connect_timeout)
    if not isinstance(out, (str, os.PathLike)):
        raise GumbenchError(f"out must be a folder path, got {type(out).__name__}")
    threads, checkpoint_every = torch_threads(threads), check_every(checkpoint_every)
    units, skipped = expand_units(config, max_memory=memory_limit(max_memory))
    check_backend(backend, scheduler=scheduler, slurm_partition=slurm_partition, slurm_time=slurm_time,
                  connect_timeout=connect_timeout)
    metadata = run_metadata(config, config_hash(config)) | {"torch_threads": threads}
    ids = [u.unit_id for u in units]
    began, load_before = time.perf_counter(), os.getloadavg()
    with (
        RunStore(Path(out), str(config.get("name", "sweep")), metadata) as store,
        Progress(len(units), enabled=progress) as bar,
    ):
        finished = store.finished(ids, note=bar.note)
        # repetition-major: every estimator's first repetition before any second, so that a long sweep stopped
        # early (a session's end, a time limit) has comparable runs of every estimator; results do not depend on order
        todo = sorted((u for u in units if u.unit_id not in finished), key=lambda u: u.repetition)
        bar.note(f"sweep {store.folder}: {len(units)} units, {len(units) - len(todo)} already done"
                 + (f", {len(skipped)} pairs left out (e.g. {skipped[0]})" if skipped else ""))
        bar.done = len(units) - len(todo)
        start = time.perf_counter()
        backend_options = {"scheduler": scheduler, "slurm_partition": slurm_partition, "slurm_time": slurm_time,
                           "connect_timeout": connect_timeout}
        work = functools.partial(run_unit, checkpoints=store.folder / "checkpoints", checkpoint_every=checkpoint_every)
        for unit, rows in execute(work, todo, backend=backend, jobs=jobs, slurm_folder=store.folder / "slurm",
                                  threads=threads, **backend_options):
            store.write_unit(unit.unit_id, rows)
            checkpoint_path(store.folder / "checkpoints", unit).unlink(missing_ok=True)
            bar.advance(unit, time.perf_counter() - start)
            start = time.perf_counter()
        store.finalize(ids, note=bar.note)
        if todo:  # how long this invocation took, on what, under which load (README's timings come from here)
            _write_timings(store, metadata, len(todo), len(units), began, load_before, backend, jobs, threads)
    return SweepRun(store, tuple(units), tuple(skipped))
