"""Write the table of tests/benchmarks/test_throughput.py's gumbench-versus-plain-loop comparison from
pytest-benchmark's JSON:

    pytest tests/benchmarks/test_throughput.py -o addopts="" --benchmark-only \
        --benchmark-json results/throughput/benchmark.json
    python scripts/throughput_table.py results/throughput/benchmark.json
    # writes results/throughput/versus-loop.{csv,md} and scaling.{csv,md}

Times are medians over the interleaved rounds. The loops draw fewer estimates than gumbench; their
time is scaled per estimate to gumbench's count ("per N estimates"). Variances: value ± one standard
error (gumbench: its jackknife interval's half-width / t; the others: delete-a-group jackknife).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import typer

# The targets: times faster than the per-sample loop, by what one estimate draws, and than Storchastic.
FULL_NOISE = ("st-gumbel", "soft-gumbel")  # a Gumbel vector per sample
LOOP_TARGET_RAO, LOOP_TARGET_FULL, LOOP_TARGET_ONE, STORCH_TARGET = 30, 50, 100, 500


def loop_target(estimator: str) -> int:
    if estimator.startswith("gumbel-rao"):
        return LOOP_TARGET_RAO
    return LOOP_TARGET_FULL if estimator.split("[")[0] in FULL_NOISE else LOOP_TARGET_ONE


def rows(report: dict) -> list[dict]:
    out = []
    for bench in report["benchmarks"]:
        info = bench["extra_info"]
        if info.get("comparison") != "versus-loop":
            continue
        n = info["gumbench_samples"]
        ms = {"gumbench": 1e3 * statistics.median(info["seconds"]["gumbench"])}
        for side in ("loop", "storchastic"):
            if side in info["seconds"]:
                ms[side] = 1e3 * statistics.median(info["seconds"][side]) * n / info["loop_samples"]
        var, err, agree = info["total_variance"], info["relative_error_of_mean"], info["agreement"]
        row = {
            "estimator": info["estimator"],
            "task": info["task"],
            "shape": "x".join(map(str, info["shape"])),
            "estimates": n,
            "loop_estimates_per_round": info["loop_samples"],
            "rounds": info["rounds"],
            "gumbench_ms": ms["gumbench"],
            "loop_ms": ms["loop"],
            "loop_over_gumbench": ms["loop"] / ms["gumbench"],
            "storchastic_ms": ms.get("storchastic"),
            "storchastic_over_gumbench": ms["storchastic"] / ms["gumbench"] if "storchastic" in ms else None,
            "loop_target": loop_target(info["estimator"]),
            "storchastic_target": STORCH_TARGET if "storchastic" in ms else None,
        }
        row["meets_targets"] = bool(
            row["loop_over_gumbench"] >= row["loop_target"]
            and (row["storchastic_over_gumbench"] is None or row["storchastic_over_gumbench"] >= STORCH_TARGET)
        )
        for side in ("gumbench", "loop", "storchastic"):
            row[f"{side}_variance"] = var.get(side, {}).get("value")
            row[f"{side}_variance_se"] = var.get(side, {}).get("se")
            row[f"{side}_mean_relative_error"] = err.get(side)
        for side in ("loop", "storchastic"):
            row[f"{side}_variance_agrees"] = agree[side]["within"] if side in agree else None
        row.update(
            {
                "storchastic_note": info["storchastic"],
                "load_before": " ".join(f"{x:.2f}" for x in info["load_before"]),
                "load_after": " ".join(f"{x:.2f}" for x in info["load_after"]),
                "machine": info["machine"],
            }
        )
        out.append(row)
    return out


def fmt(x, spec="{:.3g}") -> str:
    return "" if x is None or (isinstance(x, float) and x != x) else spec.format(x)


VERSUS_LOOP_HEADER = [
    "estimator",
    "task (G x V)",
    "gumbench ms",
    "loop ms (scaled)",
    "loop / gumbench (target)",
    "storchastic ms (scaled)",
    "storch / gumbench (target)",
    "var gumbench ± se",
    "var loop ± se",
    "var storch ± se",
    "agree (loop, storch)",
    "load 1-min before/after",
]


def markdown(frame: pd.DataFrame, source: str) -> str:
    """versus-loop.md: one table row per benchmark, then the notes on the protocol and the measures."""
    lines = ["| " + " | ".join(VERSUS_LOOP_HEADER) + " |", "|" + "---|" * len(VERSUS_LOOP_HEADER)]
    lines += ["| " + " | ".join(versus_loop_cells(r)) + " |" for r in frame.itertuples()]
    return "\n".join(lines) + "\n\n" + "\n\n".join(versus_loop_notes(frame, source)) + "\n"


def versus_loop_cells(r) -> list[str]:
    """One benchmark's cells under VERSUS_LOOP_HEADER (Storchastic's left blank, or its note, where it did not run)."""
    agree = ", ".join(
        "" if a is None or a != a else ("yes" if a else "NO")
        for a in (r.loop_variance_agrees, r.storchastic_variance_agrees)
    )
    return [
        f"`{r.estimator}`",
        f"{r.task} ({r.shape})",
        fmt(r.gumbench_ms, "{:.0f}"),
        fmt(r.loop_ms, "{:.0f}"),
        f"{fmt(r.loop_over_gumbench, '{:.1f}x')} ({r.loop_target}x)",
        fmt(r.storchastic_ms, "{:.0f}"),
        f"{fmt(r.storchastic_over_gumbench, '{:.1f}x')} ({STORCH_TARGET}x)"
        if r.storchastic_ms == r.storchastic_ms and r.storchastic_ms is not None
        else "",
        f"{fmt(r.gumbench_variance)} ± {fmt(r.gumbench_variance_se, '{:.2g}')}",
        f"{fmt(r.loop_variance)} ± {fmt(r.loop_variance_se, '{:.2g}')}",
        f"{fmt(r.storchastic_variance)} ± {fmt(r.storchastic_variance_se, '{:.2g}')}"
        if r.storchastic_variance == r.storchastic_variance and r.storchastic_variance is not None
        else r.storchastic_note,
        agree,
        f"{r.load_before.split()[0]} / {r.load_after.split()[0]}",
    ]


def versus_loop_notes(frame: pd.DataFrame, source: str) -> list[str]:
    """The paragraphs under the table: source and machine, the protocol, the variance columns, Storchastic's
    notes, and the mean estimates' relative errors where Storchastic ran."""
    first = frame.iloc[0]
    notes = [
        f"From `{source}` (`python scripts/throughput_table.py {source}`). Machine: {first.machine}.",
        f"Each row is one benchmark: {first.rounds} interleaved rounds (order reversed every other round); gumbench "
        f"draws {first.estimates:,} estimates per round, the per-sample loop and Storchastic "
        f"{first.loop_estimates_per_round:,}, and their times are scaled per estimate to {first.estimates:,} (median "
        "round). gumbench's time includes its exact gradient by enumeration and the statistics; the loops' only the "
        "draws and backwards.",
        "Variances: total variance (trace of the covariance of one estimate) ± one standard error; the loops' pooled "
        "over the rounds. agree: |difference from gumbench| <= 4 combined standard errors (asserted for the loop, and "
        "for Storchastic where no note below says its method differs).",
    ]
    storch_notes = sorted({(r.estimator, r.storchastic_note) for r in frame.itertuples() if r.storchastic_note})
    notes += [f"Storchastic, `{e}`: {note}." for e, note in storch_notes]
    errors = [
        f"`{r.estimator}` ({r.shape}) {r.storchastic_mean_relative_error:.2f} "
        f"(gumbench {r.gumbench_mean_relative_error:.2f}, loop {r.loop_mean_relative_error:.2f})"
        for r in frame.itertuples()
        if r.storchastic_mean_relative_error == r.storchastic_mean_relative_error
        and r.storchastic_mean_relative_error is not None
    ]
    notes.append(
        "‖mean estimate - exact gradient‖ / ‖exact gradient‖ (bias plus sampling noise: gumbench's over "
        f"{first.estimates:,} estimates, the others' over {first.rounds * first.loop_estimates_per_round:,}) "
        "where Storchastic ran: "
        + "; ".join(errors)
        + "."
    )
    return notes


