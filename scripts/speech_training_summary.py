"""The speech training runs under results/speech and their one-row-per-run summary:

    python scripts/speech_training_summary.py record results/speech/training-wav2vec2.timings.json -- \\
        train -t wav2vec2 -e st-gumbel ... --steps 300 --seed 0 -o results/speech/training-wav2vec2.csv
    python scripts/speech_training_summary.py summarize     # writes results/speech/training-summary.csv

``record`` runs one ``gumbench`` command (the arguments after ``--``) in this process, exactly as the
command line would, and writes a JSON file beside its CSV: the command, the code version, the
command's wall time and, per estimator, the wall time of its training run and the 1-minute load
average read when that run ended. Neither can be recovered from the CSV afterwards.

``summarize`` derives training-summary.csv from the training CSVs and those JSON files: one row per
(run, estimator), in file and then estimator order; ``*_first20`` and ``*_last20`` average the first
and last 20 steps, ``dead_codes`` is the last step's count, ``eval_*`` the last evaluation's value;
a column a run does not have is left empty.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import List

import typer

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "results" / "speech"
# the runs the summary covers, in its row order (the fairseq-values run is quoted on its own)
RUNS = ("training-wav2vec2", "training-wav2vec2-variant-vq-wav2vec", "training-logmel-vqvae")
COLUMNS = [
    "task",
    "estimator",
    "wall_seconds",
    "load_average_1min",
    "step_seconds_sum",
    "loss_first20",
    "loss_last20",
    "code_perplexity_last20",
    "used_fraction_last20",
    "dead_codes",
    "eval_code_perplexity",
    "loss_contrastive_last20",
    "loss_accuracy_last20",
    "loss_identical_distractors_last20",
    "prob_perplexity_last20",
    "loss_reconstruction_last20",
    "eval_reconstruction",
]
LAST20 = ["loss", "code_perplexity", "used_fraction", "loss_contrastive", "loss_accuracy", "loss_identical_distractors",
          "prob_perplexity", "loss_reconstruction"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])


def _option(argv: list[str], *names: str) -> str | None:
    """The value of the last ``--name VALUE`` / ``--name=VALUE`` among ``names`` in ``argv``."""
    value = None
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif name.startswith("--") and arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
    return value


@app.command()
def record(
    timings: Path = typer.Argument(..., help="JSON file to write (beside the command's CSV)."),
    command: List[str] = typer.Argument(..., help="The gumbench command and its arguments, after --."),
) -> None:
    """Run one gumbench command; write its wall time and each training run's wall time and load average."""
    import gumbench
    import gumbench.benchmarks.training as training
    from gumbench.cli import main
    from gumbench.provenance import code_hash, git_commit

    runs = []
    original = training.train

    def timed(task, estimator, **kwargs):  # the CLI imports train from this module when it runs
        start = time.perf_counter()
        frame = original(task, estimator, **kwargs)
        runs.append({"estimator": str(frame["label"].iloc[0]), "spec": str(frame["estimator"].iloc[0]),
                     "wall_seconds": time.perf_counter() - start, "load_average_1min": os.getloadavg()[0]})
        return frame

    training.train = timed
    began, start = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    status = main(list(command))
    wall = time.perf_counter() - start
    if status:
        raise typer.Exit(status)
    task = _option(command, "--task", "-t")
    import torch

    report = {"command": ["gumbench", *command], "task": task, "gumbench": gumbench.__version__,
              "commit": git_commit(), "code": code_hash(), "started": began, "wall_seconds": wall,
              "torch_threads": torch.get_num_threads(), "load_average_end": list(os.getloadavg()), "runs": runs}
    timings.write_text(json.dumps(report, indent=1) + "\n")
    typer.echo(f"wrote {timings}")


def _summary_rows(csv: Path, timing: dict) -> list[dict]:
    import pandas as pd

    frame = pd.read_csv(csv)
    runs = {run["estimator"]: run for run in timing["runs"]}
    rows = []
    for label, part in frame.groupby("label", sort=False):
        part = part.sort_values("step")
        run = runs[label]
        mean = lambda column, rows: float(rows[column].mean()) if column in rows else float("nan")  # noqa: E731
        last = lambda column: (
            float(part[column].dropna().iloc[-1]) if column in part and part[column].notna().any() else float("nan")
        )  # noqa: E731
        row = {
            "task": timing["task"],
            "estimator": label,
            "wall_seconds": round(run["wall_seconds"], 1),
            "load_average_1min": round(run["load_average_1min"], 2),
            "step_seconds_sum": round(float(part["step_seconds"].sum()), 1),
            "loss_first20": mean("loss", part.head(20)),
            "dead_codes": last("dead_codes"),
            "eval_code_perplexity": last("eval_code_perplexity"),
            "eval_reconstruction": last("eval_reconstruction"),
        }
        row.update({f"{column}_last20": mean(column, part.tail(20)) for column in LAST20})
        rows.append(row)
    return rows


@app.command()
def summarize(
    folder: Path = typer.Option(SPEECH, "--folder", help="Folder of the training CSVs and their .timings.json."),
    output: Path = typer.Option(SPEECH / "training-summary.csv", "--output", "-o"),
) -> None:
    """Write the one-row-per-run summary of the speech training runs."""
    import pandas as pd

    rows = []
    for name in RUNS:
        csv, timings = folder / f"{name}.csv", folder / f"{name}.timings.json"
        if not timings.exists():
            raise typer.BadParameter(f"{timings} is missing: run the training command through `record`")
        rows += _summary_rows(csv, json.loads(timings.read_text()))
    pd.DataFrame(rows, columns=COLUMNS).to_csv(output, index=False)
    typer.echo(f"wrote {output}")


if __name__ == "__main__":
    sys.exit(app())
