"""Verdicts from stored sweep rows: for each question a sweep answers, which estimators are best, with
intervals over independent instances, ties grouped, "on k of n instances", and degenerate results named.

The replicate is an instance: a gradient question's repetition r is problem instance r (its own random logits,
model and targets: :func:`gumbench.benchmarks.problems.instance_spec`), with the draws nested inside it; a training
question's is an independently seeded run. A fixed problem without a seed (``bernoulli``) has one instance, so its
replicates are fresh draws on it, and the verdict says so.

Questions and their measure (lower is better in both):
  gradient quality on a toy   MSE / ||grad||^2 against the exact gradient (1 is what a zero estimate scores), in
                              three views of cost. Ranked at *equal loss evaluations*: with the budget B the largest
                              cost in the question (``loss_evaluations`` per estimate), an estimator of cost c
                              averages m = B / c independent estimates, so its MSE is bias^2 + variance / m (m need
                              not be whole). Beside it, the MSE of one estimate (*per estimate*) and at *equal wall
                              time* (m = T / t with t the median seconds per estimate over the instances, T the
                              largest such median in the question).
  training outcome on a task  the final evaluation reconstruction; the mean training loss over the last 10 steps
                              where a task has none (wav2vec 2.0)

Each estimator's value is the geometric mean over instances with the t interval of the mean log (both measures are
positive, so the interval stays positive by construction; an arithmetic t interval where some value is not). The
best is the healthy estimator with the lowest value; another is *tied* with it when the 95% t interval of the mean
log ratio reaches 0 (paired over instances where the instances are shared problems; Welch's otherwise), else
*worse*. Every ordering carries "on k of n": the instances (seeds) on which the estimator beat the best.

An instance whose exact gradient vanishes to rounding (``vanishing_gradient`` rows: the problem's
``vanishes``) is reported and left out of every ranking. Degenerate results, named in a ``warning`` and ranked after
every healthy one:
  shrinks the gradient   the mean estimate's norm < 0.1 ||grad||, or < 0.5 ||grad|| with relative bias >= 0.9
  misses the gradient    relative bias >= 0.9 with a mean estimate of at least 0.5 ||grad||: it points
                         elsewhere (straight-through VQ against the stochastic quantizer's gradient in z)
  collapsed              code perplexity <= 2 in some group at the end, or at least half of the
                         contrastive distractors identical to their targets
  diverged               a non-finite loss, or a final loss above 10x the first
An estimator is degenerate when any of its instances is. A gradient question whose best MSE / ||grad||^2 is 1 or
more says so: there no estimator is closer to the gradient than zero.
"""

from __future__ import annotations

import math

from gumbench.benchmarks.sweep.ladder import NOT_SETTLED
from gumbench.errors import GumbenchError
from gumbench.intervals import mean_interval, positive_mean_interval, t_interval, welch_interval

SHRINKS, MISSES, COLLAPSED, DIVERGED = "shrinks the gradient", "misses the gradient", "collapsed", "diverged"
LOSS_WINDOW = 10
NO_BETTER_THAN_ZERO = "no estimator beats a zero estimate here (MSE / ‖grad‖² >= 1)"
GRADIENT_MEASURE, RECONSTRUCTION, TAIL_LOSS = (
    "MSE / ‖grad‖²",
    "final eval reconstruction",
    f"loss, last {LOSS_WINDOW} steps",
)
EQUAL_EVALUATIONS, PER_ESTIMATE, EQUAL_TIME = "equal loss evaluations", "per estimate", "equal wall time"
TRAINING_VIEW = "final value"


def _last(frame, metric: str):
    """Per unit, the value of ``metric`` at its last logged step (a Series by unit_id)."""
    rows = frame[frame["metric"] == metric].sort_values("step")
    return rows.groupby("unit_id")["value"].last()


def _require(found, needed, what: str) -> None:
    missing = [m for m in needed if m not in set(found)]
    if missing:
        raise GumbenchError(f"the {what} rows lack the metrics {', '.join(missing)}: not results of a gumbench sweep")


