"""Training comparisons grouped by bits per frame (:mod:`gumbench.benchmarks.training.bits`).

A quantizer with more bits per frame reconstructs better for that reason alone (residual-vq's default split of
K = 128 codes into 2 books of 64 has 12 bits per frame against one book's 7), so a training question is a task
*at a number of bits*: estimators are compared only with those at the same bits, and the question names them,
``logmel-vqvae @ 7 bits/frame``. Every training unit's rows carry the constant metric ``bits_per_frame``;
units of older runs without it keep their task as the question. Gradient questions are left as they are.
"""

from __future__ import annotations

from gumbench.errors import GumbenchError

METRIC = "bits_per_frame"


def unit_bits(frame):
    """Per unit (a Series by unit_id), the ``bits_per_frame`` its rows record; units without one are absent."""
    rows = frame[frame["metric"] == METRIC]
    bits = rows.groupby("unit_id")["value"]
    if (bits.nunique() > 1).any():
        raise GumbenchError(f"a unit's rows give more than one {METRIC}: not results of a gumbench sweep")
    return bits.first().rename("bits")


def question(task: str, bits: float) -> str:
    """``logmel-vqvae @ 7 bits/frame``."""
    from gumbench.benchmarks.training.bits import bits_text

    return f"{task} @ {bits_text(bits)} bits/frame"


def bits_groups(outcome_rows, bits=None):
    """Outcome rows (one per unit: kind, task, label, ..., as :func:`gumbench.benchmarks.sweep.verdict.outcomes`
    gives them) with the training rows' ``task`` replaced by the question (task, bits) named as
    ``<task> @ <bits> bits/frame``, so that grouping by (kind, task) compares only at equal bits; ``bits`` is
    taken from a ``bits`` column, else from ``bits`` (a Series by unit_id, :func:`unit_bits`). Adds the columns
    ``bits`` (NaN where unknown) and ``rivals`` (how many other labels the question holds: 0 is a comparison with
    nothing, which a verdict should say rather than rank)."""
    import pandas as pd

    rows = outcome_rows.copy()
    if "bits" not in rows.columns:
        if bits is None:
            raise GumbenchError("bits_groups needs a bits column or the units' bits (unit_bits(frame))")
        rows["bits"] = rows["unit_id"].map(bits) if len(rows) else pd.Series(dtype=float)
    rows["bits"] = rows["bits"].astype(float)
    known = (rows["kind"] == "training") & rows["bits"].notna()
    # bits are sums of log2s: equal code spaces agree to rounding, so the key is rounded
    rows.loc[known, "task"] = [question(task, round(b, 9)) for task, b in zip(rows.loc[known, "task"],
                                                                                rows.loc[known, "bits"])]
    labels = rows.groupby(["kind", "task"])["label"].transform("nunique") if len(rows) else rows["label"]
    rows["rivals"] = labels - 1
    return rows
