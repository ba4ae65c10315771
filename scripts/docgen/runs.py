"""Blocks on the kernel's CPU-side audit, the reference run (verdict, timing) and throughput."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from docgen.common import between, claim, decimals, percent, prose, results, table
from gumbench.registry import parse_spec

# --- the kernel's CPU-side audit ---------------------------------------------------------------

def kernel_rao_cost(root: Path) -> str:
    audit = results(root, "kernel/ptx_audit.csv")
    rao = audit[(audit.kernel == "rao") & (audit.dtype == "fp32")].set_index("K")
    small, large = rao.loc[320], rao.loc[8192]
    claim(
        bool(small.within_budget) and 10 * small.instr_per_element > small.budget,
        "one draw memory-bound, ten compute-bound",
    )
    return prose(
        f"Cost: {small.instr_per_element} SASS instructions per element per draw at K = 320 "
        f"({small.mufu_per_element} MUFU), {large.instr_per_element} at K = 8,192, against a budget of {small.budget} "
        f"for the one pass of memory the backward moves (fp32; `results/kernel/ptx_audit.csv`). One draw is "
        f"memory-bound; M draws cost M times the compute, so M = 10 is compute-bound (about "
        f"{10 * small.instr_per_element / small.budget:.1f}x the memory time in fp32, by this count) while its memory "
        f"traffic stays that of M = 1."
    )


def kernel_bytes(root: Path) -> str:
    """The byte table of results/kernel/ptx_audit.md."""
    text = (root / "results" / "kernel" / "ptx_audit.md").read_text().split("# Bytes per logit", 1)[1]
    lines = [line for line in text.splitlines() if line.startswith("|")][2:]  # no header, no rule
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return table(
        ["path", "kernels", "bytes / element", "how"], [[p, k, f"{float(b):.0f}", how] for p, k, b, how in rows]
    )


def kernel_sass(root: Path) -> str:
    audit = results(root, "kernel/ptx_audit.csv")
    single = audit[(audit.K == 320) & audit.kernel.isin(["fwd", "bwd"])]
    rows = [
        [
            f"{kernel}, {mode}",
            *(g.set_index("dtype").loc[d, c] for d in ("fp32", "bf16") for c in ("instr_per_element", "budget")),
        ]
        for (kernel, mode), g in single.groupby(["kernel", "mode"], sort=False)
    ]
    header = f"kernel ({single.arch.iloc[0]}, K = 320, tiles {single.tiles.iloc[0]})"
    fitting = single[(single.dtype == "fp32") & single.within_budget]
    fits = ", ".join(f"{r.kernel} {r.mode}" for r in fitting.itertuples())
    over = (
        audit[~audit.within_budget]
        .groupby(["dtype", "kernel", "mode"], sort=False)
        .K.apply(lambda k: ", ".join(f"{x:,}" for x in k))
    )
    over = "; ".join(f"{dtype} {kernel} {mode} (K = {ks})" for (dtype, kernel, mode), ks in over.items())
    return (
        table([header, "fp32 instr / element", "fp32 budget", "bf16 instr / element", "bf16 budget"], rows)
        + "\n\n"
        + prose(
            f"In fp32 at K = 320, {fits} fit the budget, at "
            f"{between(fitting.instr_per_element / fitting.budget, percent, '%')} of it. Over budget, and so to be "
            f"expected below 80% of copy bandwidth (`results/kernel/ptx_audit.csv`, "
            f"all sizes): {over}."
        )
    )


def reference_run(root: Path) -> Path:
    """The committed reference run of the default sweep: results/reference/default-<config>-<code>/."""
    runs = sorted((root / "results" / "reference").glob("default-*/results.parquet"))
    if len(runs) != 1:
        raise SystemExit(f"expected one committed reference run under results/reference/, found {len(runs)}")
    return runs[0].parent


def sweep_verdict(root: Path) -> str:
    """The recommendations and the per-question verdict of the reference run's report, and where they come from."""
    from gumbench.benchmarks.sweep.recommend import recommendations
    from gumbench.benchmarks.sweep.report import recommendations_markdown
    from gumbench.benchmarks.sweep.store import load_results
    from gumbench.benchmarks.sweep.verdict import answers as verdict_answers
    from gumbench.benchmarks.sweep.verdict import ladder_verdicts

    run = reference_run(root)
    frame = load_results([run])
    rows, compared, answers = verdict_answers(frame)
    grad, train = answers[answers["kind"] == "gradstats"], answers[answers["kind"] == "training"]
    note = indecater_note(frame, answers)
    settled = int((~train["settled"].str.contains("not settled") & (train["settled"] != "")).sum())
    instances = between(grad[grad["paired"]]["instances"], lambda x: f"{x:.0f}")
    seeds = between(train["instances"], lambda x: f"{x:.0f}") if len(train) else "no"
    return (
        prose(
            f"What the default sweep says (the committed reference run, `{run.relative_to(root)}/report.md`: "
            f"{frame['unit_id'].nunique():,} units; every gradient question with random instances on {instances} "
            f"independently seeded instances, every training question on {seeds} seeds). First, per use case, the "
            "estimator to use at equal loss evaluations: the lowest mean rank over the use case's gradient questions "
            "and instances (autorank's Friedman test and Nemenyi critical difference), with the runner-up, on how "
            "many question-instances the recommendation beat it, and the questions whose own best differs." + note
        )
        + "\n\n" + recommendations_markdown(recommendations(rows, compared, answers, ladder_verdicts(frame))) + "\n\n"
        + prose(
            f"Every one of the {len(answers)} questions follows in the run's `report.md`: gradient questions ranked by "
            "MSE / ‖grad‖² at equal loss evaluations (the best per estimate and at equal wall time beside it), "
            "training questions by their final value at equal bits per frame; geometric means over instances "
            "(seeds) with 95% t intervals of the mean log, those tied with the best, on how many instances the best "
            f"beat the runner-up, and, for training, whether a budget ladder settles it ({settled} of "
            f"{len(train)} training questions are settled at this budget)."
        )
    )


