"""The check that decides whether a contrastive variant learns (and is ranked) or is a gradient-path
demonstration only: the t interval of the last eval accuracy over runs against chance 1 / (1 + N), and collapse."""

import pandas as pd
import pytest

from gumbench.benchmarks.training.learning import GRADIENT_PATH_ONLY, chance_accuracy, learning_check
from gumbench.intervals import t_quantile


def rows(label, accuracies, perplexity=20.0, collapse=False, identical=0.0):
    """Two evaluations per seed; only the last one (step 10) counts."""
    out = []
    for seed, accuracy in enumerate(accuracies):
        for step, value in ((5, 0.0), (10, accuracy)):
            out.append({"label": label, "seed": seed, "step": step, "eval_accuracy": value,
                        "eval_code_perplexity": perplexity, "eval_used_fraction": 0.05, "eval_collapse": collapse,
                        "eval_identical_distractors": identical})
        out.append({"label": label, "seed": seed, "step": 11, "eval_accuracy": float("nan")})  # not evaluated
    return out


def test_chance_is_one_in_one_plus_the_distractors():
    assert chance_accuracy(10) == 1 / 11 and chance_accuracy(1) == 0.5


def test_interval_over_runs_decides_and_collapse_vetoes():
    frame = pd.DataFrame(
        rows("good", [0.15, 0.17, 0.16, 0.18, 0.14])
        + rows("noisy", [0.05, 0.2, 0.09, 0.15, 0.06])
        + rows("collapsed", [0.15, 0.17, 0.16, 0.18, 0.14], perplexity=2.0, collapse=True)
        + rows("ties", [0.15, 0.17, 0.16, 0.18, 0.14], identical=0.6)
    )
    check = learning_check(frame, negatives=10, codes=640).set_index("label")
    good = check.loc["good"]
    half = t_quantile(0.975, 4) * pd.Series([0.15, 0.17, 0.16, 0.18, 0.14]).std() / 5**0.5
    assert good.runs == 5 and good.steps == 10 and good.eval_accuracy == pytest.approx(0.16)
    assert good.eval_accuracy_low == pytest.approx(0.16 - half)
    assert good.eval_accuracy_high == pytest.approx(0.16 + half)
    assert good.learns and good.reason == "" and good.above_chance_runs == 5
    assert good.used_codes == pytest.approx(0.05 * 640) and good.code_perplexity == 20.0
    noisy = check.loc["noisy"]  # mean 0.11 above chance, but its interval reaches below 1/11
    assert noisy.eval_accuracy > 1 / 11 and noisy.eval_accuracy_low < 1 / 11
    assert not noisy.learns and noisy.reason.startswith(GRADIENT_PATH_ONLY) and "not above chance" in noisy.reason
    assert noisy.above_chance_runs == 2
    for label, causes in (("collapsed", "(5 to a code perplexity <= 2 in some group, 0 with"),
                          ("ties", "(0 to a code perplexity <= 2 in some group, 5 with at least half")):
        assert not check.loc[label].learns and f"5 of 5 runs collapsed {causes}" in check.loc[label].reason
