"""``gumbench train``: a model with a discrete bottleneck trained with each estimator."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gumbench.commands.options import DATA_DIR_HELP, MAX_MEMORY, THREADS, writable_file
from gumbench.threads import use_threads


def train_command(
    task: str = typer.Option("gmm-vq", "--task", "-t", help="Training task (see `gumbench list training`)."),
    estimator: Optional[List[str]] = typer.Option(
        None, "--estimator", "-e", help="Estimator, repeatable; default: st-gumbel and vq-commitment."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: the task's)."),
    seed: int = typer.Option(0, "--seed"),
    eval_every: int = typer.Option(25, "--eval-every", help="Evaluate every N steps (and at the last step)."),
    audio_dir: Optional[Path] = typer.Option(
        None, "--audio-dir", help="Folder of WAV/FLAC for the speech tasks (default: the vendored corpus)."
    ),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", callback=writable_file, help="Write the per-step rows as CSV."
    ),
    threads: int = THREADS,
    max_memory: Optional[str] = MAX_MEMORY,
) -> None:
    """Train a model with a discrete bottleneck; per-step loss terms, utilization, gradient norms, time."""
    import pandas as pd

    from gumbench.benchmarks.training import make_training_task, train, training_table
    from gumbench.estimators import make_estimator
    from gumbench.registry import parse_spec

    use_threads(threads)
    spec = parse_spec(task)
    if audio_dir is not None:
        spec.params["audio_dir"] = str(audio_dir)
    if data_dir is not None:
        spec.params["data_dir"] = str(data_dir)
    built_task = make_training_task(spec)
    built = [make_estimator(e) for e in (estimator or ["st-gumbel", "vq-commitment"])]
    from gumbench.footprint import check_training, use_limit

    with use_limit(max_memory) as limit:
        check_training(built_task, built, limit)  # refused before the first run starts
        frame = pd.concat(
            [train(built_task, est, steps=steps, seed=seed, eval_every=eval_every) for est in built], ignore_index=True
        )
    if output is not None:
        from gumbench.files import write_csv

        write_csv(frame, output)
    from gumbench.benchmarks.training.bits import bits_per_frame

    typer.echo(training_table(frame, built_task.spec, {est.label: bits_per_frame(built_task, est) for est in built}))
    for (label, trained), _ in frame.groupby(["label", "task"], sort=False):
        if trained != built_task.spec:  # a quantizer with an implicit code space sized the bottleneck
            typer.echo(f"{label} sized the bottleneck from its code space: {trained}")
