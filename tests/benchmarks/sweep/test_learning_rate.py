"""Per-section learning rates in sweep configs: absent changes nothing (ids, seeds, rows of the default
sweep), given it reaches train() and enters the unit's identity, bad values fail with one line."""

import glob
from pathlib import Path

import pandas as pd
import pytest

from gumbench.benchmarks.sweep import expand_units, load_config, load_results, run_sweep
from gumbench.benchmarks.sweep.config import derive_seed
from gumbench.benchmarks.training import train
from gumbench.errors import GumbenchError
from tests.benchmarks.sweep.sweeps import assert_training_key_refused, comparable

ROOT = Path(__file__).resolve().parents[3]


def tiny(lr=None, steps=3):
    section = {"tasks": ["digits-vae"], "estimators": ["st-gumbel", "reinmax"], "steps": steps, "eval_every": steps}
    if lr is not None:
        section["lr"] = lr
    return {"name": "lr", "repetitions": 2, "training": section}


def test_default_sweep_keeps_the_committed_reference_runs_unit_ids_and_seeds():
    (path,) = glob.glob(str(ROOT / "results/reference/*/results.parquet"))
    reference = pd.read_parquet(path, columns=["unit_id", "seed"]).drop_duplicates("unit_id")
    units, _ = expand_units(load_config(None))
    current = {u.unit_id: u.seed for u in units}
    # the committed reference run is the default sweep: every unit, with its id and seed
    assert dict(zip(reference["unit_id"], reference["seed"])) == current
    assert all(u.lr is None for u in units)


def test_lr_enters_id_and_seed_only_when_given():
    plain, _ = expand_units(tiny())
    given, _ = expand_units(tiny(lr=5e-4))
    other, _ = expand_units(tiny(lr=1e-3))
    assert {u.lr for u in given} == {5e-4} and {u.lr for u in plain} == {None}
    ids = [{u.unit_id for u in units} for units in (plain, given, other)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
    assert derive_seed(0, "training", "x", "y", 0) == derive_seed(0, "training", "x", "y", 0, None)
    assert derive_seed(0, "training", "x", "y", 0) != derive_seed(0, "training", "x", "y", 0, 5e-4)
    # an integer learning rate is the same unit as the equal float
    assert [u.unit_id for u in expand_units(tiny(lr=1))[0]] == [u.unit_id for u in expand_units(tiny(lr=1.0))[0]]


def test_two_blocks_differing_only_in_lr_are_distinct_units():
    config = {"name": "two", "training": [tiny(lr=5e-4)["training"], tiny(lr=1e-3)["training"]]}
    units, _ = expand_units(config)
    assert len(units) == 4 and len({u.unit_id for u in units}) == 4


def test_the_units_learning_rate_reaches_training_and_its_rows(tmp_path):
    run = run_sweep(tiny(lr=0.05), out=tmp_path / "runs", progress=False)
    frame = run.frame()
    assert set(frame["lr"]) == {0.05}
    unit = next(u for u in run.units if u.estimator.startswith("st-gumbel") and u.repetition == 0)
    direct = train("digits-vae", "st-gumbel", steps=3, seed=unit.seed, eval_every=3, lr=0.05)
    rows = frame[(frame["unit_id"] == unit.unit_id) & (frame["metric"] == "loss")].sort_values("step")
    assert rows["value"].tolist() == pytest.approx(direct["loss"].tolist(), rel=1e-6)
    slow = train("digits-vae", "st-gumbel", steps=3, seed=unit.seed, eval_every=3)  # the default 2e-3 differs
    assert rows["value"].iloc[-1] != pytest.approx(slow["loss"].iloc[-1], rel=1e-6)
    assert "lr" not in run_sweep(tiny(), out=tmp_path / "plain", progress=False).frame().columns


def test_a_sweep_with_learning_rates_resumes_to_the_same_rows(tmp_path):
    first = run_sweep(tiny(lr=5e-4), out=tmp_path / "runs", progress=False)
    units = sorted(first.folder.glob("units/*.parquet"))
    units[0].unlink()  # as if killed before that unit finished
    (first.folder / "results.parquet").unlink()
    resumed = run_sweep(tiny(lr=5e-4), out=tmp_path / "runs", progress=False)
    assert resumed.folder == first.folder
    fresh = run_sweep(tiny(lr=5e-4), out=tmp_path / "fresh", progress=False)
    pd.testing.assert_frame_equal(comparable(load_results([resumed])), comparable(load_results([fresh])))


@pytest.mark.parametrize("text, fragment", [
    ("lr = 0", "[training] lr must be a number in (0, 1000], got 0"),
    ("lr = -1e-3", "[training] lr must be a number in (0, 1000], got -0.001"),
    ("lr = 2000.0", "[training] lr must be a number in (0, 1000], got 2000.0"),
    ("lr = nan", "[training] lr must be a number in (0, 1000], got nan"),
    ("lr = inf", "[training] lr must be a number in (0, 1000], got inf"),
    ('lr = "5e-4"', "[training] lr must be a number in (0, 1000], got '5e-4'"),
    ("lr = true", "[training] lr must be a number in (0, 1000], got True"),
])
def test_bad_learning_rates_fail_with_one_line_before_writing(tmp_path, text, fragment):
    assert_training_key_refused(tmp_path, text, fragment)


def test_lr_is_refused_in_gradstats_sections(tmp_path):
    with pytest.raises(GumbenchError, match=r"unknown key 'lr' in \[gradstats\]"):
        expand_units({"gradstats": {"tasks": ["bernoulli"], "estimators": ["st-gumbel"], "lr": 1e-3}})
