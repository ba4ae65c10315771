"""Compare two result frames of the same sweep, exactly, leaving out timings and version columns:

    python scripts/compare_runs.py BEFORE AFTER            (results files or run folders)
    python scripts/compare_runs.py BEFORE AFTER --common   (only the units BEFORE has, config hash aside;
                                                              AFTER may add units)

Used to show that a refactor changed no number: results/refactor-equivalence/ holds the
configs, the frames written before and the comparisons' output. ``--common`` is for a sweep whose
config has grown (new estimators): every unit of BEFORE must be in AFTER, with equal rows.
"""

import pandas as pd
import typer

from gumbench.benchmarks.sweep.store import load_results

TIMING = ["step_seconds", "peak_memory_mb", "seconds_per_estimate"]
META = ["gumbench_version", "git_commit", "code_hash", "torch_version", "triton_version", "device", "torch_threads"]


def comparable(path):
    frame = load_results([path])
    frame = frame[~frame["metric"].isin(TIMING)].drop(columns=[c for c in META if c in frame])
    return frame.sort_values(["unit_id", "step", "metric"]).reset_index(drop=True)


def main(before_path: str, after_path: str,
         common: bool = typer.Option(False, "--common", help="Compare only the units BEFORE has.")) -> None:
    before, after = comparable(before_path), comparable(after_path)
    print(
        f"before: {len(before)} rows, {before['unit_id'].nunique()} units; "
        f"after: {len(after)} rows, {after['unit_id'].nunique()} units"
    )
    if common:
        missing = set(before["unit_id"]) - set(after["unit_id"])
        assert not missing, f"{len(missing)} units of BEFORE are not in AFTER"
        added = after["unit_id"].nunique() - before["unit_id"].nunique()
        after = after[after["unit_id"].isin(set(before["unit_id"]))].reset_index(drop=True)
        before, after = before.drop(columns=["config_hash"]), after.drop(columns=["config_hash"])  # the config grew
        print(f"compared on BEFORE's {before['unit_id'].nunique()} units; AFTER adds {added} units")
    added_columns = sorted(set(after.columns) - set(before.columns))
    if added_columns:
        print(f"AFTER adds columns {', '.join(added_columns)}; the comparison is on BEFORE's columns")
    pd.testing.assert_frame_equal(before, after[before.columns], check_exact=True)
    timing = load_results([before_path])["metric"].isin(TIMING).sum()
    print(
        f"equal: every column, exactly (check_exact=True); {timing} timing rows ({', '.join(TIMING)}) "
        "and the version/commit/device columns left out"
    )


if __name__ == "__main__":
    typer.run(main)
