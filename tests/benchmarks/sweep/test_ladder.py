"""Ladder orderings from synthetic sweep rows: an ordering both last rungs resolve the same way is settled;
one that flips, that an interval reaching 0 leaves open, or whose last rung is not reached yet is not."""

import numpy as np
import pandas as pd
import pytest

from gumbench.benchmarks.sweep import expand_units
from gumbench.benchmarks.sweep.ladder import NOT_SETTLED, config_ladders, ladder_orderings
from gumbench.errors import GumbenchError
from gumbench.intervals import welch_difference


def rows(means: dict, seeds=5, spread=0.1, seed=0, task="t", skip=()):
    """Sweep rows: per estimator and rung, ``seeds`` values around means[estimator][rung]."""
    rng = np.random.default_rng(seed)
    out = []
    for est, by_rung in means.items():
        for rung, mean in by_rung.items():
            for rep in range(seeds):
                if (est, rung, rep) in skip:
                    continue
                out.append({"task": task, "estimator": est, "repetition": rep, "step": rung,
                            "metric": "eval_reconstruction", "value": mean + spread * rng.standard_normal()})
                out.append({"task": task, "estimator": est, "repetition": rep, "step": rung, "metric": "loss",
                            "value": 0.0})
    return pd.DataFrame(out)


def pair(frame, **kw):
    result = ladder_orderings(frame, **kw)
    assert result["verdict"].nunique() == 1 and result["settled"].nunique() == 1
    return result


def test_an_ordering_both_last_rungs_resolve_is_settled():
    frame = rows({"a": {1: 3.0, 4: 1.0, 16: 1.0}, "b": {1: 1.0, 4: 2.0, 16: 2.0}})
    result = pair(frame)
    assert result["ordering"].tolist() == ["b < a", "a < b", "a < b"]  # the first rung's ordering is overturned
    assert result["settled"].all() and result["verdict"].iloc[0] == "a < b at 4 and 16 steps"
    last = result.iloc[-1]
    a = frame[(frame.estimator == "a") & (frame.step == 16) & (frame.metric == "eval_reconstruction")]["value"]
    b = frame[(frame.estimator == "b") & (frame.step == 16) & (frame.metric == "eval_reconstruction")]["value"]
    expected = welch_difference(a.to_numpy(), b.to_numpy())
    assert (last["difference"], last["low"], last["high"]) == pytest.approx(tuple(expected), rel=1e-12)
    assert (last["wins"], last["paired"], last["n_a"], last["n_b"]) == (5, 5, 5, 5)


def test_an_ordering_that_flips_at_the_last_rung_is_not_settled():
    result = pair(rows({"a": {1: 1.0, 4: 1.0, 16: 3.0}, "b": {1: 2.0, 4: 2.0, 16: 2.0}}))
    assert result["ordering"].tolist() == ["a < b", "a < b", "b < a"]
    assert not result["settled"].any()
    assert result["verdict"].iloc[0] == f"{NOT_SETTLED} (a < b at 4 steps, b < a at 16)"


def test_an_interval_reaching_zero_leaves_it_open():
    result = pair(rows({"a": {1: 1.0, 4: 1.0, 16: 1.0}, "b": {1: 2.0, 4: 2.0, 16: 1.0}}, spread=0.3))
    assert result["ordering"].iloc[-1] == "unresolved" and result["low"].iloc[-1] < 0 < result["high"].iloc[-1]
    assert result["verdict"].iloc[0] == f"{NOT_SETTLED} (unresolved at 4 or 16 steps)"


def test_a_rung_not_reached_yet_is_not_settled_though_the_rungs_reached_agree():
    frame = rows({"a": {1: 1.0, 4: 1.0}, "b": {1: 2.0, 4: 2.0}})
    result = pair(frame, rungs=[1, 4, 16])
    assert result["rung"].tolist() == [1, 4, 16] and result["ordering"].tolist() == ["a < b", "a < b", "unresolved"]
    assert result["verdict"].iloc[0] == f"{NOT_SETTLED} (rung 16 not reached)"
    assert pair(frame)["settled"].all()  # without the ladder, the rungs reached are the ladder


def test_wins_count_the_repetitions_both_sides_reached():
    frame = rows({"a": {1: 1.0, 4: 1.0, 16: 1.0}, "b": {1: 2.0, 4: 2.0, 16: 2.0}}, skip={("b", 16, 0), ("a", 16, 3)})
    last = pair(frame).iloc[-1]
    assert (last["n_a"], last["n_b"], last["paired"], last["wins"]) == (4, 4, 3, 3)


def test_pairs_and_tasks():
    frame = pd.concat([rows({"a": {1: 1, 2: 1, 3: 1}, "b": {1: 2, 2: 2, 3: 2}, "c": {1: 3, 2: 3, 3: 3}}),
                       rows({"a": {1: 1, 2: 1, 3: 1}, "b": {1: 2, 2: 2, 3: 2}}, task="u")])
    result = ladder_orderings(frame, rungs={"t": [1, 2, 3]})  # task u has no ladder: left out
    assert sorted(set(zip(result["a"], result["b"]))) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert set(result["task"]) == {"t"} and result["settled"].all()


def test_instances_are_the_replicate_where_rows_have_them():
    frame = rows({"a": {1: 1.0, 2: 1.0, 3: 1.0}, "b": {1: 2.0, 2: 2.0, 3: 2.0}})
    frame = frame.rename(columns={"repetition": "instance"})
    assert ladder_orderings(frame)["paired"].tolist() == [5, 5, 5]


def test_rows_without_the_columns_are_refused():
    with pytest.raises(GumbenchError, match="ladder orderings need sweep rows with columns task"):
        ladder_orderings(pd.DataFrame({"task": ["t"], "value": [1.0]}))


def test_config_ladders_come_from_the_units():
    section = {"tasks": ["digits-vae"], "estimators": ["st-gumbel"], "ladder": [10, 40, 160], "eval_every": 160}
    units, _ = expand_units({"name": "l", "training": [section, {"tasks": ["tones"], "estimators": ["reinmax"]}]})
    assert config_ladders(units) == {units[0].task: (10, 40, 160)} and units[0].task.startswith("digits-vae")
