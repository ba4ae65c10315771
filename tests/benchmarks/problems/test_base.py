"""The GradientProblem interface: every registered problem keeps its contract, a user's own problem is measured
by the same function, and nothing outside the package asks which kind of problem it holds."""

import math
import pathlib
import re

import pytest
import torch

from gumbench.benchmarks import gradient_statistics, problem_statistics
from gumbench.benchmarks.problems import GradientProblem, LogitsProblem, Reference, make_problem, registry
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator

SMALL = {"quantizer-smoothed": "quantizer-smoothed[reference_samples=1024]"}  # the default reference takes 2^20 pairs


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_problem_keeps_the_contract(name):
    problem = make_problem(SMALL.get(name, name))
    assert isinstance(problem, GradientProblem)
    reference = problem.reference()
    assert isinstance(reference, Reference) and reference.gradient.dtype == torch.float64
    assert tuple(reference.gradient.shape) == problem.shape
    assert problem.reference() is reference  # computed once per instance
    defaults = problem.default_estimators()
    assert defaults
    for spec in defaults[:3]:
        est = make_estimator(spec).train()
        assert problem.incompatibility(est) is None, spec
        problem.check_estimator(est)
        assert problem.rows_at_once(est, None, 10) >= 1 and problem.rows_at_once(est, 5, 10) == 5
        draws = problem.draw(est, 3, torch.Generator().manual_seed(0))
        assert draws.shape == (3, math.prod(problem.shape)) and draws.dtype == torch.float64


def test_a_registered_problem_and_the_same_logits_given_directly_measure_the_same():
    toy = make_problem("categorical[groups=2,categories=3]")
    direct = problem_statistics("st-gumbel", LogitsProblem(toy.logits, toy.loss), samples=400, seed=3)
    named = problem_statistics("st-gumbel", "categorical[groups=2,categories=3]", samples=400, seed=3)
    wrapped = gradient_statistics("st-gumbel", toy.logits, toy.loss, samples=400, seed=3)
    for s in (named, wrapped):
        assert s.mse == direct.mse and s.bias == direct.bias and torch.equal(s.mean_gradient, direct.mean_gradient)


class Quadratic(GradientProblem):
    """A user's own problem: the gradient of E[(x - target)^2] w.r.t. a scalar location, x ~ N(mu, 1), estimated by
    the reparameterized draw; exact gradient 2 (mu - target). Estimators are ignored (one 'estimator' is the draw)."""

    spec = "quadratic-location"
    shape = (1,)

    def __init__(self, mu=0.5, target=2.0):
        self.mu, self.target = mu, target

    def compute_reference(self):
        return Reference(torch.tensor([2 * (self.mu - self.target)], dtype=torch.float64), None, None)

    def incompatibility(self, estimator):
        return None

    def rows_at_once(self, estimator, chunk_size, samples, owner="problem_statistics"):
        return min(samples, chunk_size or 64)

    def draw(self, estimator, rows, generator):
        x = self.mu + torch.randn(rows, 1, generator=generator, dtype=torch.float64)
        return 2 * (x - self.target)

    def default_estimators(self):
        return ["st-gumbel"]


def test_a_users_own_problem_is_measured_unbiased_with_the_variance_it_has():
    s = problem_statistics("st-gumbel", Quadratic(), samples=20_000, seed=0, confidence=0.999)
    assert s.bias.low == 0.0  # unbiased: the interval reaches 0
    assert s.total_variance.contains(4.0)  # Var[2 x] = 4
    assert s.exact_norm == pytest.approx(3.0)


def test_an_estimator_a_problem_refuses_is_refused_in_one_line_before_any_draw():
    with pytest.raises(GumbenchError, match="VQ estimator: it takes vectors and a codebook, not logits"):
        problem_statistics("vq-commitment", "categorical", samples=10)
    with pytest.raises(GumbenchError, match="cannot be measured on vq-distance"):
        problem_statistics("fsq", "vq-distance", samples=10)


def test_optimize_refuses_a_problem_without_logits_in_one_line():
    from gumbench.benchmarks.optimize import optimize

    with pytest.raises(
        GumbenchError, match="has no logits to optimize; problems with logits: bernoulli, categorical, polynomial"
    ):
        optimize("vq-distance", "st-gumbel", steps=2)


def test_no_module_outside_the_problems_package_asks_which_kind_of_problem_it_holds():
    root = pathlib.Path(__file__).resolve().parents[3] / "gumbench"
    kinds = r"(QuantizerProblem|ToyTask|LogitsProblem|LogitsGradient|DistanceVQ|SmoothedQuantizer|ElboImageProblem)"
    offenders = [
        f"{path.relative_to(root)}: {line.strip()}"
        for path in root.rglob("*.py")
        if "problems" not in path.parts
        for line in path.read_text().splitlines()
        if re.search(rf"isinstance\([^)]*{kinds}", line)
    ]
    assert offenders == []
