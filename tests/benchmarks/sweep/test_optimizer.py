"""Per-section optimizers in sweep configs (``optimizer = "adam"`` or ``"radam"``): absent changes
nothing (ids, seeds, rows), given it reaches train() and enters the unit's identity, bad values fail
with one line before anything is written."""

import pytest
import torch

from gumbench.benchmarks.sweep import expand_units, run_sweep
from gumbench.benchmarks.sweep.config import OPTIMIZERS, Unit, derive_seed
from gumbench.benchmarks.training import train
from gumbench.benchmarks.training.base import OPTIMIZERS as TRAIN_OPTIMIZERS
from gumbench.errors import GumbenchError
from tests.benchmarks.sweep.sweeps import assert_training_key_refused


def tiny(optimizer=None, lr=None, steps=3):
    section = {"tasks": ["digits-vae"], "estimators": ["st-gumbel", "reinmax"], "steps": steps, "eval_every": steps}
    if optimizer is not None:
        section["optimizer"] = optimizer
    if lr is not None:
        section["lr"] = lr
    return {"name": "opt", "repetitions": 2, "training": section}


def test_the_configs_names_are_trains_optimizers():
    assert OPTIMIZERS == tuple(TRAIN_OPTIMIZERS)
    assert TRAIN_OPTIMIZERS == {"adam": torch.optim.Adam, "radam": torch.optim.RAdam}


def test_without_the_key_units_ids_and_seeds_are_as_before():
    units, _ = expand_units(tiny(lr=5e-4))
    for u in units:
        assert u.optimizer is None
        assert u.seed == derive_seed(0, "training", u.task, u.estimator, u.repetition, 5e-4)
        before = Unit(
            u.kind, u.task, u.estimator, u.repetition, u.seed, u.budget, u.eval_every, u.lr, u.gradient_checkpoints
        )
        assert u.unit_id == before.unit_id  # a Unit made without the field, as before it existed
    assert derive_seed(0, "training", "x", "y", 0, None, None) == derive_seed(0, "training", "x", "y", 0)


def test_optimizer_enters_id_and_seed_only_when_given():
    plain, _ = expand_units(tiny())
    adam, _ = expand_units(tiny("adam"))
    radam, _ = expand_units(tiny("radam"))
    assert {u.optimizer for u in adam} == {"adam"} and {u.optimizer for u in radam} == {"radam"}
    ids = [{u.unit_id for u in units} for units in (plain, adam, radam)]
    seeds = [{u.seed for u in units} for units in (plain, adam, radam)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
    assert not (seeds[0] & seeds[2]) and not (seeds[1] & seeds[2])


def test_two_blocks_differing_only_in_optimizer_are_distinct_units():
    config = {"name": "two", "training": [tiny("adam")["training"], tiny("radam")["training"]]}
    units, _ = expand_units(config)
    assert len(units) == 4 and len({u.unit_id for u in units}) == 4  # 1 repetition, 2 estimators, 2 blocks


def test_the_units_optimizer_reaches_training_and_its_rows(tmp_path):
    run = run_sweep(tiny("radam", lr=0.01), out=tmp_path / "runs", progress=False)
    frame = run.frame()
    assert set(frame["optimizer"]) == {"radam"} and set(frame["lr"]) == {0.01}
    unit = next(u for u in run.units if u.estimator.startswith("st-gumbel") and u.repetition == 0)
    rows = frame[(frame["unit_id"] == unit.unit_id) & (frame["metric"] == "loss")].sort_values("step")["value"].tolist()
    radam = train("digits-vae", "st-gumbel", steps=3, seed=unit.seed, eval_every=3, lr=0.01, optimizer="radam")
    adam = train("digits-vae", "st-gumbel", steps=3, seed=unit.seed, eval_every=3, lr=0.01)
    assert rows == pytest.approx(radam["loss"].tolist(), rel=1e-6)
    assert rows[-1] != pytest.approx(adam["loss"].iloc[-1], rel=1e-6), "RAdam's steps differ from Adam's"
    assert "optimizer" not in run_sweep(tiny(), out=tmp_path / "plain", progress=False).frame().columns


def test_train_defaults_to_adam_and_refuses_other_names():
    explicit = train("digits-vae", "st-gumbel", steps=2, seed=1, eval_every=2, optimizer="adam")
    default = train("digits-vae", "st-gumbel", steps=2, seed=1, eval_every=2)
    assert explicit["loss"].tolist() == default["loss"].tolist()
    with pytest.raises(GumbenchError) as info:
        train("digits-vae", "st-gumbel", steps=2, optimizer="sgd")
    assert str(info.value) == "train: optimizer must be one of adam, radam, got 'sgd'"


@pytest.mark.parametrize("text, fragment", [
    ('optimizer = "sgd"', "[training] optimizer must be one of 'adam', 'radam', got 'sgd'"),
    ('optimizer = "RAdam"', "[training] optimizer must be one of 'adam', 'radam', got 'RAdam'"),
    ('optimizer = ""', "[training] optimizer must be one of 'adam', 'radam', got ''"),
    ("optimizer = 1", "[training] optimizer must be one of 'adam', 'radam', got 1"),
    ("optimizer = true", "[training] optimizer must be one of 'adam', 'radam', got True"),
    ('optimizer = ["adam"]', "[training] optimizer must be one of 'adam', 'radam', got ['adam']"),
])
def test_bad_optimizers_fail_with_one_line_before_writing(tmp_path, text, fragment):
    assert_training_key_refused(tmp_path, text, fragment)


def test_optimizer_is_refused_in_gradstats_sections():
    with pytest.raises(GumbenchError, match=r"unknown key 'optimizer' in \[gradstats\]"):
        expand_units({"gradstats": {"tasks": ["bernoulli"], "estimators": ["st-gumbel"], "optimizer": "radam"}})