def scaling_rows(report: dict) -> list[dict]:
    """One row per (estimator, V) of the scaling benchmarks: median time, time per element (estimates x V),
    its ratio to the estimator's best, and the worst growth from any smaller V (per element here over
    per element there: above 1 where time grows faster than V)."""
    out = []
    for bench in report["benchmarks"]:
        info = bench["extra_info"]
        if info.get("comparison") != "scaling":
            continue
        sizes = sorted(int(v) for v in info["seconds"])
        per_element = {
            v: 1e9 * statistics.median(info["seconds"][str(v)]) / (info["samples"] * info["groups"] * v) for v in sizes
        }
        best = min(per_element.values())
        for i, v in enumerate(sizes):
            out.append(
                {
                    "estimator": info["estimator"],
                    "categories": v,
                    "groups": info["groups"],
                    "estimates": info["samples"],
                    "ms": 1e3 * statistics.median(info["seconds"][str(v)]),
                    "ns_per_element": per_element[v],
                    "per_element_over_best": per_element[v] / best,
                    "growth_over_linear": max([per_element[v] / per_element[u] for u in sizes[:i]], default=None),
                    "load_before": " ".join(f"{x:.2f}" for x in info["load_before"]),
                    "load_after": " ".join(f"{x:.2f}" for x in info["load_after"]),
                    "machine": info["machine"],
                }
            )
    return out