def gradstats_outcomes(frame):
    """One row per gradstats unit: its per-estimate score (MSE / ||e||^2), its squared bias and variance relative to
    ||e||^2, its cost (loss evaluations, seconds per estimate), whether its instance's gradient vanishes, a warning."""
    import numpy as np

    wide = frame.pivot_table(index="unit_id", columns="metric", values="value", aggfunc="first")
    _require(wide.columns, ("exact_norm",), "gradient statistics")
    for column in ("snr", "mse", "relative_bias", "total_variance", "bias", "loss_evaluations",
                   "seconds_per_estimate", "vanishing_gradient", "mean_norm"):
        if column not in wide.columns:  # older rows, or units that measured nothing (a vanishing instance)
            wide[column] = np.nan
    vanishing = wide["vanishing_gradient"].fillna(0) > 0
    if not vanishing.all():
        _require(set(frame.loc[frame["unit_id"].isin(wide.index[~vanishing]), "metric"]),
                 ("mse", "relative_bias", "total_variance"), "gradient statistics")
    norm2 = wide["exact_norm"] ** 2
    score = wide["mse"] / norm2
    bias2 = (wide["bias"] ** 2 / norm2).fillna((wide["mse"] - wide["total_variance"]).clip(lower=0) / norm2)
    # rows since the quantizer problems carry ||E[x]|| itself (a deterministic estimator has no SNR);
    # older ones give it as snr * sqrt(tr Sigma)
    mean_norm = wide["mean_norm"].fillna(wide["snr"] * np.sqrt(wide["total_variance"])).fillna(0)
    far = wide["relative_bias"] >= 0.9
    shrinks = (mean_norm < 0.1 * wide["exact_norm"]) | (far & (mean_norm < 0.5 * wide["exact_norm"]))
    warning = np.where(vanishing, "", np.where(shrinks, SHRINKS, np.where(far, MISSES, "")))
    return score.rename("score").to_frame().assign(
        bias2=bias2, variance=wide["total_variance"] / norm2, cost=wide["loss_evaluations"].fillna(1.0),
        seconds=wide["seconds_per_estimate"], vanishing=vanishing, warning=warning, measure=GRADIENT_MEASURE)


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
    steps = frame.groupby("unit_id")["step"].max().reindex(score.index)  # the unit's budget
    return score.rename("score").to_frame().assign(warning=warning, measure=measure, vanishing=False, steps=steps)


def short_task(kind: str, spec: str) -> str:
    """A task's spec with only the parameters that differ from its defaults: ``polynomial[p=1.5]``."""
    from gumbench.benchmarks.problems import registry as toys
    from gumbench.benchmarks.training import registry as training
    from gumbench.registry import format_spec, parse_spec

    parsed = parse_spec(spec)
    defaults = (toys if kind == "gradstats" else training).get(parsed.name).defaults
    return format_spec(parsed.name, {k: v for k, v in parsed.params.items() if k not in defaults or defaults[k] != v})


OUTCOME_COLUMNS = ["unit_id", "kind", "task", "label", "estimator_name", "repetition", "instance", "paired", "score",
                   "warning", "measure", "vanishing"]


def outcomes(frame):
    """One row per unit: kind, task (short), label, estimator family, repetition, instance, whether instances are
    shared problems (``paired``), score, warning, measure (and, for gradient units, the cost columns)."""
    import pandas as pd

    from gumbench.benchmarks.problems import has_instances
    from gumbench.benchmarks.sweep.bits import bits_groups, unit_bits

    parts = []
    if "ladder" in frame:  # a budget ladder's units answer whether an ordering is settled (ladder_verdicts)
        frame = frame[frame["ladder"].isna()]
    for kind, make in (("gradstats", gradstats_outcomes), ("training", training_outcomes)):
        rows = frame[frame["kind"] == kind]
        if rows.empty:
            continue
        columns = ["kind", "task", "label", "estimator_name", "repetition"] + (["instance"] if "instance" in rows
                                                                                else [])
        ident = rows.drop_duplicates("unit_id").set_index("unit_id")[columns]
        if "instance" not in ident:  # rows from before instances: a gradient question's repetitions were draws
            ident["instance"] = ident["repetition"]
        paired = {t: kind == "gradstats" and "instance" in rows and has_instances(t) for t in ident["task"].unique()}
        ident["paired"] = ident["task"].map(paired)
        ident["unranked"] = [_unranked(kind, task, label) for task, label in zip(ident["task"], ident["label"])]
        ident["task"] = ident["task"].map({t: short_task(kind, t) for t in ident["task"].unique()})
        parts.append(ident.join(make(rows)).reset_index())
    if not parts:
        return pd.DataFrame(columns=OUTCOME_COLUMNS)
    # a training question is a task at a number of bits per frame: quantizers compare only at equal bits
    return bits_groups(pd.concat(parts, ignore_index=True), unit_bits(frame))


