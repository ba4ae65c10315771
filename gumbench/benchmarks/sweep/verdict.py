"""Verdicts from stored sweep rows: for each question a sweep answers, which estimators are best,
with intervals across seeds, ties grouped, and degenerate results named.

Questions and their measure (lower is better in both):
  gradient quality on a toy   MSE / ||grad||^2 of one estimate against the exact gradient
                              (1 is what a zero estimate scores)
  training outcome on a task  the final evaluation reconstruction; the mean training loss over
                              the last 10 steps where a task has none (wav2vec 2.0)

Each repetition (an independent seed) gives one value per estimator; an estimator's interval is
the t interval of its mean over repetitions (clipped at 0, as both measures are
non-negative). The best is the healthy estimator with the lowest
mean; another is *tied* with it when the Welch t interval of the difference of their means
reaches 0, else *worse*. With one repetition nothing can be told apart: all are tied.

Degenerate results, named in a ``warning`` and ranked after every healthy one:
  shrinks the gradient   the mean estimate's norm < 0.1 ||grad||, or < 0.5 ||grad|| with relative bias >= 0.9
  misses the gradient    relative bias >= 0.9 with a mean estimate of at least 0.5 ||grad||: it points
                         elsewhere (straight-through VQ against the stochastic quantizer's gradient in z)
  collapsed              code perplexity <= 2 in some group at the end, or at least half of the
                         contrastive distractors identical to their targets
  diverged               a non-finite loss, or a final loss above 10x the first
An estimator is degenerate when any of its repetitions is. A gradient question whose best MSE /
||grad||^2 is 1 or more says so: there no estimator is closer to the gradient than zero.
"""

from __future__ import annotations

import math

from gumbench.errors import GumbenchError
from gumbench.intervals import t_half_width, welch_interval

SHRINKS, MISSES, COLLAPSED, DIVERGED = "shrinks the gradient", "misses the gradient", "collapsed", "diverged"
LOSS_WINDOW = 10
NO_BETTER_THAN_ZERO = "no estimator beats a zero estimate here (MSE / ‖grad‖² >= 1)"
GRADIENT_MEASURE, RECONSTRUCTION, TAIL_LOSS = (
    "MSE / ‖grad‖²",
    "final eval reconstruction",
    f"loss, last {LOSS_WINDOW} steps",
)


def _last(frame, metric: str):
    """Per unit, the value of ``metric`` at its last logged step (a Series by unit_id)."""
    rows = frame[frame["metric"] == metric].sort_values("step")
    return rows.groupby("unit_id")["value"].last()


def _require(found, needed, what: str) -> None:
    missing = [m for m in needed if m not in set(found)]
    if missing:
        raise GumbenchError(f"the {what} rows lack the metrics {', '.join(missing)}: not results of a gumbench sweep")


def gradstats_outcomes(frame):
    """One row per gradstats unit: its score (MSE / ||e||^2) and warning."""
    import numpy as np

    wide = frame.pivot_table(index="unit_id", columns="metric", values="value", aggfunc="first")
    _require(wide.columns, ("mse", "exact_norm", "relative_bias", "total_variance"), "gradient statistics")
    if "snr" not in wide.columns:  # no unit with a variance (every estimator deterministic)
        wide["snr"] = np.nan
    score = wide["mse"] / wide["exact_norm"] ** 2
    # rows since the quantizer problems carry ||E[x]|| itself (a deterministic estimator has no SNR);
    # older ones give it as snr * sqrt(tr Sigma)
    mean_norm = wide["snr"] * np.sqrt(wide["total_variance"])
    if "mean_norm" in wide.columns:
        mean_norm = wide["mean_norm"].fillna(mean_norm)
    mean_norm = mean_norm.fillna(0)
    far = wide["relative_bias"] >= 0.9
    shrinks = (mean_norm < 0.1 * wide["exact_norm"]) | (far & (mean_norm < 0.5 * wide["exact_norm"]))
    warning = np.where(shrinks, SHRINKS, np.where(far, MISSES, ""))
    return score.rename("score").to_frame().assign(warning=warning, measure=GRADIENT_MEASURE)


def training_outcomes(frame):
    """One row per training unit: its score (see the module docstring) and warning."""
    import numpy as np
    import pandas as pd

    _require(frame["metric"].unique(), ("loss",), "training")
    loss = frame[frame["metric"] == "loss"].sort_values("step")
    recon = _last(frame, "eval_reconstruction")
    tail_loss = loss.groupby("unit_id")["value"].apply(lambda v: v.iloc[-LOSS_WINDOW:].mean())
    score = recon.reindex(tail_loss.index)
    measure = np.where(score.isna(), TAIL_LOSS, RECONSTRUCTION)
    score = score.fillna(tail_loss)
    first, final = loss.groupby("unit_id")["value"].first(), loss.groupby("unit_id")["value"].last()
    diverged = loss.groupby("unit_id")["value"].apply(lambda v: not np.isfinite(v).all()) | (final > 10 * first.abs())
    group_ppl = [m for m in frame["metric"].unique() if m.startswith("eval_code_perplexity_g")]
    if not group_ppl:
        group_ppl = [m for m in frame["metric"].unique() if m.startswith("code_perplexity_g")]
    lowest = (
        pd.concat([_last(frame, m) for m in group_ppl], axis=1).min(axis=1) if group_ppl else pd.Series(dtype=float)
    )
    identical = _last(frame, "loss_identical_distractors")
    collapsed = (lowest.reindex(score.index) <= 2) | (identical.reindex(score.index) >= 0.5)
    warning = np.where(
        diverged.reindex(score.index).fillna(True), DIVERGED, np.where(collapsed.fillna(False), COLLAPSED, "")
    )
    return score.rename("score").to_frame().assign(warning=warning, measure=measure)


