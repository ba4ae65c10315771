"""vq-wav2vec's committed runs: each estimator trained from each seed (an independent run: the training
instance), ``-j`` runs at a time in separate processes of one torch thread each, into one CSV:

    nice -n 10 python scripts/vq_wav2vec_runs.py -e st-gumbel -e vq-commitment --seeds 5 --steps 800 -j 2 \\
        -o results/speech/training-vq-wav2vec.csv

The CSV holds the rows of :func:`gumbench.benchmarks.training.train` (estimator, then seed order); beside it,
``<name>.timings.json`` records the command, the code version, the command's wall time and, per run, its
wall time and the 1-minute load average read when it ended (neither can be recovered from the CSV).
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


def _run(task: str, estimator: str, seed: int, steps: int, eval_every: int, threads: int):
    """One training run in this process: (rows, wall seconds, 1-minute load average at its end)."""
    import torch

    from gumbench.benchmarks.training import train

    torch.set_num_threads(threads)
    start = time.perf_counter()
    frame = train(task, estimator, steps=steps, seed=seed, eval_every=eval_every)
    return frame, time.perf_counter() - start, os.getloadavg()[0]


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
    units = [(e, s) for e in estimator for s in range(seeds)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run, task, e, s, steps, eval_every, threads) for e, s in units]
        results = [future.result() for future in futures]
    frame = pd.concat([r[0] for r in results], ignore_index=True)
    frame.to_csv(output, index=False)
    runs = [{"estimator": str(r[0]["label"].iloc[0]), "spec": str(r[0]["estimator"].iloc[0]), "seed": s,
             "wall_seconds": r[1], "load_average_1min": r[2]} for (_, s), r in zip(units, results)]
    report = {"command": ["python", "scripts/vq_wav2vec_runs.py", *sys.argv[1:]], "task": "vq-wav2vec",
              "gumbench": gumbench.__version__, "commit": git_commit(), "code": code_hash(), "started": began,
              "wall_seconds": time.perf_counter() - start, "jobs": jobs, "torch_threads": threads,
              "load_average_end": list(os.getloadavg()), "runs": runs}
    timings = output.with_suffix(".timings.json")
    timings.write_text(json.dumps(report, indent=1) + "\n")
    typer.echo(f"wrote {output} and {timings}")


if __name__ == "__main__":
    app()