def indecater_note(frame, answers) -> str:
    """Why IndeCateR leads the toys even at equal loss evaluations (checked against the rows), or nothing."""
    grad = answers[answers["kind"] == "gradstats"]
    toys = grad[grad["task"].map(lambda t: parse_spec(t).name in ("categorical", "polynomial", "bernoulli"))]
    led = toys["best"].map(lambda names: bool(names) and names[0].startswith("indecater ")).sum()
    if not led:
        return ""
    exact = frame[(frame["estimator_name"] == "indecater")
                  & frame["task_name"].isin(["categorical", "polynomial", "bernoulli"])
                  & (frame["metric"] == "total_variance")]
    claim(bool((exact["value"] < 1e-9).all()), "IndeCateR's variance on the toys is zero up to rounding")
    return (f" IndeCateR leads {led} of the {len(toys)} toy questions even at equal loss evaluations, although it "
            "evaluates the loss G x V times per estimate: every toy's loss is a sum over its groups, where its "
            "estimate is the exact gradient whatever the draw (total variance below 1e-9 on every instance), so "
            "averaging the others' cheaper estimates cannot catch up; on losses that couple the groups "
            "(vq-distance) it is one unbiased estimator among others (docs/estimators.md).")


def sweep_timing(root: Path) -> str:
    """How long the reference run of the default sweep took, where, under which load."""
    run = reference_run(root)
    records = [(path, json.loads(path.read_text())) for path in sorted((run / "timings").glob("*.json"))]
    path, record = next(((p, r) for p, r in reversed(records) if r["units_run"] == r["units"]), (None, None))
    if record is None:
        raise SystemExit(f"{run}/timings holds no record of a complete run")
    minutes, seconds = divmod(round(record["wall_seconds"]), 60)
    return prose(
        f"The default sweep ran its {record['units']:,} units in {minutes} min {seconds} s with `-j {record['jobs']}` "
        f"on {record['device']}, load average {record['load_average_before'][0]:.1f} at the start and "
        f"{record['load_average_after'][0]:.1f} at the end (`{path.relative_to(root)}`)."
    )


def throughput(root: Path) -> str:
    """gumbench against the per-sample loop and Storchastic, and time against V, from results/throughput/."""
    frame = results(root, "throughput/versus-loop.csv")
    scaling = results(root, "throughput/scaling.csv")
    claim(frame.machine.nunique() == 1 and scaling.machine.nunique() == 1, "one machine per table")
    times = lambda x: f"{x:,.0f}x"  # noqa: E731
    kinds = []
    for target, group in frame.groupby("loop_target", sort=False):
        names = ", ".join(f"`{e}`" for e in dict.fromkeys(group.estimator))
        kinds.append(f"{between(group.loop_over_gumbench, times)} for {names} (target {target}x)")
    storch = frame.dropna(subset=["storchastic_over_gumbench"])
    missed = [f"`{r.estimator}` ({r.shape})" for r in frame.itertuples() if not r.meets_targets]
    loads = [
        float(x.split()[0])
        for x in pd.concat([frame.load_before, frame.load_after, scaling.load_before, scaling.load_after])
    ]
    growth = scaling.groupby("estimator", sort=False).growth_over_linear.max()
    summary = prose(
        f"Measured in one run on {frame.machine.iloc[0]} (1-minute load average {between(loads, decimals(1))}; tables "
        f"`results/throughput/versus-loop.md` and `scaling.md`), at K = 64 and at G = 4, V = 8 "
        f"(DisARM: 8 binary variables), "
        "`gradient_statistics` was faster than the per-sample loop by "
        + "; ".join(kinds)
        + f"; and faster than Storchastic by {between(storch.storchastic_over_gumbench, times)} (target "
        f"{storch.storchastic_target.iloc[0]:.0f}x). "
        + (f"Below a target: {', '.join(missed)}. " if missed else "Every row met its targets. ")
        + f"From V = {scaling.categories.min():,} to {scaling.categories.max():,} the time per element never grew "
        f"faster than {growth.max():.2f}x linear ({', '.join(f'`{e}` {g:.2f}' for e, g in growth.items())}; "
        "target 1.5); it is highest at the smallest V, where the fixed cost of a call is spread over the "
        "fewest elements."
    )
    return summary
