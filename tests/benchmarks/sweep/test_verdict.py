"""Verdicts: intervals across seeds, ties only where the Welch interval reaches 0, degenerate results
(shrinking, collapsed, diverged) named and ranked after every healthy one."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gumbench.benchmarks.sweep.verdict import (
    COLLAPSED,
    DIVERGED,
    GRADIENT_MEASURE,
    MISSES,
    NO_BETTER_THAN_ZERO,
    SHRINKS,
    compare,
    gradstats_outcomes,
    training_outcomes,
    verdict,
)


def scores(table: dict[str, list[float]], warnings: dict[str, str] | None = None, task="t"):
    warnings = warnings or {}
    return pd.DataFrame([{"kind": "gradstats", "task": task, "label": label, "estimator_name": label.split("[")[0],
                          "repetition": i, "score": v, "warning": warnings.get(label, ""), "measure": "m"}
                         for label, values in table.items() for i, v in enumerate(values)])


def test_intervals_are_t_intervals_across_seeds():
    values = [1.0, 1.3, 0.8, 1.1]
    row = compare(scores({"a": values})).iloc[0]
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert row["n"] == 4 and row["mean"] == pytest.approx(1.05)
    assert (row["low"], row["high"]) == pytest.approx((1.05 - half, 1.05 + half))


def test_beats_only_when_the_welch_interval_excludes_a_tie():
    compared = compare(scores({"best": [1.0, 1.1, 0.9], "close": [1.05, 1.2, 0.95], "far": [3.0, 3.1, 2.9]}))
    assert dict(zip(compared["label"], compared["standing"])) == {"best": "best", "close": "tied", "far": "worse"}
    # the same difference decided by hand: Welch's t statistic against its quantile
    t = stats.ttest_ind([1.05, 1.2, 0.95], [1.0, 1.1, 0.9], equal_var=False)
    assert t.pvalue > 0.05
    assert stats.ttest_ind([3.0, 3.1, 2.9], [1.0, 1.1, 0.9], equal_var=False).pvalue < 0.05


def test_one_seed_tells_nothing_apart():
    compared = compare(scores({"a": [1.0], "b": [5.0]}))
    assert list(compared["standing"]) == ["best", "tied"]
    assert math.isnan(compared["low"].iloc[0])


def test_a_degenerate_result_ranks_after_healthy_ones_and_is_named_when_it_would_have_won():
    compared = compare(scores({"shrinker": [0.5, 0.5, 0.5], "ok": [1.0, 1.1, 0.9], "bad": [9.0, 9.0, 9.1]},
                              warnings={"shrinker": SHRINKS, "bad": SHRINKS}))
    assert list(compared["label"]) == ["ok", "shrinker", "bad"]
    assert list(compared["standing"]) == ["best", "degenerate", "degenerate"]
    answer = verdict(compared).iloc[0]
    assert answer["best"] == ["ok 1 [0.752, 1.25]"]
    assert answer["warnings"] == ["shrinker: shrinks the gradient", "1 more degenerate (shrinks the gradient)"]
    assert answer["degenerate"] == 2 and not answer["no_better_than_zero"]  # what the report's one-line verdict shows


def gradstats_rows(unit, relative_bias, snr, total_variance=1.0, exact_norm=2.0, mse=1.0):
    return [
        {"unit_id": unit, "metric": m, "value": v}
        for m, v in (
            ("relative_bias", relative_bias),
            ("snr", snr),
            ("total_variance", total_variance),
            ("exact_norm", exact_norm),
            ("mse", mse),
        )
    ]


def test_shrinking_the_gradient_is_a_mean_near_zero_or_a_short_mean_with_a_relative_bias_of_09():
    # exact norm 2, total variance 1: the mean estimate's norm is the SNR
    frame = pd.DataFrame(gradstats_rows("healthy", 0.3, 1.0) + gradstats_rows("biased short", 0.95, 0.9)
                         + gradstats_rows("biased long", 0.95, 1.0) + gradstats_rows("tiny mean", 0.5, 0.1)
                         + gradstats_rows("edge", 0.89, 0.21))
    found = gradstats_outcomes(frame)
    assert found["warning"].to_dict() == {"biased short": SHRINKS, "biased long": MISSES, "edge": "", "healthy": "",
                                          "tiny mean": SHRINKS}
    assert found["score"]["healthy"] == pytest.approx(1.0 / 4)


def test_a_mean_norm_row_replaces_the_snr_of_a_deterministic_estimator():
    # variance 0, so no SNR: the stored mean norm decides (1.8 of 2: not shrinking, but relative bias 1: misses)
    rows = gradstats_rows("deterministic", 1.0, float("nan"), total_variance=0.0) + [
        {"unit_id": "deterministic", "metric": "mean_norm", "value": 1.8}]
    assert gradstats_outcomes(pd.DataFrame(rows))["warning"]["deterministic"] == MISSES
    rows[-1]["value"] = 0.1
    assert gradstats_outcomes(pd.DataFrame(rows))["warning"]["deterministic"] == SHRINKS


def training_rows(unit, losses, perplexities=(5.0, 6.0), identical=None, reconstruction=0.5):
    rows = [{"unit_id": unit, "step": s, "metric": "loss", "value": v} for s, v in enumerate(losses)]
    rows += [{"unit_id": unit, "step": len(losses) - 1, "metric": f"eval_code_perplexity_g{g}", "value": p}
             for g, p in enumerate(perplexities)]
    rows.append({"unit_id": unit, "step": len(losses) - 1, "metric": "eval_reconstruction", "value": reconstruction})
    if identical is not None:
        rows.append(
            {"unit_id": unit, "step": len(losses) - 1, "metric": "loss_identical_distractors", "value": identical}
        )
    return rows


def test_collapse_and_divergence_are_found_in_training_rows():
    frame = pd.DataFrame(
        training_rows("healthy", [3.0, 2.0, 1.0])
        + training_rows("one group", [3.0, 2.0, 1.0], (2.0, 40.0))
        + training_rows("distractors", [3.0, 1.0, 0.1], identical=0.8)
        + training_rows("nan", [3.0, float("nan"), 1.0])
        + training_rows("exploded", [1.0, 50.0, 11.0])
    )
    found = training_outcomes(frame)["warning"].to_dict()
    assert found == {
        "healthy": "",
        "one group": COLLAPSED,
        "distractors": COLLAPSED,
        "nan": DIVERGED,
        "exploded": DIVERGED,
    }


def test_a_gradient_question_no_estimator_wins_against_zero_says_so():
    rows = scores({"a": [1.5, 1.6, 1.4], "b": [3.0, 3.1, 2.9]}).assign(measure=GRADIENT_MEASURE)
    assert verdict(compare(rows)).iloc[0]["warnings"] == [NO_BETTER_THAN_ZERO]
    rows = scores({"a": [0.5, 0.6, 0.4]}).assign(measure=GRADIENT_MEASURE)
    assert verdict(compare(rows)).iloc[0]["warnings"] == []
