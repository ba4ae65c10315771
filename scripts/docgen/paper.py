"""The block on the ReinMax paper's Fashion-MNIST budget (160 epochs at 8 x 4, reinmax against st-gumbel): the
rungs its runs have reached (results/images/fashion-vae-paper/, exported from the runs' checkpoints), and whether
the paper's ordering (ReinMax below ST-Gumbel) is reproduced, reversed or unresolved at each rung."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from docgen.common import prose, table

MEASURES = {"eval_negative_elbo_exact": "-ELBO, exact", "eval_nll_exact": "-log p(x), exact"}
FOLDER = Path("results/images/fashion-vae-paper")


def _cell(values: pd.Series) -> str:
    from gumbench.benchmarks.sweep.verdict import interval_text
    from gumbench.intervals import mean_interval

    if values.empty:
        return "not reached"
    return f"{interval_text(*mean_interval(values))} (n = {len(values)})"


def _outcome(reinmax: pd.Series, gumbel: pd.Series) -> str:
    """Reproduced (ReinMax lower), reversed or unresolved, by Welch's 95% interval of the difference."""
    from gumbench.intervals import welch_interval

    if len(reinmax) < 2 or len(gumbel) < 2:
        return "unresolved (fewer than 2 seeds a side)"
    diff = welch_interval((reinmax.mean(), reinmax.var(ddof=1), len(reinmax)),
                          (gumbel.mean(), gumbel.var(ddof=1), len(gumbel)))
    if diff.high < 0:
        return "reproduced"
    return "reversed" if diff.low > 0 else "unresolved (the interval of the difference reaches 0)"


def fashion_paper(root: Path) -> str:
    note = json.loads((root / FOLDER / "rungs.json").read_text())
    rows = pd.read_csv(root / FOLDER / "rungs.csv")
    rows = rows[rows["metric"].isin(MEASURES)]
    names = sorted(rows["label"].unique())
    reinmax, gumbel = (next(n for n in names if n.startswith(prefix)) for prefix in ("reinmax", "st-gumbel"))
    ladder = [int(s) for s in note["config"]["training"][0]["ladder"]]
    reached = rows.groupby(["label", "repetition"])["reached"].max()
    body = []
    for metric, measure in MEASURES.items():
        for rung in ladder:
            at = rows[(rows["metric"] == metric) & (rows["step"] == rung)]
            a, b = (at[at["label"] == name]["value"].reset_index(drop=True) for name in (reinmax, gumbel))
            body.append([measure, f"{rung:,}", _cell(a), _cell(b), _outcome(a, b)])
    final = [f"{r[0]} {r[-1]}" for r in body if r[1] == f"{ladder[-1]:,}"]
    first = [f"{r[0]} {r[-1]}" for r in body if r[1] == f"{ladder[0]:,}"]
    return (
        prose(
            f"The paper's budget: `{note['command']}` exports the evaluations the runs of "
            f"`configs/fashion-vae-paper.toml` (8 x 4, `{reinmax}` and `{gumbel}` at the short study's settings, "
            f"batch 100, {ladder[-1]:,} steps = 160 epochs, 5 seeds each, evaluated at the rungs "
            f"{', '.join(f'{s:,}' for s in ladder)}) have reached, from finished units and from the checkpoints of "
            f"unfinished ones ({note['written']}). By then the runs had trained "
            + ", ".join(f"{label} seed {rep} {steps:,} steps" for (label, rep), steps in reached.items())
            + ". The paper reports ReinMax below ST-Gumbel; per rung, means with 95% t intervals over the seeds "
            "that reached it, and the ordering Welch's 95% interval of the difference gives. At the full budget: "
            f"{'; '.join(final)}; at {ladder[0]:,} steps: {'; '.join(first)}. A later "
            "session resumes the same runs from their checkpoints (docs/sweeps.md) and this block follows."
        )
        + "\n\n"
        + table(["measure", "steps", f"`{reinmax}`", f"`{gumbel}`", "paper's ordering"], body)
    )
