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
    outcomes,
    training_outcomes,
    verdict,
)
from gumbench.benchmarks.sweep.verdict import answers as verdict_answers


def scores(table: dict[str, list[float]], warnings: dict[str, str] | None = None, task="t", paired=False, cost=None,
           bias2=None):
    warnings, cost = warnings or {}, cost or {}
    return pd.DataFrame([{"kind": "gradstats", "task": task, "label": label, "estimator_name": label.split("[")[0],
                          "repetition": i, "instance": i, "paired": paired, "score": v,
                          "warning": warnings.get(label, ""), "measure": "m", "vanishing": False,
                          "cost": cost.get(label, 1.0), "seconds": 1e-3 * cost.get(label, 1.0),
                          "bias2": (bias2 or {}).get(label, float("nan")),
                          "variance": v - (bias2 or {}).get(label, float("nan"))}
                         for label, values in table.items() for i, v in enumerate(values)])


def test_intervals_are_t_intervals_of_the_mean_log_over_instances():
    values = [1.0, 1.3, 0.8, 1.1]
    row = compare(scores({"a": values})).iloc[0]
    logs = np.log(values)
    half = stats.t.ppf(0.975, 3) * np.std(logs, ddof=1) / 2
    assert row["n"] == 4 and row["mean"] == pytest.approx(math.exp(logs.mean()))
    assert (row["low"], row["high"]) == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)))
    assert 0 < row["low"] < row["mean"] < row["high"], "a positive measure's interval stays positive"


def test_beats_only_when_the_welch_interval_of_the_logs_excludes_a_tie():
    best, close, far = [1.0, 1.1, 0.9], [1.05, 1.2, 0.95], [3.0, 3.1, 2.9]
    compared = compare(scores({"best": best, "close": close, "far": far}))
    assert dict(zip(compared["label"], compared["standing"])) == {"best": "best", "close": "tied", "far": "worse"}
    # the same differences decided by hand: Welch's t test on the logs
    assert stats.ttest_ind(np.log(close), np.log(best), equal_var=False).pvalue > 0.05
    assert stats.ttest_ind(np.log(far), np.log(best), equal_var=False).pvalue < 0.05


def test_shared_instances_are_compared_paired_and_counted_k_of_n():
    # b is 10% worse than a on every instance, but the instances differ 10-fold: unpaired, a tie; paired, worse
    a = [1.0, 10.0, 100.0, 3.0, 30.0]
    b = [1.1 * v for v in a]
    unpaired = compare(scores({"a": a, "b": b}))
    paired = compare(scores({"a": a, "b": b}, paired=True))
    assert list(unpaired["standing"]) == ["best", "tied"]
    assert list(paired["standing"]) == ["best", "worse"]
    assert (paired["wins"].iloc[1], paired["of"].iloc[1]) == (0, 5), "b beat a on 0 of 5 instances"
    answer = verdict(paired).iloc[0]
    assert answer["evidence"] == "a beat b on 5 of 5 instances" and answer["instances"] == 5


def test_equal_loss_evaluations_average_the_cheap_estimates():
    # per estimate, "costly" (32 evaluations, MSE 0.1, no bias) beats "cheap" (1 evaluation, MSE 0.5, no bias); at
    # equal evaluations cheap averages 32 estimates: 0.5 / 32 < 0.1, so the ranking turns around
    rows = scores({"costly": [0.1, 0.12, 0.09], "cheap": [0.5, 0.55, 0.45], "biased": [0.5, 0.55, 0.45]},
                  cost={"costly": 32.0}, bias2={"costly": 0.0, "cheap": 0.0, "biased": 0.4}, paired=True)
    compared = compare(rows).set_index("label")
    assert compared.loc["cheap", "rank"] == 1 and compared.loc["costly", "rank"] == 2
    assert compared.loc["cheap", "mean"] == pytest.approx(math.exp(np.log(np.array([0.5, 0.55, 0.45]) / 32).mean()))
    assert compared.loc["cheap", "estimates"] == 32 and compared.loc["costly", "estimates"] == 1
    # a bias does not average away: 0.4 + 0.1 / 32 per instance (the first)
    assert compared.loc["biased", "per_estimate_mean"] == pytest.approx(compared.loc["cheap", "per_estimate_mean"])
    assert compared.loc["biased", "mean"] > 0.4
    assert compared.loc["costly", "rank_per_estimate"] == 1
    answer = verdict(compare(rows)).iloc[0]
    assert answer["view"] == "equal loss evaluations" and answer["best_per_estimate"] == "costly"


