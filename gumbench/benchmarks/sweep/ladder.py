"""Budget ladders: is a training comparison's ordering settled at its budget?

A ladder evaluates the same runs at several step counts (rungs; the last is the budget: the ``ladder``
key of a config's training section, :mod:`gumbench.benchmarks.sweep.config`). For each task and each
pair of estimators (a, b), :func:`ladder_orderings` gives at every rung

- the difference of the mean final evaluation reconstruction (lower is better), mean(a) - mean(b) over
  the seeds each side has at that rung, with Welch's 95% t interval (:func:`gumbench.intervals.welch_interval`;
  the two estimators' runs are independent seeds, so the samples are unpaired);
- "a wins on k of n seeds": of the n repetitions (instances) both sides have, those where a's value is the
  lower (runs are matched by repetition index only: a count, not a paired test);
- the ordering the interval resolves: ``a < b`` when it lies below 0, ``b < a`` above 0, else
  ``unresolved`` (it reaches 0, or a side has fewer than 2 seeds).

An ordering is *settled* only where the last two rungs of the ladder both resolve it the same way; the
pair's ``verdict`` then names it, and otherwise says :data:`NOT_SETTLED` (with why: a rung unresolved, the
two rungs disagreeing, or a rung not reached yet, as in a run still training). Rungs come from the caller
(one list for every task, or one per task: :func:`config_ladders`); without them they are the steps at
which both estimators were evaluated. The function only reads rows: no report code here.
"""

from __future__ import annotations

import math
from itertools import combinations

from gumbench.errors import GumbenchError
from gumbench.intervals import welch_interval

NOT_SETTLED = "not settled at this budget"
METRIC = "eval_reconstruction"
COLUMNS = ("task", "a", "b", "rung", "n_a", "n_b", "difference", "low", "high", "wins", "paired", "ordering",
           "settled", "verdict")


def config_ladders(units) -> dict[str, tuple[int, ...]]:
    """The ladder of each task in a sweep's units (:func:`~gumbench.benchmarks.sweep.config.expand_units`), for
    the tasks that have one."""
    return {u.task: u.ladder for u in units if u.kind == "training" and u.ladder}


def ladder_orderings(frame, rungs=None, metric: str = METRIC):
    """Per (task, estimator pair, rung) the ordering of ``metric`` and whether it is settled (module docstring).
    ``frame``: sweep rows (columns task, estimator, repetition or instance, step, metric, value). ``rungs``: the
    ladder's steps (a list), a mapping of task spec to its steps, or None (every step both sides were evaluated)."""
    import pandas as pd

    missing = {"task", "estimator", "step", "metric", "value"} - set(frame.columns)
    if missing or not {"instance", "repetition"} & set(frame.columns):
        raise GumbenchError("ladder orderings need sweep rows with columns task, estimator, repetition (or "
                            f"instance), step, metric and value; these lack {', '.join(sorted(missing)) or 'both'}")
    replicate = "instance" if "instance" in frame.columns else "repetition"
    rows = frame[(frame["metric"] == metric) & frame["value"].notna()]
    out = []
    for task, part in rows.groupby("task", sort=True):
        ladder = rungs.get(task) if isinstance(rungs, dict) else rungs
        if isinstance(rungs, dict) and ladder is None:
            continue  # a task without a ladder
        values = part.pivot_table(index=["estimator", replicate], columns="step", values="value", aggfunc="first")
        for a, b in combinations(sorted(part["estimator"].unique()), 2):
            out.extend(_pair_rows(task, a, b, values.loc[a], values.loc[b], ladder))
    return pd.DataFrame(out, columns=list(COLUMNS))


def _pair_rows(task: str, a: str, b: str, va, vb, ladder) -> list[dict]:
    """The rows of one pair: one per rung, each with the pair's settled flag and verdict."""
    steps = sorted(ladder) if ladder is not None else sorted(set(va.columns) & set(vb.columns))
    rows = [_rung(task, a, b, step, _column(va, step), _column(vb, step)) for step in steps]
    settled, verdict = _settled(a, b, rows, steps)
    for row in rows:
        row.update(settled=settled, verdict=verdict)
    return rows


def _column(values, step):
    """The replicates' values at ``step`` (a Series by replicate, NaN-free), empty where none reached it."""
    import pandas as pd

    return values[step].dropna() if step in values.columns else pd.Series(dtype=float)


def _rung(task: str, a: str, b: str, step: int, xa, xb) -> dict:
    stats = [(float(x.mean()) if len(x) else math.nan, float(x.var(ddof=1)) if len(x) > 1 else math.nan, len(x))
             for x in (xa, xb)]
    diff = welch_interval(*stats)
    both = xa.index.intersection(xb.index)
    if diff.high < 0:
        ordering = f"{a} < {b}"
    elif diff.low > 0:
        ordering = f"{b} < {a}"
    else:  # reaches 0, or NaN ends
        ordering = "unresolved"
    return {"task": task, "a": a, "b": b, "rung": int(step), "n_a": len(xa), "n_b": len(xb),
            "difference": diff.value, "low": diff.low, "high": diff.high,
            "wins": int((xa[both] < xb[both]).sum()), "paired": len(both), "ordering": ordering}


def _settled(a: str, b: str, rows: list[dict], steps: list[int]) -> tuple[bool, str]:
    if len(rows) < 2:
        return False, f"{NOT_SETTLED} (fewer than 2 rungs)"
    last, before = rows[-1], rows[-2]
    unreached = [r["rung"] for r in (before, last) if r["n_a"] == 0 or r["n_b"] == 0]
    if unreached:
        return False, f"{NOT_SETTLED} (rung {', '.join(f'{s:,}' for s in unreached)} not reached)"
    if last["ordering"] == "unresolved" or before["ordering"] == "unresolved":
        return False, f"{NOT_SETTLED} (unresolved at {before['rung']:,} or {last['rung']:,} steps)"
    if last["ordering"] != before["ordering"]:
        return False, f"{NOT_SETTLED} ({before['ordering']} at {before['rung']:,} steps, {last['ordering']} at " \
                      f"{last['rung']:,})"
    return True, f"{last['ordering']} at {before['rung']:,} and {last['rung']:,} steps"
