"""vq-wav2vec's committed runs: each estimator trained from each seed (an independent run: the training
instance), ``-j`` runs at a time in separate processes of one torch thread each, into one CSV:

    nice -n 10 python scripts/vq_wav2vec_runs.py -e st-gumbel -e vq-commitment --seeds 5 --steps 800 -j 2 \\
        -o results/speech/training-vq-wav2vec.csv

The CSV holds the rows of :func:`gumbench.benchmarks.training.train` (estimator, then seed order); beside it,
``<name>.timings.json`` records the command, the code version, the command's wall time and, per run, its
wall time and the 1-minute load average read when it ended (neither can be recovered from the CSV). Runs go
seed by seed, the estimators alternating, and each finished run is kept in ``<name>.parts/`` (its rows and
timing) until all are done: a rerun of the same command skips the runs kept there, then assembles.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import List

import typer

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


def _part(parts: Path, index: int) -> tuple[Path, Path]:
    return parts / f"run-{index:03d}.csv", parts / f"run-{index:03d}.json"


def _run(task: str, estimator: str, seed: int, steps: int, eval_every: int, threads: int, part: tuple[Path, Path]):
    """One training run in this process, kept as ``part`` (its rows; its wall seconds and the 1-minute load
    average at its end)."""
    import torch

    from gumbench.benchmarks.training import train

    torch.set_num_threads(threads)
    start = time.perf_counter()
    frame = train(task, estimator, steps=steps, seed=seed, eval_every=eval_every)
    frame.to_csv(part[0], index=False)
    timing = {"estimator": str(frame["label"].iloc[0]), "spec": str(frame["estimator"].iloc[0]), "seed": seed,
              "wall_seconds": time.perf_counter() - start, "load_average_1min": os.getloadavg()[0]}
    part[1].write_text(json.dumps(timing) + "\n")


@app.command()
def main(
    estimator: List[str] = typer.Option(["st-gumbel", "vq-commitment"], "--estimator", "-e"),
    task: str = typer.Option("vq-wav2vec", "--task", "-t", help="The vq-wav2vec task's spec."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds 0 .. seeds - 1 per estimator.", min=1),
    steps: int = typer.Option(800, "--steps", min=1),
    eval_every: int = typer.Option(100, "--eval-every", min=1),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1),
    threads: int = typer.Option(1, "--threads", min=1),
    output: Path = typer.Option(..., "--output", "-o"),
) -> None:
    """Train every (estimator, seed); write the CSV and its .timings.json."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    import gumbench
    from gumbench.provenance import code_hash, git_commit

    began, start = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    units = [(e, s) for s in range(seeds) for e in estimator]  # seed by seed: both variants advance together
    parts = output.with_suffix(".parts")
    parts.mkdir(exist_ok=True)
    todo = [(i, e, s) for i, (e, s) in enumerate(units) if not _part(parts, i)[1].exists()]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run, task, e, s, steps, eval_every, threads, _part(parts, i)) for i, e, s in todo]
        for future in futures:
            future.result()
    order = sorted(range(len(units)), key=lambda i: (estimator.index(units[i][0]), units[i][1]))
    frame = pd.concat([pd.read_csv(_part(parts, i)[0]) for i in order], ignore_index=True)
    frame.to_csv(output, index=False)
    runs = [json.loads(_part(parts, i)[1].read_text()) for i in order]
    report = {"command": ["python", "scripts/vq_wav2vec_runs.py", *sys.argv[1:]], "task": "vq-wav2vec",
              "gumbench": gumbench.__version__, "commit": git_commit(), "code": code_hash(), "started": began,
              "wall_seconds": time.perf_counter() - start, "jobs": jobs, "torch_threads": threads,
              "load_average_end": list(os.getloadavg()), "runs": runs}
    timings = output.with_suffix(".timings.json")
    timings.write_text(json.dumps(report, indent=1) + "\n")
    for i in order:
        for path in _part(parts, i):
            path.unlink()
    parts.rmdir()
    typer.echo(f"wrote {output} and {timings}")


if __name__ == "__main__":
    app()
