"""The report's first screen: per use case, the estimator to use at equal cost, from autorank's ranking of the
per-instance scores, its evidence, the runner-up and where the answer changes."""

import numpy as np
import pandas as pd

from gumbench.benchmarks.sweep.recommend import USE_CASES, candidate_rows, recommendations
from gumbench.benchmarks.sweep.verdict import GRADIENT_MEASURE, SHRINKS, compare, verdict


def outcome_rows(scores: dict[str, dict[str, list[float]]], warnings=None, costs=None):
    """Outcome rows of gradient questions: {task: {label: per-instance scores}} (no bias: all variance)."""
    warnings, costs = warnings or {}, costs or {}
    return pd.DataFrame([
        {"kind": "gradstats", "task": task, "label": label, "estimator_name": label.split("[")[0], "repetition": i,
         "instance": i, "paired": True, "score": v, "warning": warnings.get((task, label), ""),
         "measure": GRADIENT_MEASURE, "vanishing": False, "cost": costs.get(label, 1.0), "seconds": 1e-3,
         "bias2": 0.0, "variance": v}
        for task, table in scores.items() for label, values in table.items() for i, v in enumerate(values)])


def make(scores, **kwargs):
    rows = outcome_rows(scores, **kwargs)
    compared = compare(rows)
    return rows, compared, verdict(compared)


RNG = np.random.default_rng(0)


def noisy(level: float, n: int = 5) -> list[float]:
    return list(level * np.exp(RNG.normal(0, 0.05, n)))


def test_the_estimator_best_on_every_question_is_recommended_with_its_evidence():
    scores = {task: {"reinmax": noisy(0.1), "st-gumbel": noisy(0.5), "gumbel-rao": noisy(0.3)}
              for task in ("categorical", "polynomial", "categorical[loss=linear]")}
    table = recommendations(*make(scores)).set_index("use case")
    row = table.loc[USE_CASES[0].name]
    assert row["recommended"] == "reinmax" and row["runner_up"] == "gumbel-rao"
    assert "beat gumbel-rao on 15 of 15, lost on 0" in row["evidence"]
    assert row["changes"] == "reinmax is the best on every question"
    # no VQ question in these results: the other use cases say so rather than recommend
    assert table.loc[USE_CASES[1].name, "recommended"] == "not measured in these results"


def test_a_question_with_another_best_is_named_where_the_answer_changes():
    scores = {task: {"reinmax": noisy(0.1), "st-gumbel": noisy(0.5), "gumbel-rao": noisy(0.3)}
              for task in ("categorical", "polynomial")}
    scores["polynomial[p=3]"] = {"reinmax": noisy(0.5), "st-gumbel": noisy(0.1), "gumbel-rao": noisy(0.3)}
    row = recommendations(*make(scores)).iloc[0]
    assert row["recommended"] == "reinmax" and row["changes"] == "polynomial[p=3]: st-gumbel"


def test_a_degenerate_result_ranks_last_on_its_question_whatever_its_score():
    scores = {task: {"a": noisy(0.2), "b": noisy(0.3), "c": noisy(0.4)} for task in ("categorical", "polynomial")}
    warnings = {(task, "a"): SHRINKS for task in scores}  # a shrinks the gradient: its low MSE is no merit
    rows, compared, answers = make(scores, warnings=warnings)
    tidy = candidate_rows(rows, USE_CASES[0])
    assert (tidy[tidy["label"] == "a"]["score"] > tidy[tidy["label"] != "a"]["score"].max()).all()
    assert recommendations(rows, compared, answers).iloc[0]["recommended"] == "b"


def test_equal_cost_decides_the_recommendation():
    # per estimate the costly one is best; at equal loss evaluations (32 x) the cheap one averages 32 estimates
    scores = {task: {"indecater": noisy(0.05), "reinmax": noisy(0.5), "st-gumbel": noisy(0.9)}
              for task in ("categorical", "polynomial")}
    row = recommendations(*make(scores, costs={"indecater": 32.0})).iloc[0]
    assert row["recommended"] == "reinmax"
