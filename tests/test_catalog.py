"""The catalog behind ``gumbench list``: one row per registered plugin, with its declared defaults and choices."""

import pytest

from gumbench.benchmarks.problems import registry as task_registry
from gumbench.benchmarks.training import registry as training_registry
from gumbench.catalog import describe
from gumbench.errors import GumbenchError
from gumbench.estimators import registry as estimator_registry
from gumbench.registry import format_value

KINDS = {
    "estimators": (estimator_registry, "family"),
    "tasks": (task_registry, "formula"),
    "training": (training_registry, "default_steps"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_rows_cover_every_registered_name_with_its_declarations(kind):
    registry, second = KINDS[kind]
    rows = describe(kind)
    assert [row[0] for row in rows] == registry.names(), "every registered name, once, sorted"
    for name, column, parameters, description in rows:
        cls = registry.get(name)
        shown = column.split("; ")[0] if kind == "estimators" else column
        assert shown == str(getattr(cls, second)) and description == cls.description and description
        if kind == "estimators":  # and the cost the equal-cost views compare at
            assert f"; {cls().loss_evaluations}" in column and "per estimate" in column, column
        if not cls.defaults:
            assert parameters == "-", name
            continue
        shown = parameters.split(", ")
        assert len(shown) == len(cls.defaults), (name, parameters)
        for text, (key, default) in zip(shown, cls.defaults.items()):
            assert text.startswith(f"{key}={format_value(default)}"), (name, text)
            allowed = cls.choices.get(key)
            assert text.endswith(
                f" ({'|'.join(map(format_value, allowed))})" if allowed else f"{key}={format_value(default)}"
            ), (name, text)


def test_rows_by_hand():
    estimators = {row[0]: row for row in describe("estimators")}
    assert estimators["reinforce"][1:3] == ("score-function; 1 loss evaluation per estimate",
                                            "baseline=none (none|ema|loo), samples=0, decay=0.9")
    assert estimators["st-gumbel"][1:3] == ("relaxation; 1 loss evaluation per estimate", "tau=1")
    assert estimators["disarm"][1] == "score-function; 2 loss evaluations per estimate"  # the antithetic pair
    assert estimators["indecater"][1] == "score-function; 1 x G x V loss evaluations per estimate"
    assert estimators["gst"][2] == "tau=1, variant=1.0 (1.0|p)"
    assert estimators["disarm"][2] == "-"
    assert estimators["vq-commitment"][1] == "vq; 1 loss evaluation per estimate"
    assert estimators["vq-commitment"][2].startswith("beta=0.25, ema=false, decay=0.99")
    tasks = {row[0]: row for row in describe("tasks")}
    assert tasks["categorical"][2] == "loss=quadratic (quadratic|linear), groups=4, categories=8, scale=1, seed=0"
    assert tasks["polynomial"][2] == "p=2 (1.5|2|3), L=8, seed=0"
    assert tasks["bernoulli"][2] == "-" and "0.45" in tasks["polynomial"][1]
    training = {row[0]: row for row in describe("training")}
    assert training["digits-vae"][1:3] == ("300", "latents=4, categories=8, hidden=128, batch=64, code_dim=8")
    assert {"digits-vae", "gmm-vq", "tones", "wav2vec2", "logmel-vqvae"} <= set(training)


def test_unknown_kind_raises():
    with pytest.raises(GumbenchError, match="cannot describe 'things'; allowed: estimators, tasks, training"):
        describe("things")
    with pytest.raises(GumbenchError):
        describe("estimator")
