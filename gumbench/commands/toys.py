"""``gumbench gradstats`` and ``gumbench optimize``: estimators on toys whose gradient is exact (by enumeration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from gumbench.commands.options import MAX_MEMORY, THREADS, writable_file
from gumbench.threads import use_threads


def gradstats_command(
    task: str = typer.Option(
        "categorical", "--task", "-t", help="Toy task, e.g. 'categorical[loss=linear]' (see `gumbench list tasks`)."
    ),
    estimator: Optional[List[str]] = typer.Option(
        None,
        "--estimator",
        "-e",
        help="Estimator name, repeatable; default: every non-VQ estimator (see `gumbench list estimators`).",
    ),
    tau: Optional[float] = typer.Option(None, "--tau", help="Temperature, applied to every estimator that has one."),
    samples: int = typer.Option(10_000, "--samples", "-s", help="Independent gradient estimates per estimator."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the estimator noise (the task's own seed is a task parameter)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON with every field instead of a table."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", callback=writable_file, help="Also write the JSON to this file."
    ),
    threads: int = THREADS,
    max_memory: Optional[str] = MAX_MEMORY,
) -> None:
    """Gradient statistics against the exact gradient (by enumeration) on a toy task."""
    from gumbench.benchmarks.gradstats import gradstats_table, run_gradstats
    from gumbench.footprint import use_limit

    use_threads(threads)
    with use_limit(max_memory) as limit:
        results = run_gradstats(task, estimator or None, tau=tau, samples=samples, seed=seed, max_memory=limit)
    payload = [r.to_dict() | {"task": results.task} for r in results.statistics]
    if output is not None:
        from gumbench.files import write_json

        write_json(output, payload, indent=1)
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        typer.echo(gradstats_table(results))


def optimize_command(
    task: str = typer.Option("polynomial[L=128]", "--task", "-t", help="Toy task whose logits are optimized."),
    estimator: Optional[List[str]] = typer.Option(
        None, "--estimator", "-e", help="Estimator, repeatable; default: every non-VQ estimator."
    ),
    steps: int = typer.Option(200, "--steps", help="Optimizer steps."),
    lr: float = typer.Option(0.1, "--lr", help="Adam learning rate."),
    batch: int = typer.Option(16, "--batch", help="Samples (estimates) averaged per step."),
    seed: int = typer.Option(0, "--seed"),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", callback=writable_file, help="Write the per-step losses as CSV."
    ),
    threads: int = THREADS,
) -> None:
    """Minimize the expected loss of a toy by gradient descent with each estimator; print the final exact losses."""
    from gumbench.benchmarks.optimize import optimize_many
    from gumbench.tables import render

    use_threads(threads)
    frame = optimize_many(task, estimator or None, steps=steps, lr=lr, batch=batch, seed=seed)
    if output is not None:
        from gumbench.files import write_csv

        write_csv(frame, output)
    rows = []
    for _, part in frame.groupby("estimator", sort=False):
        exact = part["expected_loss"]
        rows.append((part["label"].iloc[0], f"{exact.iloc[0]:.5f}", f"{exact.iloc[-1]:.5f}", f"{exact.min():.5f}"))
    typer.echo(
        render(
            f"{frame['task'].iloc[0]}: exact expected loss, {steps} steps",
            ("estimator", "start", "final", "best"),
            rows,
        )
    )