def scaling_markdown(frame: pd.DataFrame, source: str) -> str:
    sizes = sorted(frame.categories.unique())
    header = ["estimator", *(f"V = {v:,}" for v in sizes), "worst growth / linear", "load 1-min before/after"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for estimator, group in frame.groupby("estimator", sort=False):
        group = group.set_index("categories")
        cells = [f"{group.ns_per_element[v]:.1f} ({group.per_element_over_best[v]:.2f})" for v in sizes]
        first = group.iloc[0]
        lines.append("| " + " | ".join([f"`{estimator}`", *cells, f"{group.growth_over_linear.max():.2f}",
                                         f"{first.load_before.split()[0]} / {first.load_after.split()[0]}"]) + " |")
    first = frame.iloc[0]
    return (
        "\n".join(lines)
        + "\n\n"
        + "\n\n".join(
            [
                f"From `{source}` (`python scripts/throughput_table.py {source}`). Machine: {first.machine}.",
                f"Nanoseconds per element (estimates x categories: {first.estimates:,} estimates of one group of V "
                "categories, median of the rounds, the sizes alternating in order), and in brackets over the "
                "estimator's best. Worst growth / linear: the largest ratio of the time per element at a V to that at "
                "any smaller V (1 is linear growth; below 1 the fixed cost per call and per row is spread over more "
                "elements).",
            ]
        )
        + "\n"
    )


def main(
    report: Path,
    out: Path = typer.Option(None, help="Folder for versus-loop.{csv,md} and scaling.{csv,md}; default: the report's."),
) -> None:
    out = out or report.parent
    data = json.loads(report.read_text())
    frame = pd.DataFrame(rows(data))
    if frame.empty:
        raise SystemExit(f"{report}: no versus-loop benchmarks")
    frame.to_csv(out / "versus-loop.csv", index=False)
    (out / "versus-loop.md").write_text(markdown(frame, str(report)))
    typer.echo(f"wrote {out / 'versus-loop.csv'} and {out / 'versus-loop.md'}")
    scaling = pd.DataFrame(scaling_rows(data))
    if not scaling.empty:
        scaling.to_csv(out / "scaling.csv", index=False)
        (out / "scaling.md").write_text(scaling_markdown(scaling, str(report)))
        typer.echo(f"wrote {out / 'scaling.csv'} and {out / 'scaling.md'}")


if __name__ == "__main__":
    typer.run(main)
