"""A sweep stopped in the middle of a training unit resumes it from its checkpoint when run again into the same
folder: its rows equal an uninterrupted sweep's bit for bit, and the checkpoints are gone once the units are
stored. Budget ladders evaluate at each rung, and enter the unit's identity only when given."""

import pytest

from gumbench.benchmarks.sweep import expand_units, run_sweep
from gumbench.benchmarks.sweep.config import Unit
from gumbench.benchmarks.sweep.rungs import rung_rows
from gumbench.benchmarks.training import base
from gumbench.errors import GumbenchError
from tests.benchmarks.sweep.sweeps import comparable


def config(**extra):
    section = {"tasks": ["digits-vae"], "estimators": ["st-gumbel", "vq-commitment[ema=true]"], "eval_every": 2}
    return {"name": "resume", "repetitions": 1, "training": section | ({"steps": 8} if not extra else extra)}


def test_a_stopped_sweep_resumes_its_units_from_their_checkpoints(tmp_path, monkeypatch):
    step_row = base._step_row
    calls = []

    def failing(task, configured, run, groups, step, seed, device, lr):
        calls.append(step)
        if len(calls) == 13:  # the second unit's fifth step: the first unit is stored, the second checkpointed
            raise KeyboardInterrupt
        return step_row(task, configured, run, groups, step, seed, device, lr)

    monkeypatch.setattr(base, "_step_row", failing)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config(), out=tmp_path / "a", progress=False, checkpoint_every=0)
    (folder,) = (tmp_path / "a").iterdir()
    assert len(list((folder / "units").glob("*.parquet"))) == 1
    assert len(list((folder / "checkpoints").glob("*.pt"))) == 1  # kept, though the sweep failed
    reached = rung_rows(folder)  # the finished unit's evaluations and the checkpointed one's so far
    assert set(zip(reached["source"], reached["reached"], reached["step"])) == {
        *(("finished", 8, step) for step in (2, 4, 6, 8)), ("checkpoint", 4, 2), ("checkpoint", 4, 4)}
    calls.clear()
    monkeypatch.setattr(base, "_step_row", step_row)
    resumed = run_sweep(config(), out=tmp_path / "a", progress=False, checkpoint_every=0)
    assert not list((folder / "checkpoints").glob("*.pt"))
    whole = run_sweep(config(), out=tmp_path / "b", progress=False)
    assert comparable(resumed.frame()).equals(comparable(whole.frame()))
    rows = whole.frame().set_index(["unit_id", "step", "metric"])["value"]
    keys = zip(reached["unit_id"], reached["step"], reached["metric"])
    assert reached["value"].tolist() == [rows[key] for key in keys]  # what the checkpoint held is what the run gave


def test_a_ladder_evaluates_at_its_rungs_and_its_last_rung_is_the_budget(tmp_path):
    run = run_sweep(config(ladder=[2, 4, 6], eval_every=6), out=tmp_path, progress=False)
    assert {u.budget for u in run.units} == {6} and {u.ladder for u in run.units} == {(2, 4, 6)}
    frame = run.frame()
    assert sorted(frame[frame["metric"] == "eval_code_perplexity"]["step"].unique()) == [2, 4, 6]


def test_without_a_ladder_units_are_as_before():
    units, _ = expand_units(config())
    for u in units:
        assert u.ladder == ()
        before = Unit(u.kind, u.task, u.estimator, u.repetition, u.seed, u.budget, u.eval_every)
        assert u.unit_id == before.unit_id
    laddered, _ = expand_units(config(ladder=[2, 4, 8], eval_every=8))
    assert [u.seed for u in laddered] == [u.seed for u in units]  # the same runs, evaluated at more steps
    assert not {u.unit_id for u in laddered} & {u.unit_id for u in units}


@pytest.mark.parametrize(("section", "message"), [
    ({"ladder": [2, 4]}, "[training] ladder must list at least 3 distinct steps from 1, got [2, 4]"),
    ({"ladder": [0, 2, 4]}, "[training] ladder must list at least 3 distinct steps from 1, got [0, 2, 4]"),
    ({"ladder": [2, 4, 8], "steps": 6}, "[training] a ladder's last rung is the budget: steps = 6 but the last rung "
                                        "is 8 (leave steps out, or make them equal)"),
    ({"ladder": "2,4,8"}, "[training] ladder must be a non-empty list of steps (integers), got '2,4,8'"),
])
def test_a_bad_ladder_is_refused_with_one_line(section, message):
    with pytest.raises(GumbenchError) as exc:
        expand_units(config(**section))
    assert str(exc.value) == message


def test_a_bad_checkpoint_interval_is_refused_before_the_run(tmp_path):
    with pytest.raises(GumbenchError, match="checkpoint interval must be a number of seconds >= 0, got -1"):
        run_sweep(config(), out=tmp_path / "x", progress=False, checkpoint_every=-1)
    assert not (tmp_path / "x").exists()
