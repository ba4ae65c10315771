"""The quantizer problems as sweep units: pairs that cannot run are left out with the reason, the rows
carry the statistics of the gradient measured, the mean estimate's norm and, for a Monte Carlo
reference, its error; the verdict reads them."""

import pytest

from gumbench.benchmarks import make_task, problem_statistics
from gumbench.benchmarks.problems import instance_spec
from gumbench.benchmarks.sweep import expand_units, run_sweep
from gumbench.benchmarks.sweep.config import DEFAULT_CONFIG, sections
from gumbench.benchmarks.sweep.runner import run_unit
from gumbench.benchmarks.sweep.verdict import MISSES, compare, outcomes


def config(tasks, estimators, samples=200):
    return {
        "name": "problems",
        "repetitions": 2,
        "gradstats": {"tasks": tasks, "estimators": estimators, "samples": samples},
    }


def test_incompatible_pairs_are_left_out_with_the_reason():
    units, skipped = expand_units(
        config(
            ["vq-distance", "quantizer-smoothed[quantizer=lfq,reference_samples=4096]", "categorical"],
            ["vq-commitment", "st-gumbel", "lfq"],
        )
    )
    pairs = {(u.task.split("[")[0], u.estimator.split("[")[0]) for u in units}
    assert pairs == {("vq-distance", "vq-commitment"), ("vq-distance", "st-gumbel"), ("quantizer-smoothed", "lfq"),
                     ("categorical", "st-gumbel")}
    assert len(units) == 2 * len(pairs)
    reasons = "\n".join(skipped)
    assert "implicit" in reasons and "own straight-through" in reasons and "VQ estimators take vectors" in reasons


def test_rows_carry_the_statistics_and_equal_problem_statistics():
    units, _ = expand_units(
        config(
            ["vq-distance[T=0.5,wrt=codebook]", "quantizer-smoothed[quantizer=lfq,reference_samples=4096]"],
            ["st-gumbel", "lfq"],
        )
    )
    for unit in units[:1] + units[-1:]:
        rows = run_unit(unit).set_index("metric")
        # repetition r measures instance r: the problem with its seed moved on by r
        stats = problem_statistics(unit.estimator, make_task(instance_spec(unit.task, unit.repetition)), unit.budget,
                                   unit.seed)
        assert rows.loc["mse", "value"] == pytest.approx(stats.mse.value, rel=1e-12)
        assert rows.loc["mean_norm", "value"] == pytest.approx(float(stats.mean_gradient.norm()), rel=1e-12)
        assert ("reference_error" in rows.index) == unit.task.startswith("quantizer-smoothed")


def test_a_straight_through_vq_gradient_in_z_is_judged_as_missing_the_gradient(tmp_path):
    run = run_sweep(config(["vq-distance[T=0.1]"], ["vq-commitment", "straight-through"]), out=tmp_path)
    compared = compare(outcomes(run.frame()))
    st = compared[compared["label"] == "vq-commitment"].iloc[0]
    assert st["warning"] == MISSES and st["standing"] == "degenerate"
    assert compared[compared["label"] == "straight-through"].iloc[0]["standing"] == "best"


def test_the_default_sweep_measures_every_quantizer_problem_kind():
    tasks = [t for table in sections(DEFAULT_CONFIG, "gradstats") for t in table["tasks"]]
    assert any(t.startswith("vq-distance") and "stages=2" in t for t in tasks)
    assert any(t.startswith("quantizer-smoothed") for t in tasks)
    units, _ = expand_units(DEFAULT_CONFIG)
    measured = {(u.task.split("[")[0], u.estimator.split("[")[0]) for u in units if u.kind == "gradstats"}
    for name in (
        "vq-commitment",
        "nsvq",
        "ibq",
        "simvq",
        "st-gumbel",
        "reinforce",
        "reinmax",
        "gumbel-rao",
        "zgr",
        "indecater",
    ):
        assert ("vq-distance", name) in measured, name
    for name in ("residual-vq", "fsq", "lfq"):
        assert any(task != "categorical" and est == name for task, est in measured), name
