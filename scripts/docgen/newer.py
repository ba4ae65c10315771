"""Blocks on issue 26's estimators and quantizers against their predecessors, from the reference run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from docgen.common import claim, prose, table
from docgen.runs import reference_run
from gumbench.intervals import welch_difference
from gumbench.registry import parse_spec

# (new, predecessor, what the comparison is): gradient questions, per seed MSE / ||e||^2 (at equal loss
# evaluations where the costs differ: the MSE of the mean of budget / cost estimates, budget the larger cost)
GRADIENT_PAIRS = (
    ("reinmax-rao", "reinmax", "ReinMax-Rao vs ReinMax"),
    ("reinmax-cv", "reinmax", "ReinMax-CV vs ReinMax"),
    ("fogzo", "straight-through", "FOGZO vs straight-through"),
    ("relax[warmup=200]", "reinforce[baseline=loo,samples=4]", "RELAX vs REINFORCE-RLOO"),
    ("rebar[warmup=200]", "reinforce[baseline=loo,samples=4]", "REBAR vs REINFORCE-RLOO"),
    ("unordered-set", "reinforce[baseline=loo,samples=4]", "unordered set vs REINFORCE-RLOO"),
    ("diveq", "vq-commitment", "DiVeQ vs straight-through VQ"),
    ("diveq", "vq-commitment[rotation=true]", "DiVeQ vs the rotation trick"),
    ("vqbridge", "vq-commitment", "VQBridge vs straight-through VQ"),
)
# (new, predecessor): training, the final training loss
TRAINING_PAIRS = (
    ("diveq", "vq-commitment"),
    ("sf-diveq", "vq-commitment"),
    ("vqbridge", "vq-commitment"),
    ("diveq", "vq-commitment[rotation=true]"),
    ("fsp", "fsq"),
)


def _costs(labels) -> dict[str, int]:
    """Loss evaluations per estimate of each label on the toys' and problems' logits (IndeCateR aside: not compared)."""
    from gumbench.estimators import make_estimator

    return {label: make_estimator(label).loss_evaluations for label in labels}


def gradient_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Per gradient unit: task, label, seed, per-estimate MSE / ||e||^2 and the equal-cost parts (bias^2, variance)."""
    grad = frame[frame["kind"] == "gradstats"]
    wide = grad.pivot_table(index=["unit_id", "task", "label", "repetition"], columns="metric", values="value",
                            aggfunc="first").reset_index()
    norm2 = wide["exact_norm"] ** 2
    return wide.assign(score=wide["mse"] / norm2, bias2=wide["bias"] ** 2 / norm2,
                       variance=wide["total_variance"] / norm2)


def pair_outcome(scores: pd.DataFrame, task: str, new: str, old: str, costs: dict) -> str | None:
    """'lower', 'higher' or 'not resolved' for new against old on one question (Welch over seeds, at equal loss
    evaluations), None where either was not measured."""
    a, b = (scores[(scores["task"] == task) & (scores["label"] == label)] for label in (new, old))
    if a.empty or b.empty:
        return None
    budget = max(costs[new], costs[old])
    at_budget = [s["bias2"] + s["variance"] * costs[label] / budget for s, label in ((a, new), (b, old))]
    difference = welch_difference(at_budget[0], at_budget[1])
    if difference.high < 0:
        return "lower"
    if difference.low > 0:
        return "higher"
    return "not resolved"


def tally(scores: pd.DataFrame, new: str, old: str, costs: dict) -> list[str]:
    """[questions, lower, higher, not resolved] of new against old over the questions both were measured on."""
    outcomes = [pair_outcome(scores, task, new, old, costs) for task in scores["task"].unique()]
    measured = [o for o in outcomes if o is not None]
    claim(len(measured) > 0, f"the runs measure {new} beside {old}")
    return [str(len(measured))] + [str(measured.count(o)) for o in ("lower", "higher", "not resolved")]


