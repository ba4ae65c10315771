"""DisARM: unbiased (enumerated over antithetic pairs), zero variance where the pair is deterministic, binary groups
only."""

import pytest
import torch

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.benchmarks.problems.enumeration import enumerate_configurations
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.estimators.enumeration import LEVEL, SAMPLES, check_against_enumeration


def gen(seed):
    return torch.Generator().manual_seed(seed)


def disarm_enumeration(logits, loss):
    """Exact mean and variance of DisARM: per variable the pair (b, b~) is (1,0) or (0,1) with
    probability min(s, 1-s) each, (1,1) with max(2s - 1, 0), (0,0) with max(1 - 2s, 0), s = sigmoid(a)."""
    logits = logits.double()
    a = logits[:, 1] - logits[:, 0]
    s = torch.sigmoid(a)
    pairs = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    pair_prob = torch.stack(
        [torch.minimum(s, 1 - s), torch.minimum(s, 1 - s), (2 * s - 1).clamp_min(0), (1 - 2 * s).clamp_min(0)], -1
    )
    combos = enumerate_configurations(len(a), 4)  # (N, G): which pair each variable has
    b, b_anti = pairs[combos][..., 0], pairs[combos][..., 1]
    prob = pair_prob.gather(-1, combos.T).prod(0)
    f = loss(torch.nn.functional.one_hot(b, 2).double()) - loss(torch.nn.functional.one_hot(b_anti, 2).double())
    grad_a = 0.5 * f[:, None] * (b - b_anti).double() * torch.sigmoid(a.abs())
    est = torch.stack([-grad_a, grad_a], -1)  # w.r.t. (l0, l1)
    mean = (prob[:, None, None] * est).sum(0)
    return mean, (prob[:, None, None] * (est - mean).pow(2)).sum(0)


@pytest.mark.parametrize("task", ["bernoulli", "polynomial[L=4,p=3]", "polynomial[L=3,p=1.5,seed=2]"])
def test_disarm_is_unbiased(task):
    toy = make_task(task)
    mean, variance = disarm_enumeration(toy.logits, toy.loss)
    exact, _ = exact_gradient(toy.logits, toy.loss)
    torch.testing.assert_close(mean, exact, rtol=0, atol=1e-6 * float(exact.abs().max()))  # an identity, any loss
    s = gradient_statistics("disarm", toy.logits, toy.loss, SAMPLES, seed=7, confidence=LEVEL)
    assert s.bias.low == 0.0, s.bias
    check_against_enumeration(s, mean, variance)


def test_disarm_has_zero_variance_where_its_pair_is_deterministic():
    """At a = 0 the pair is (b, 1 - b): one variable's estimate is the constant (f(1) - f(0)) / 4."""
    logits = torch.zeros(1, 2)
    loss = lambda y: (y[..., 1] - 0.6).pow(2).sum(-1)  # noqa: E731
    s = gradient_statistics("disarm", logits, loss, 1000, seed=0)
    assert s.total_variance.value == 0.0
    torch.testing.assert_close(s.mean_gradient, s.exact_gradient)
    # several variables at a = 0 (the bernoulli toy): coordinate i's variance comes only from the
    # others, Var_i = (1/16) sum_{j != i} (f_j(1) - f_j(0))^2 for a separable loss
    toy = make_task("bernoulli")
    delta = torch.tensor([(1 - p) ** 2 - p**2 for p in toy.targets], dtype=torch.float64)
    closed = ((delta.pow(2).sum() - delta.pow(2)) / 16)[:, None].expand(3, 2)
    _, variance = disarm_enumeration(toy.logits, toy.loss)
    torch.testing.assert_close(variance, closed)


def test_disarm_calls_the_loss_once_on_the_pair_and_needs_binary_groups():
    shapes = []

    def loss(y):
        shapes.append(tuple(y.shape))
        return y[..., 1].sum(-1)

    logits = torch.randn(5, 3, 2, generator=gen(0), requires_grad=True)
    out = make_estimator("disarm")(logits, loss, generator=gen(1))
    assert shapes == [(2, 5, 3, 2)]
    assert out.value.shape == (2, 5, 3, 2) and out.indices.shape == (2, 5, 3) and out.loss.shape == (5,)
    with pytest.raises(GumbenchError, match=r"binary variables: logits must have shape \(\.\.\., G, 2\)"):
        make_estimator("disarm")(torch.zeros(4, 3, 5), lambda y: y.sum((-2, -1)))