def _unranked(kind: str, task: str, label: str) -> str:
    """Why a task leaves ``label`` out of every ranking (a training task's ``unranked``: vq-wav2vec's variants that
    do not learn at this scale are gradient-path demonstrations only), or ''."""
    if kind != "training":
        return ""
    from gumbench.benchmarks.training import registry
    from gumbench.registry import parse_spec

    return registry.get(parse_spec(task).name).unranked.get(label, "")


def summary(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(value, low, high) of positive replicates: the geometric mean with the back-transformed t interval of the
    mean log (:func:`gumbench.intervals.positive_mean_interval`); of replicates not all positive, the arithmetic mean
    with its t interval. NaN ends with one value."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if not len(values) or not np.isfinite(values).all():
        return math.nan, math.nan, math.nan
    if (values > 0).all():
        return tuple(positive_mean_interval(values, confidence))
    return tuple(mean_interval(values, confidence))


def _with_views(rows):
    """Gradient units' score at equal loss evaluations (the ranked one) with the per-estimate and equal-time scores
    beside it; training units keep theirs (see the module docstring)."""
    import numpy as np

    rows = rows.copy()
    rows["per_estimate"], rows["equal_time"], rows["estimates"] = rows["score"], rows["score"], 1.0
    grad = (rows["kind"] == "gradstats") & ~rows["vanishing"].astype(bool)
    if not grad.any():
        return rows
    g = rows[grad]
    cost = g.groupby(["task", "label"])["cost"].transform("max")
    budget = g.groupby("task")["cost"].transform("max")
    seconds = g.groupby(["task", "label"])["seconds"].transform("median")
    time_budget = seconds.groupby(g["task"]).transform("max")
    m, m_time = budget / cost, (time_budget / seconds).fillna(1.0)
    known = g["bias2"].notna() & g["variance"].notna()
    rows.loc[grad, "estimates"] = m
    rows.loc[grad, "score"] = np.where(known, g["bias2"] + g["variance"] / m, g["score"])
    rows.loc[grad, "equal_time"] = np.where(known, g["bias2"] + g["variance"] / m_time, g["score"])
    return rows


def _against_best(row_values: dict, best_values: dict, paired: bool, confidence: float):
    """(tied, wins, n): whether the interval of the mean log ratio to the best reaches 0, and on how many of the n
    instances (paired) or seed pairs this estimator scored below the best."""
    import numpy as np

    common = sorted(set(row_values) & set(best_values))
    wins = sum(row_values[i] < best_values[i] for i in common)
    a = np.array([row_values[i] for i in sorted(row_values)], dtype=float)
    b = np.array([best_values[i] for i in sorted(best_values)], dtype=float)
    positive = bool((a > 0).all() and (b > 0).all())
    f = np.log if positive else (lambda v: v)
    if paired and len(common) >= 2:
        d = f(np.array([row_values[i] for i in common])) - f(np.array([best_values[i] for i in common]))
        _, low, high = t_interval(float(d.mean()), float(d.std(ddof=1)), len(d), confidence)
    elif len(a) >= 2 and len(b) >= 2:
        fa, fb = f(a), f(b)
        _, low, high = welch_interval((fa.mean(), fa.var(ddof=1), len(fa)), (fb.mean(), fb.var(ddof=1), len(fb)),
                                      confidence)
    else:
        return True, wins, len(common)
    return bool(low <= 0 <= high or math.isnan(low)), int(wins), len(common)


def _summaries(rows, confidence: float):
    """Per (kind, task, label): the three views' summaries over instances and the instance -> score maps."""
    import pandas as pd

    records = []
    for (kind, task, label), g in rows.groupby(["kind", "task", "label"], sort=False):
        record = {"kind": kind, "task": task, "label": label, "family": g["estimator_name"].iloc[0],
                  "measure": g["measure"].iloc[0], "n": len(g), "paired": bool(g["paired"].iloc[0]),
                  "warning": "; ".join(sorted(set(g["warning"]) - {""})), "unranked": g["unranked"].iloc[0],
                  "cost": float(g["cost"].max()) if "cost" in g else 1.0,
                  "estimates": float(g["estimates"].iloc[0]), "scores": dict(zip(g["instance"], g["score"])),
                  "steps": int(g["steps"].max()) if "steps" in g and g["steps"].notna().any() else 0}
        for view, column in (("", "score"), ("per_estimate_", "per_estimate"), ("equal_time_", "equal_time")):
            mean, low, high = summary(g[column], confidence)
            record |= {f"{view}mean": mean, f"{view}low": low, f"{view}high": high}
        records.append(record)
    return pd.DataFrame(records)


def compare(outcome_rows, confidence: float = 0.95):
    """Per question and estimator: n (instances), value and interval in the ranked view (equal loss evaluations for
    gradient questions), the per-estimate and equal-time values beside it, cost, warning, rank, standing (best, tied,
    worse or degenerate) and "k of n" against the best; rows of a question in rank order, healthy first. Instances
    whose exact gradient vanishes are left out, and listed per question in ``vanished``."""
    import pandas as pd

    if outcome_rows.empty:
        return pd.DataFrame()
    rows = outcome_rows.copy()
    for column, default in (("vanishing", False), ("paired", False), ("instance", None), ("cost", 1.0)):
        if column not in rows:
            rows[column] = rows["repetition"] if column == "instance" else default
    rows["vanishing"] = rows["vanishing"].fillna(False).astype(bool)
    vanished = rows[rows["vanishing"]].groupby("task")["instance"].apply(lambda s: sorted(set(s)))
    rows["unranked"] = rows["unranked"].fillna("") if "unranked" in rows else ""
    rows = _with_views(rows[~rows["vanishing"]])
    if rows.empty:
        return pd.DataFrame()
    stats = _summaries(rows, confidence)
    stats["degenerate"] = stats["warning"] != ""
    stats["excluded"] = stats["unranked"] != ""  # a task's gradient-path demonstrations: named, never ranked
    ranked = []
    for _, group in stats.groupby(["kind", "task"], sort=False):
        group = group.sort_values(["excluded", "degenerate", "mean"], kind="stable").reset_index(drop=True)
        best = group.iloc[0]
        group["rank"] = range(1, len(group) + 1)
        standings, wins, counts = [], [], []
        for i, row in group.iterrows():
            tied, k, n = _against_best(row["scores"], best["scores"], row["paired"], confidence)
            standings.append("unranked" if row["excluded"] else "degenerate" if row["degenerate"] else "best" if i == 0
                             else "tied" if tied else "worse")
            wins.append(k if i else 0)
            counts.append(n)
        group["standing"], group["wins"], group["of"] = standings, wins, counts
        group["rank_equal_time"] = group["equal_time_mean"].rank(method="first").astype(int)
        group["rank_per_estimate"] = group["per_estimate_mean"].rank(method="first").astype(int)
        ranked.append(group)
    out = pd.concat(ranked, ignore_index=True).drop(columns="scores")
    out["vanished"] = out["task"].map(lambda t: vanished.get(t, []))
    return out


def answers(frame, confidence: float = 0.95):
    """(outcome rows, compared, verdict rows) of sweep rows, the ladders' verdicts included: what the report, the
    CLI and the docs all show."""
    rows = outcomes(frame)
    compared = compare(rows, confidence)
    return rows, compared, verdict(compared, ladders=ladder_verdicts(frame)) if not compared.empty else None


def interval_text(mean: float, low: float, high: float) -> str:
    return f"{mean:.3g}" if math.isnan(low) else f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def ladder_verdicts(frame) -> dict:
    """From the budget ladders' units (rows with a ``ladder`` column): per (short task, frozenset of two labels) the
    ladder's verdict on their ordering (:func:`gumbench.benchmarks.sweep.ladder.ladder_orderings`: settled only where
    its last two rungs agree)."""
    if "ladder" not in frame:
        return {}
    rows = frame[(frame["kind"] == "training") & frame["ladder"].notna()]
    if rows.empty:
        return {}
    from gumbench.benchmarks.sweep.ladder import ladder_orderings

    rungs = {task: tuple(int(s) for s in ladder.split(",")) for task, ladder in
             rows.drop_duplicates("task")[["task", "ladder"]].itertuples(index=False)}
    labels = dict(zip(rows["estimator"], rows["label"]))
    orders = ladder_orderings(rows, rungs).drop_duplicates(["task", "a", "b"])
    return {(short_task("training", r.task), frozenset((labels[r.a], labels[r.b]))): r.verdict
            for r in orders.itertuples()}


def settled_text(kind: str, task: str, best: str, runner: str, ladders: dict, steps: int = 0) -> str:
    """A training ordering's standing at its budget (``steps``): the ladder's verdict on (best, runner-up), else
    not settled."""
    if kind != "training" or not runner:
        return ""
    found = ladders.get((task.split(" @ ")[0], frozenset((best, runner))))
    budget = f" ({steps:,} steps)" if steps else ""
    return f"ladder: {found}" if found else f"{NOT_SETTLED}{budget}: no budget ladder for this pair"


def replicates_text(row) -> str:
    """'5 instances', '3 seeds', or '3 draws on one fixed problem' for a compared row or a verdict row."""
    n = int(row["n"] if "n" in row else row["instances"])
    if row["kind"] == "training":
        return f"{n} seed{'s' * (n != 1)}"
    return f"{n} instance{'s' * (n != 1)}" if row["paired"] else f"{n} draws on one fixed problem"


def _named(rows, shown: int) -> list[str]:
    return [f"{r.label} {interval_text(r.mean, r.low, r.high)}" for r in rows.head(shown).itertuples()]


def _question_warnings(group, top, shown: int) -> list[str]:
    best_mean = top["mean"].iloc[0] if len(top) else math.inf
    degenerate = group[group["standing"] == "degenerate"]
    beating = degenerate[degenerate["mean"] < best_mean]
    named = [f"{r.label}: {r.warning}" for r in beating.head(shown).itertuples()]
    others = len(degenerate) - len(named)
    warnings = ([NO_BETTER_THAN_ZERO] if group["measure"].iloc[0] == GRADIENT_MEASURE and len(top) and best_mean >= 1
                else []) + named
    if others:
        warnings.append(
            f"{others} {'more ' if named else ''}degenerate ({', '.join(sorted(set(degenerate['warning'])))})"
        )
    if group["kind"].iloc[0] == "training" and len(group) == 1 and " bits/frame" in group["task"].iloc[0]:
        warnings.append("alone at these bits per frame: nothing to compare it with")
    warnings += [f"{r.label} left out of the ranking: {r.unranked}" for r in group[group["standing"] == "unranked"]
                 .itertuples()]
    vanished = group["vanished"].iloc[0] if "vanished" in group else []
    if len(vanished):
        warnings.append(f"exact gradient vanishes on instance{'s' * (len(vanished) > 1)} "
                        f"{', '.join(map(str, vanished))}: left out of the ranking")
    return warnings


def verdict(compared, shown: int = 3, ladders: dict | None = None):
    """One row per question: the measure and the view it is ranked in, the best estimators (best first, then those
    tied with it) with their intervals, the runner-up and on how many instances the best beat it, the best per
    estimate and at equal wall time, and warnings (degenerate results that beat the best, vanished instances)."""
    import pandas as pd

    rows = []
    for (kind, task), group in compared.groupby(["kind", "task"], sort=False):
        top = group[group["standing"].isin(["best", "tied"])]
        healthy = group[group["standing"].isin(["best", "tied", "worse"])]
        names = _named(top, shown) + ([f"+{len(top) - shown} tied"] if len(top) > shown else [])
        warnings = _question_warnings(group, top, shown)
        runner = healthy.iloc[1] if len(healthy) > 1 else None
        evidence = ""
        if runner is not None and runner["of"]:
            evidence = (f"{healthy.iloc[0]['label']} beat {runner['label']} on {runner['of'] - runner['wins']} of "
                        f"{runner['of']} {'seeds' if kind == 'training' else 'instances'}")
        settled = settled_text(kind, task, healthy.iloc[0]["label"] if len(healthy) else "",
                               "" if runner is None else runner["label"], ladders or {}, int(group["steps"].max()))
        if settled:
            evidence = f"{evidence}; {settled}" if evidence else settled
        pick = (lambda column: healthy.sort_values(column, kind="stable")["label"].iloc[0] if len(healthy) else "")
        rows.append({
            "kind": kind, "task": task, "measure": group["measure"].iloc[0],
            "view": EQUAL_EVALUATIONS if kind == "gradstats" else TRAINING_VIEW,
            "instances": int(group["n"].max()), "paired": bool(group["paired"].iloc[0]), "best": names,
            "runner_up": "" if runner is None else runner["label"], "evidence": evidence,
            "best_per_estimate": pick("per_estimate_mean") if kind == "gradstats" else "",
            "best_equal_time": pick("equal_time_mean") if kind == "gradstats" else "",
            "tied": len(top) - 1, "of": len(group), "warnings": warnings, "settled": settled,
            "degenerate": int((group["standing"] == "degenerate").sum()),
            "no_better_than_zero": bool(warnings[:1] == [NO_BETTER_THAN_ZERO]),
        })
    return pd.DataFrame(rows)