def gradient_tally(scores: pd.DataFrame, fresh: pd.DataFrame) -> list[list[str]]:
    """Per pair: on how many questions the new estimator's equal-cost MSE is lower, higher, not resolved, on the
    reference run's instance and on the fresh instances."""
    costs = _costs({label for pair in GRADIENT_PAIRS for label in pair[:2]})
    rows = []
    for new, old, what in GRADIENT_PAIRS:
        seeds = int(scores[scores["label"] == new].groupby("task").size().max())
        rows.append([what, f"{costs[new]} vs {costs[old]}", *tally(scores, new, old, costs),
                     *tally(fresh, new, old, costs), str(seeds)])
    return rows


def training_tally(frame: pd.DataFrame) -> list[list[str]]:
    """Per training pair: on how many tasks the new quantizer's final evaluation loss is lower (Welch over seeds)."""
    train = frame[(frame["kind"] == "training") & (frame["metric"] == "loss")]
    final = train[train["step"] == train.groupby("unit_id")["step"].transform("max")]
    final = final.assign(family=final["label"].str.split("[").str[0])
    rows = []
    for new, old in TRAINING_PAIRS:
        outcomes, tasks = [], 0
        for task, here in final.groupby("task"):
            a, b = _pick(here, new)["value"], _pick(here, old)["value"]
            if a.empty or b.empty:
                continue
            tasks += 1
            d = welch_difference(a, b)
            outcomes.append("lower" if d.high < 0 else "higher" if d.low > 0 else "not resolved")
        claim(tasks > 0, f"the reference run trains {new} beside {old}")
        seeds = int(final[final["label"].str.split("[").str[0] == new].groupby("task").size().max())
        rows.append([f"`{new}` vs `{old}`", str(tasks), str(outcomes.count("lower")), str(outcomes.count("higher")),
                     str(outcomes.count("not resolved")), str(seeds)])
    return rows


def _pick(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of ``name``: by family for FSP and FSQ (their levels differ by task), else by label."""
    return rows[rows["family"] == name] if name in ("fsp", "fsq") else rows[rows["label"] == name]


def newer_findings(root: Path) -> str:
    """Where each issue-26 method lands against its predecessor in the committed reference run."""
    from gumbench.benchmarks.sweep.store import load_results

    run = reference_run(root)
    frame = load_results([run])
    (fresh_run,) = sorted((root / "results" / "newer-instances").glob("newer-instances-*"))
    fresh = gradient_scores(load_results([fresh_run]))
    seeds = set(fresh["task"].map(lambda t: parse_spec(t).params["seed"]))
    claim(seeds == {1, 2}, "the fresh instances are seeds 1 and 2")
    gradient = table(["comparison", "loss evaluations", "questions (seed 0)", "lower", "higher", "not resolved",
                      "questions (seeds 1, 2)", "lower", "higher", "not resolved", "seeds"],
                     gradient_tally(gradient_scores(frame), fresh))
    training = table(["comparison", "tasks", "lower", "higher", "not resolved", "seeds"], training_tally(frame))
    return "\n\n".join([
        prose(f"From the committed reference run (`{run.relative_to(root)}`). Gradient questions: every toy and "
              "quantizer problem of the default sweep both estimators were measured on, each on one problem instance "
              "(its seed 0), with the seeds of the draws as replicates; then the same comparisons on fresh instances, "
              "seeds 1 and 2 of `categorical`, `polynomial` and `vq-distance` in z and in the codebook "
              f"(`{fresh_run.relative_to(root)}`, `configs/newer-instances.toml`): where the two disagree, the "
              "ordering is not settled. The measure is MSE / ‖e‖² at equal loss evaluations (the MSE of the mean of "
              "budget / cost estimates, the budget the larger of the two costs); 'lower' and 'higher' are Welch 95% "
              "intervals of the difference over seeds that exclude 0, else 'not resolved'. Lower is better."),
        gradient,
        prose("Training (the default sweep's short runs: 100-150 steps, far from convergence): the final training "
              "loss, Welch 95% over seeds, per task both quantizers trained on; lower is better. FSP and FSQ share "
              "their levels on each task. No longer budget has been run, so none of these is a settled ordering:"),
        training,
    ])
