"""Aggregating estimators across questions and instances with autorank's Friedman/Nemenyi ranking.

Which tool, and why: the issue names rliable (stratified bootstrap, probability of improvement) and autorank
(Friedman test, Nemenyi post-hoc, critical-difference diagram). rliable 1.2.0 needs ``arch<8``, and arch 7.2.0
does not import beside this environment's pandas 3 (``deprecate_kwarg`` changed signature), so gumbench uses
autorank (pinned in pyproject.toml; it pulls statsmodels, baycomp, patsy, formulaic, no torch).

The input is a tidy frame: one row per (question, estimator, instance) with a score, lower is better (an MSE, a
final loss). The method is Demsar (2006), "Statistical comparisons of classifiers over multiple data sets":

- **blocks**: each (question, instance) pair is one block (``blocks="instance"``, the default: instances are
  independently seeded problems, so the blocks are independent; a question weighs as many blocks as it has
  instances), or each question is one block with its score averaged over the instances (``blocks="question"``,
  Demsar's datasets-as-blocks).
- **normalisation**: none is needed: within each block the estimators are ranked (1 = lowest score, ties get
  the mean rank), so questions on different scales count alike.
- **missing cells**: Friedman needs every estimator in every block. Until the table is complete, the estimator
  or the block with the largest share of missing cells is left out (estimators first on ties); what was left out
  is returned, never silently dropped.
- **aggregate**: each estimator's mean rank over the blocks, with the Nemenyi critical difference CD at
  ``alpha`` (two estimators differ significantly when their mean ranks differ by more than CD; the interval
  mean rank +- CD/2 is what the CD diagram draws); the Friedman test's p-value says whether any differ.
- **pairwise**: for each ordered pair, on how many blocks the first scored lower ("k of n blocks") and whether
  Nemenyi separates them.

Deterministic: no resampling, so no seed. autorank prints as it goes; its output is swallowed.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from gumbench.errors import GumbenchError

COLUMNS = ("question", "estimator", "instance", "score")
BLOCKS = ("instance", "question")
METHOD = "autorank 1.3.0: Friedman test, Nemenyi post-hoc critical difference (Demsar 2006)"


@dataclass(frozen=True)
class Ranking:
    """The outcome of :func:`rank_estimators`."""

    table: object  # DataFrame indexed by estimator: mean_rank, low, high (mean rank -+ CD/2), median_score
    pairs: object  # DataFrame: better, worse, wins, blocks, rank_gap, significant
    cd: float  # Nemenyi critical difference of mean ranks at alpha
    pvalue: float  # Friedman test
    alpha: float
    blocks: int
    block_kind: str
    left_out: tuple[str, ...]  # estimators and blocks left out for missing cells, with the reason
    result: object  # autorank's RankResult (for its CD diagram)
    method: str = METHOD


def block_matrix(frame, block_kind: str = "instance"):
    """The blocks x estimators score matrix (a DataFrame) of a tidy frame with :data:`COLUMNS`."""
    import pandas as pd

    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise GumbenchError(f"aggregate: the frame needs columns {', '.join(COLUMNS)}; missing {', '.join(missing)}")
    if block_kind not in BLOCKS:
        raise GumbenchError(f"aggregate: blocks must be one of {', '.join(BLOCKS)}, got {block_kind!r}")
    scores = pd.to_numeric(frame["score"], errors="coerce")
    if not scores.notna().all() or not scores.map(lambda v: abs(v) != float("inf")).all():
        raise GumbenchError("aggregate: every score must be a finite number")
    frame = frame.assign(score=scores.astype(float))
    keys = ["question", "instance"] if block_kind == "instance" else ["question"]
    duplicated = frame.duplicated(["question", "instance", "estimator"], keep=False)
    if duplicated.any():
        raise GumbenchError(f"aggregate: more than one score for a (question, estimator, instance) in "
                            f"{int(duplicated.sum())} rows")
    return frame.pivot_table(index=keys, columns="estimator", values="score", aggfunc="mean")


def complete(matrix) -> tuple[object, list[str]]:
    """Leave out estimators or blocks, the one with the largest missing share first, until none is missing."""
    left_out = []
    while matrix.isna().any().any():
        by_estimator = matrix.isna().mean(axis=0)
        by_block = matrix.isna().mean(axis=1)
        if by_estimator.max() >= by_block.max():
            name = by_estimator.idxmax()
            left_out.append(f"estimator {name}: missing in {int(matrix[name].isna().sum())} of {len(matrix)} blocks")
            matrix = matrix.drop(columns=[name])
        else:
            block = by_block.idxmax()
            left_out.append(f"block {block}: missing {int(matrix.loc[block].isna().sum())} of "
                            f"{matrix.shape[1]} estimators")
            matrix = matrix.drop(index=[block])
    return matrix, left_out


def rank_estimators(frame, *, blocks: str = "instance", alpha: float = 0.05) -> Ranking:
    """Friedman/Nemenyi ranking of the estimators in a tidy (question, estimator, instance, score) frame."""
    if not 0 < alpha < 1:
        raise GumbenchError(f"aggregate: alpha must be in (0, 1), got {alpha!r}")
    matrix, left_out = complete(block_matrix(frame, blocks))
    if matrix.shape[1] < 3 or matrix.shape[0] < 2:
        raise GumbenchError(f"aggregate: Friedman/Nemenyi needs at least 3 estimators on at least 2 complete blocks; "
                            f"got {matrix.shape[1]} estimators on {matrix.shape[0]} blocks")
    from autorank import autorank

    data = matrix.reset_index(drop=True).rename_axis(None, axis=1)
    data.columns = [str(c) for c in data.columns]
    with contextlib.redirect_stdout(io.StringIO()):
        result = autorank(data, alpha=alpha, order="ascending", force_mode="nonparametric")
    cd = float(result.cd)
    table = result.rankdf[["meanrank", "median"]].astype(float).rename(
        columns={"meanrank": "mean_rank", "median": "median_score"})
    table.insert(1, "low", table["mean_rank"] - cd / 2)
    table.insert(2, "high", table["mean_rank"] + cd / 2)
    table.index.name = "estimator"
    return Ranking(table=table, pairs=pairwise(data, table["mean_rank"], cd), cd=cd, pvalue=float(result.pvalue),
                   alpha=alpha, blocks=len(data), block_kind=blocks, left_out=tuple(left_out), result=result)


def pairwise(data, mean_rank, cd: float):
    """Per ordered pair (better by mean rank first): wins on blocks (strictly lower score), the rank gap, and
    whether it exceeds the critical difference."""
    import numpy as np
    import pandas as pd

    names = list(mean_rank.index)
    values = data[names].to_numpy()
    wins = (values[:, :, None] < values[:, None, :]).sum(axis=0)  # wins[i, j]: blocks where i scored below j
    i, j = np.triu_indices(len(names), k=1)
    gap = mean_rank.to_numpy()[j] - mean_rank.to_numpy()[i]
    return pd.DataFrame({
        "better": [names[a] for a in i],
        "worse": [names[b] for b in j],
        "wins": wins[i, j],
        "blocks": len(values),
        "rank_gap": gap,
        "significant": gap > cd,
    })


def cd_diagram_png(ranking: Ranking, *, width: float = 8.0, dpi: int = 120) -> bytes:
    """autorank's critical-difference diagram of a ranking, as PNG bytes (drawn even when the Friedman test
    does not reject: the title gives its p-value)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from autorank import plot_stats

    fig, ax = plt.subplots(figsize=(width, 0.25 * len(ranking.table) + 1.5))
    try:
        plot_stats(ranking.result, allow_insignificant=True, ax=ax)
        thin_rank_labels(ax, len(ranking.table))
        ax.set_title(f"Friedman p = {ranking.pvalue:.2g}; Nemenyi CD = {ranking.cd:.2f} at alpha = {ranking.alpha:g} "
                     f"({ranking.blocks} {ranking.block_kind} blocks)", fontsize=9)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def thin_rank_labels(ax, count: int) -> None:
    """autorank labels every integer rank on the scale; with many estimators the labels overlap, so keep 1 and
    every 2nd, 5th or 10th rank (at most about 10 labels)."""
    step = next((s for s in (1, 2, 5, 10, 20, 50) if count / s <= 10), 100)
    for text in ax.texts:
        label = text.get_text()
        if label.isdigit() and int(label) != 1 and int(label) % step:
            text.set_visible(False)