def short_task(kind: str, spec: str) -> str:
    """A task's spec with only the parameters that differ from its defaults: ``polynomial[p=1.5]``."""
    from gumbench.benchmarks.problems import registry as toys
    from gumbench.benchmarks.training import registry as training
    from gumbench.registry import format_spec, parse_spec

    parsed = parse_spec(spec)
    defaults = (toys if kind == "gradstats" else training).get(parsed.name).defaults
    return format_spec(parsed.name, {k: v for k, v in parsed.params.items() if k not in defaults or defaults[k] != v})


def outcomes(frame):
    """One row per unit: kind, task (short), label, estimator family, repetition, score, warning, measure."""
    import pandas as pd

    parts = []
    for kind, make in (("gradstats", gradstats_outcomes), ("training", training_outcomes)):
        rows = frame[frame["kind"] == kind]
        if rows.empty:
            continue
        ident = rows.drop_duplicates("unit_id").set_index("unit_id")[
            ["kind", "task", "label", "estimator_name", "repetition"]
        ]
        ident["task"] = ident["task"].map({t: short_task(kind, t) for t in ident["task"].unique()})
        parts.append(ident.join(make(rows)).reset_index())
    if not parts:
        return pd.DataFrame(
            columns=["unit_id", "kind", "task", "label", "estimator_name", "repetition", "score", "warning", "measure"]
        )
    return pd.concat(parts, ignore_index=True)


def _welch_reaches_zero(a, b, confidence: float) -> bool:
    """Whether the Welch t interval of mean(a) - mean(b) contains 0 (always, with one value on a side)."""
    if a["n"] < 2 or b["n"] < 2:
        return True
    _, low, high = welch_interval((a["mean"], a["sd"] ** 2, a["n"]), (b["mean"], b["sd"] ** 2, b["n"]), confidence)
    return low <= 0 <= high


def compare(outcome_rows, confidence: float = 0.95):
    """Per question and estimator: n, mean, interval, warning, rank and standing (best, tied, worse,
    or degenerate); rows of a question in rank order, healthy first."""
    import pandas as pd

    if outcome_rows.empty:
        return pd.DataFrame()
    stats = (
        outcome_rows.groupby(["kind", "task", "label"], sort=False)
        .agg(
            family=("estimator_name", "first"),
            measure=("measure", "first"),
            n=("score", "size"),
            mean=("score", "mean"),
            sd=("score", "std"),
            warning=("warning", lambda w: "; ".join(sorted(set(w) - {""}))),
        )
        .reset_index()
    )
    half = [t_half_width(sd, n, confidence) for n, sd in zip(stats["n"], stats["sd"])]
    stats["low"], stats["high"] = stats["mean"] - half, stats["mean"] + half
    if (outcome_rows["score"] >= 0).all():  # both measures are non-negative: so are their intervals
        stats["low"] = stats["low"].clip(lower=0)
    stats["degenerate"] = stats["warning"] != ""
    ranked = []
    for _, group in stats.groupby(["kind", "task"], sort=False):
        group = group.sort_values(["degenerate", "mean"], kind="stable").reset_index(drop=True)
        best = group.iloc[0]
        group["rank"] = range(1, len(group) + 1)
        group["standing"] = [
            "degenerate"
            if row["degenerate"]
            else "best"
            if i == 0
            else "tied"
            if _welch_reaches_zero(row, best, confidence)
            else "worse"
            for i, row in group.iterrows()
        ]
        ranked.append(group)
    return pd.concat(ranked, ignore_index=True)


def interval_text(mean: float, low: float, high: float) -> str:
    return f"{mean:.3g}" if math.isnan(low) else f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def verdict(compared, shown: int = 3):
    """One row per question: the measure, the best estimators (best first, then those tied with it)
    with their intervals, and warnings naming the degenerate results whose value beat the best."""
    import pandas as pd

    rows = []
    for (kind, task), group in compared.groupby(["kind", "task"], sort=False):
        top = group[group["standing"].isin(["best", "tied"])]
        names = [f"{r.label} {interval_text(r.mean, r.low, r.high)}" for r in top.head(shown).itertuples()]
        if len(top) > shown:
            names.append(f"+{len(top) - shown} tied")
        best_mean = top["mean"].iloc[0] if len(top) else math.inf
        degenerate = group[group["standing"] == "degenerate"]
        beating = degenerate[degenerate["mean"] < best_mean]
        named = [f"{r.label}: {r.warning}" for r in beating.head(shown).itertuples()]
        others = len(degenerate) - len(named)
        warnings = (
            [NO_BETTER_THAN_ZERO]
            if group["measure"].iloc[0] == GRADIENT_MEASURE and len(top) and best_mean >= 1
            else []
        ) + named
        if others:
            warnings.append(
                f"{others} {'more ' if named else ''}degenerate ({', '.join(sorted(set(degenerate['warning'])))})"
            )
        rows.append({"kind": kind, "task": task, "measure": group["measure"].iloc[0], "seeds": int(group["n"].max()),
                     "best": names, "tied": len(top) - 1, "of": len(group), "warnings": warnings,
                     "degenerate": len(degenerate), "no_better_than_zero": bool(warnings[:1] == [NO_BETTER_THAN_ZERO])})
    return pd.DataFrame(rows)
