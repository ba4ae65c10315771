"""Compare two result frames of the same sweep, exactly, leaving out timings and version columns:

    python scripts/compare_runs.py BEFORE AFTER   (results files or run folders)

Used to show that a refactor changed no number: results/refactor-equivalence/ holds the
config and the frame written before it.
"""

import sys

import pandas as pd

from gumbench.benchmarks.sweep.store import load_results

TIMING = ["step_seconds", "peak_memory_mb"]
META = ["gumbench_version", "git_commit", "code_hash", "torch_version", "triton_version", "device", "torch_threads"]


def comparable(path):
    frame = load_results([path])
    frame = frame[~frame["metric"].isin(TIMING)].drop(columns=[c for c in META if c in frame])
    return frame.sort_values(["unit_id", "step", "metric"]).reset_index(drop=True)


def main(before_path: str, after_path: str) -> None:
    before, after = comparable(before_path), comparable(after_path)
    print(
        f"before: {len(before)} rows, {before['unit_id'].nunique()} units; "
        f"after: {len(after)} rows, {after['unit_id'].nunique()} units"
    )
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    timing = load_results([before_path])["metric"].isin(TIMING).sum()
    print(
        f"equal: every column, exactly (check_exact=True); {timing} timing rows (step_seconds, peak_memory_mb) "
        f"and the version/commit/device columns left out"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
