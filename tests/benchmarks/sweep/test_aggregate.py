"""Friedman/Nemenyi aggregation (autorank) on synthetic frames with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from gumbench.benchmarks.sweep.aggregate import block_matrix, cd_diagram_png, complete, rank_estimators
from gumbench.errors import GumbenchError


def tidy(scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """scores[estimator]: (questions, instances) array -> the tidy frame."""
    return pd.DataFrame([{"question": f"q{q}", "estimator": name, "instance": i, "score": float(values[q, i])}
                         for name, values in scores.items() for q in range(values.shape[0])
                         for i in range(values.shape[1])])


def noise(seed: int, k: int, questions: int = 20, instances: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # questions on very different scales: ranks make them comparable
    scale = 10.0 ** rng.uniform(-3, 3, size=(questions, 1))
    return {f"e{j}": scale * np.exp(rng.normal(size=(questions, instances))) for j in range(k)}


def test_a_dominating_estimator_ranks_first_and_is_separated_from_every_other():
    scores = noise(0, 5)
    scores["best"] = 0.5 * np.minimum.reduce(list(scores.values()))  # lower than every other on every block
    ranking = rank_estimators(tidy(scores))
    assert ranking.table.index[0] == "best"
    assert ranking.table.loc["best", "mean_rank"] == 1.0
    assert ranking.pvalue < 1e-10
    mine = ranking.pairs[ranking.pairs.better == "best"]
    assert len(mine) == 5
    assert (mine.wins == 100).all() and (mine.blocks == 100).all() and mine.significant.all()


def test_exchangeable_estimators_have_mean_ranks_near_the_middle_and_identical_ones_tie():
    k, blocks = 6, 100
    scores = noise(1, k - 1)
    scores["twin"] = scores["e0"].copy()  # identical scores: tied on every block
    ranking = rank_estimators(tidy(scores))
    middle, sd = (k + 1) / 2, math.sqrt((k * k - 1) / (12 * blocks))  # mean rank under exchangeability
    assert (abs(ranking.table.mean_rank - middle) < 4 * sd).all()
    assert ranking.table.loc["twin", "mean_rank"] == ranking.table.loc["e0", "mean_rank"]
    pair = ranking.pairs[ranking.pairs.better.isin(["twin", "e0"]) & ranking.pairs.worse.isin(["twin", "e0"])]
    assert len(pair) == 1 and pair.wins.iloc[0] == 0 and not pair.significant.iloc[0]
    assert pair.rank_gap.iloc[0] == 0


def test_mean_ranks_and_critical_difference_match_the_definitions():
    scores = noise(2, 5, questions=8, instances=3)
    frame = tidy(scores)
    ranking = rank_estimators(frame)
    by_hand = block_matrix(frame).rank(axis=1).mean()
    assert np.allclose(ranking.table.mean_rank.sort_index(), by_hand.sort_index())
    # Demsar (2006) table 5: q_0.05 = 2.728 for k = 5; CD = q sqrt(k (k + 1) / (6 N)) with N = 24 blocks
    assert ranking.cd == pytest.approx(2.728 * math.sqrt(5 * 6 / (6 * 24)), rel=1e-3)
    assert np.allclose(ranking.table.high - ranking.table.low, ranking.cd)


def test_question_blocks_average_the_instances_first():
    scores = noise(3, 4, questions=6, instances=5)
    frame = tidy(scores)
    ranking = rank_estimators(frame, blocks="question")
    assert ranking.blocks == 6 and ranking.block_kind == "question"
    means = frame.groupby(["question", "estimator"]).score.mean().unstack()
    assert np.allclose(ranking.table.mean_rank.sort_index(), means.rank(axis=1).mean().sort_index())


def test_missing_cells_leave_out_the_sparser_side_and_say_so():
    scores = noise(4, 4, questions=10, instances=2)
    frame = tidy(scores)
    # e0 missing on one question (2 of 20 blocks): those blocks go, e0 stays
    one_gap = frame[~((frame.estimator == "e0") & (frame.question == "q3"))]
    ranking = rank_estimators(one_gap)
    assert "e0" in ranking.table.index and ranking.blocks == 18
    assert len(ranking.left_out) == 2 and all(s.startswith("block ") for s in ranking.left_out)
    # e1 missing on 6 of 10 questions: e1 goes, every block stays
    sparse = frame[~((frame.estimator == "e1") & frame.question.isin([f"q{q}" for q in range(6)]))]
    ranking = rank_estimators(sparse)
    assert "e1" not in ranking.table.index and ranking.blocks == 20
    assert ranking.left_out == ("estimator e1: missing in 12 of 20 blocks",)
    matrix, _ = complete(block_matrix(sparse))
    assert not matrix.isna().any().any()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns=["instance"]), "missing instance"),
        (lambda f: f.assign(score=f.score.where(f.index != 3, float("nan"))), "finite"),
        (lambda f: f.assign(score=f.score.where(f.index != 3, float("inf"))), "finite"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "more than one score"),
        (lambda f: f[f.estimator.isin(["e0", "e1"])], "at least 3 estimators"),
    ],
)
def test_bad_frames_are_refused_in_one_line(change, message):
    frame = change(tidy(noise(5, 4, questions=3, instances=2)))
    with pytest.raises(GumbenchError, match=message):
        rank_estimators(frame)


def test_bad_options_are_refused():
    frame = tidy(noise(6, 3, questions=3, instances=2))
    with pytest.raises(GumbenchError, match="blocks must be one of"):
        rank_estimators(frame, blocks="seed")
    with pytest.raises(GumbenchError, match="alpha"):
        rank_estimators(frame, alpha=1.5)


def test_the_critical_difference_diagram_is_a_png_with_at_most_about_ten_rank_labels():
    import matplotlib.pyplot as plt

    from gumbench.benchmarks.sweep.aggregate import thin_rank_labels

    ranking = rank_estimators(tidy(noise(7, 40, questions=5, instances=2)))
    png = cd_diagram_png(ranking)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    from autorank import plot_stats

    fig, ax = plt.subplots()
    plot_stats(ranking.result, allow_insignificant=True, ax=ax)
    thin_rank_labels(ax, 40)
    shown = [t.get_text() for t in ax.texts if t.get_text().isdigit() and t.get_visible()]
    plt.close(fig)
    assert sorted(map(int, shown)) == [1, 5, 10, 15, 20, 25, 30, 35, 40]
