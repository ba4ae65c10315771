"""Problem instances (the replicate of a gradient question), vanishing references, and the loss evaluations per
estimate that the equal-cost views compare at."""

import pytest
import torch

from gumbench.benchmarks.problems import has_instances, instance_spec, make_problem
from gumbench.benchmarks.sweep.config import Unit, expand_units
from gumbench.benchmarks.sweep.runner import run_unit
from gumbench.estimators import make_estimator


def test_an_instance_is_the_problem_with_its_seed_moved_on():
    assert instance_spec("categorical[loss=linear]", 0) == "categorical[loss=linear,seed=0]"
    assert instance_spec("categorical[seed=5]", 2) == "categorical[seed=7]"
    first, second = make_problem(instance_spec("categorical", 0)), make_problem(instance_spec("categorical", 1))
    assert torch.equal(first.logits, make_problem("categorical").logits), "instance 0 is the question's own problem"
    assert not torch.equal(first.logits, second.logits), "another instance draws other logits"
    a, b = make_problem(instance_spec("vq-distance", 0)), make_problem(instance_spec("vq-distance", 3))
    assert not torch.equal(a.codebook, b.codebook) and not torch.equal(a.z, b.z)
    # a fixed problem has one instance
    assert instance_spec("bernoulli", 4) == "bernoulli" and not has_instances("bernoulli")
    assert has_instances("polynomial[p=3]") and has_instances("quantizer-smoothed")


def test_a_sweep_section_measures_each_repetition_on_its_own_instance():
    units, _ = expand_units({"repetitions": 2, "gradstats": {"tasks": ["categorical"], "estimators": ["st-gumbel"],
                                                              "samples": 8, "repetitions": 5}})
    assert [u.repetition for u in units] == [0, 1, 2, 3, 4], "a section's repetitions override the top level's"


def test_a_reference_at_rounding_level_vanishes_and_a_carrying_one_does_not():
    cold = make_problem("vq-distance[T=0.01,wrt=z]")  # every draw is the nearest code: the gradient in z is ~1e-17
    assert cold.vanishes(cold.reference())
    for spec in ("vq-distance[T=1,wrt=z]", "vq-distance[T=0.01,wrt=codebook]", "categorical"):
        problem = make_problem(spec)
        assert not problem.vanishes(problem.reference()), spec


def test_a_vanishing_instance_is_stored_as_such_without_statistics():
    unit = Unit("gradstats", "vq-distance[T=0.01,wrt=z]", "st-gumbel", 0, 1, 16)
    rows = run_unit(unit)
    assert set(rows["metric"]) == {"vanishing_gradient", "exact_norm", "loss_evaluations"}
    assert rows.set_index("metric").loc["vanishing_gradient", "value"] == 1.0
    carrying = run_unit(Unit("gradstats", "vq-distance[T=1,wrt=z]", "st-gumbel", 2, 1, 16)).set_index("metric")
    assert carrying.loc["vanishing_gradient", "value"] == 0.0 and carrying.loc["mse", "value"] > 0
    assert (carrying["instance"] == 2).all() and carrying.loc["seconds_per_estimate", "value"] > 0


@pytest.mark.parametrize(("problem", "estimator", "evaluations"), [
    ("categorical", "indecater", 4 * 8),  # every substitution of every group's category
    ("vq-distance", "indecater", 2 * 16),  # 2 groups of 16 codes
    ("categorical", "reinforce[baseline=loo]", 4),  # its 4 samples
    ("categorical", "disarm", None),  # refused there (8 categories): not measured
    ("polynomial", "disarm", 2),  # the antithetic pair
    ("vq-distance", "vq-commitment", 1),
    ("categorical", "st-gumbel", 1),
])
def test_loss_evaluations_per_estimate_on_each_problem(problem, estimator, evaluations):
    problem, est = make_problem(problem), make_estimator(estimator)
    if evaluations is None:
        assert problem.incompatibility(est)
        return
    assert problem.loss_evaluations(est) == evaluations
