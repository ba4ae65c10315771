"""Export the rungs a laddered sweep run has reached and their orderings, as committable files:

    python scripts/ladder_rungs.py CONFIG RUN_FOLDER OUT_FOLDER

writes OUT_FOLDER/rungs.csv (every evaluation row of finished units and of the checkpoints of unfinished
ones: ``gumbench.benchmarks.sweep.rungs.rung_rows``), OUT_FOLDER/orderings.csv (per estimator pair and rung,
the difference of the mean final eval reconstruction with Welch's 95% interval, wins on k of n seeds,
and whether the ordering is settled: ``gumbench.benchmarks.sweep.ladder.ladder_orderings``, with the
ladder of CONFIG, the run's config, whose hash must be the one in the run folder's name) and
OUT_FOLDER/rungs.json (the command, the run folder, the commit, the time, and the step each unit had
reached). Used for results/images/fashion-vae-paper/ while its runs
train across sessions (docs/sweeps.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(config_path: str, run: str, out: str) -> None:
    from gumbench.benchmarks.sweep.config import config_hash, expand_units, load_config
    from gumbench.benchmarks.sweep.ladder import config_ladders, ladder_orderings
    from gumbench.benchmarks.sweep.rungs import rung_rows
    from gumbench.files import write_csv, write_json
    from gumbench.provenance import git_commit

    run_folder, out_folder = Path(run), Path(out)
    config = load_config(config_path)
    if f"-{config_hash(config)}-" not in run_folder.name:
        sys.exit(f"{run_folder} is not a run of {config_path} (config hash {config_hash(config)})")
    rows = rung_rows(run_folder)
    units, _ = expand_units(config)
    orderings = ladder_orderings(rows, rungs=config_ladders(units))
    write_csv(rows, out_folder / "rungs.csv")
    write_csv(orderings, out_folder / "orderings.csv")
    reached = rows.drop_duplicates("unit_id")[["estimator", "repetition", "reached", "source"]]
    write_json(out_folder / "rungs.json", {
        "command": f"python scripts/ladder_rungs.py {config_path} {run} {out}",
        "run_folder": str(run_folder), "git_commit": git_commit(), "written": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                             time.gmtime()),
        "config": config, "reached": reached.to_dict("records"),
    })
    print(f"{out_folder}: {len(rows)} rows of {len(reached)} units; orderings.csv, rungs.json")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
