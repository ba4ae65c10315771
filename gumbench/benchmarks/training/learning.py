"""Does a contrastive training run learn? The check that decides whether a task's variant is ranked at all.

A variant *learns* when, over its independent training runs (seeds: for training units the instance), the t
interval of its last evaluation accuracy lies above chance, and no run collapsed: chance is 1 / (1 + N) for
N distractors (a positive that must beat N candidates scored alike wins 1 time in N + 1); collapse is
code perplexity <= 2 in some group at the last evaluation (:data:`gumbench.benchmarks.utilization.COLLAPSE_THRESHOLD`)
or at least half of the evaluation's distractors identical to their positive (the verdict's ``collapsed``).

A variant that does not learn is a *gradient-path demonstration only*: its rows show how the gradient
reaches the quantizer, and :func:`learning_check` gives the reason to print; a ranking leaves it out
(``learns`` False). Needs the training rows' ``label``, ``seed``, ``step``, ``eval_accuracy``,
``eval_code_perplexity``, ``eval_used_fraction``, ``eval_collapse`` and ``eval_identical_distractors``.
This module imports pandas only inside its function.
"""

from __future__ import annotations

from gumbench.intervals import CONFIDENCE, mean_interval

GRADIENT_PATH_ONLY = "gradient-path demonstration only"
IDENTICAL_LIMIT = 0.5  # the verdict's collapse: at least half of the distractors identical to their positive


def chance_accuracy(negatives: int) -> float:
    """The accuracy of scores that cannot tell the positive from its ``negatives`` distractors: 1 / (1 + N)."""
    return 1.0 / (1 + negatives)


def _last_evaluations(frame):
    """Per (label, seed), the row of the last evaluation."""
    evaluated = frame[frame["eval_accuracy"].notna()].sort_values("step")
    return evaluated.groupby(["label", "seed"], sort=False).tail(1)


def learning_check(frame, negatives: int, codes: int, confidence: float = CONFIDENCE):
    """One row per variant (``label``, in the frame's order): runs, the last evaluation's accuracy with its
    t interval over runs, chance, the noiseless code perplexity and the codes used (means over runs, of at most
    ``codes`` = G x V), collapsed runs, ``learns`` and, where it does not, the reason."""
    import pandas as pd

    chance = chance_accuracy(negatives)
    rows = []
    for label, last in _last_evaluations(frame).groupby("label", sort=False):
        accuracy = mean_interval(last["eval_accuracy"].to_numpy(dtype=float), confidence)
        few_codes, ties = last["eval_collapse"].astype(bool), last["eval_identical_distractors"] >= IDENTICAL_LIMIT
        collapsed = int((few_codes | ties).sum())
        reasons = []
        if not accuracy.low > chance:
            reasons.append(f"the {confidence:.0%} interval of its eval accuracy [{accuracy.low:.3f}, "
                           f"{accuracy.high:.3f}] is not above chance {chance:.3f}")
        if collapsed:
            reasons.append(f"{collapsed} of {len(last)} runs collapsed ({int(few_codes.sum())} to a code perplexity "
                           f"<= 2 in some group, {int(ties.sum())} with at least half of the distractors identical "
                           f"to their positive)")
        rows.append({
            "label": label, "runs": len(last), "steps": int(last["step"].max()), "eval_accuracy": accuracy.value,
            "eval_accuracy_low": accuracy.low, "eval_accuracy_high": accuracy.high, "chance": chance,
            "above_chance_runs": int((last["eval_accuracy"] > chance).sum()),
            "code_perplexity": float(last["eval_code_perplexity"].mean()),
            "code_perplexity_min": float(last["eval_code_perplexity"].min()),
            "used_codes": float((last["eval_used_fraction"] * codes).mean()), "codes": codes,
            "identical_distractors": float(last["eval_identical_distractors"].mean()),
            "collapsed_runs": collapsed, "learns": not reasons,
            "reason": "" if not reasons else f"{GRADIENT_PATH_ONLY}: " + "; ".join(reasons),
        })
    return pd.DataFrame(rows)