def test_a_vanishing_instance_is_named_and_left_out():
    rows = scores({"a": [1.0, 1.2, 0.9], "b": [2.0, 2.2, 1.9]}, paired=True)
    rows.loc[rows["instance"] == 1, "vanishing"] = True
    rows.loc[rows["instance"] == 1, "score"] = float("nan")
    compared = compare(rows)
    assert list(compared["n"]) == [2, 2]
    warnings = verdict(compared).iloc[0]["warnings"]
    assert warnings == ["exact gradient vanishes on instance 1: left out of the ranking"]


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
    assert answer["best"][0].startswith("ok 0.997 [")
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


def test_a_tasks_gradient_path_demonstrations_are_named_and_never_ranked():
    # vq-wav2vec's variants do not learn at this scale (TrainingTask.unranked): their rows are shown, never ranked
    rows = pd.DataFrame(training_rows("kmeans", [3.0, 2.0, 1.0], reconstruction=0.1)
                        + training_rows("gumbel", [3.0, 2.0, 1.0], reconstruction=0.2))
    ident = {"kmeans": "vq-commitment", "gumbel": "st-gumbel"}
    rows = rows.assign(kind="training", task="vq-wav2vec", label=rows["unit_id"].map(ident),
                       estimator_name=rows["unit_id"].map(ident), repetition=0)
    compared = compare(outcomes(rows))
    assert set(compared["standing"]) == {"unranked"}
    answer = verdict(compared).iloc[0]
    assert answer["best"] == [] and answer["runner_up"] == ""
    assert any(w.startswith("vq-commitment left out of the ranking: gradient-path demonstration only")
               for w in answer["warnings"])


def ladder_frame(final: dict[str, list[float]], rungs: dict[str, dict[int, list[float]]]):
    """Training rows: the main 150-step units of each label (final reconstruction per seed) and a ladder's units
    (the same runs evaluated at 150, 600 and 2,400 steps)."""
    rows = []
    for label, values in final.items():
        for seed, v in enumerate(values):
            unit = f"{label}-{seed}"
            rows += [{**r, "task": "gmm-vq", "estimator": label, "label": label, "estimator_name": label,
                      "kind": "training", "repetition": seed, "instance": seed, "ladder": None}
                     for r in training_rows(unit, [3.0, 2.0, 1.0], reconstruction=v)]
    for label, by_step in rungs.items():
        for seed in range(3):
            rows += [{"unit_id": f"{label}-ladder-{seed}", "step": step, "metric": metric, "value": value,
                      "task": "gmm-vq", "estimator": label, "label": label, "estimator_name": label,
                      "kind": "training", "repetition": seed, "instance": seed, "ladder": "150,600,2400"}
                     for step, values in by_step.items()
                     for metric, value in (("eval_reconstruction", values[seed]), ("loss", 1.0))]
    return pd.DataFrame(rows)


def test_a_training_ordering_is_stated_only_where_the_ladders_last_two_rungs_agree():
    final = {"a": [1.0, 1.1, 0.9], "b": [2.0, 2.1, 1.9]}
    agree = {"a": {150: [1.0, 1.1, 0.9], 600: [0.5, 0.55, 0.45], 2400: [0.3, 0.32, 0.28]},
             "b": {150: [2.0, 2.1, 1.9], 600: [1.0, 1.1, 0.9], 2400: [0.8, 0.82, 0.78]}}
    flip = {"a": agree["a"], "b": {**agree["b"], 2400: [0.1, 0.11, 0.09]}}
    for rungs, expected in ((agree, "ladder: a < b at 600 and 2,400 steps"),
                            (flip, "ladder: not settled at this budget (a < b at 600 steps, b < a at 2,400)")):
        frame = ladder_frame(final, rungs)
        _, compared, answers = verdict_answers(frame)
        assert list(compared["n"]) == [3, 3], "the ladder's units are not ranked with the budget's"
        assert answers.iloc[0]["settled"] == expected and answers.iloc[0]["evidence"].endswith(expected)
    # without a ladder for the pair: not settled
    _, _, answers = verdict_answers(ladder_frame(final, {}).assign(ladder=None))
    assert answers.iloc[0]["settled"] == "not settled at this budget (2 steps): no budget ladder for this pair"
