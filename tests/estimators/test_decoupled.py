"""Decoupled ST-GS: st-gumbel bit for bit at unit temperatures, the replayed forward (tempered argmax) and backward
(Jacobian at tau_b), the tempered sampling frequencies, and the exact mean and variance on binary toys by quadrature
over the logistic Gumbel difference against the sampled statistics."""

import math

import pytest
import torch
from scipy import integrate, stats
from scipy.special import expit

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.benchmarks.problems.enumeration import enumerate_configurations
from gumbench.estimators import make_estimator
from gumbench.kernels.reference import gumbel_from_uniform, uniform_open
from tests.estimators.enumeration import LEVEL, SAMPLES, check_against_enumeration, jacobian_product


def gen(seed):
    return torch.Generator().manual_seed(seed)


def target_loss(y):
    weights = torch.linspace(-1, 2, y.shape[-2] * y.shape[-1], dtype=y.dtype).reshape(y.shape[-2:])
    return ((y - weights).pow(2) * weights.exp()).sum((-2, -1))


def draw(spec, logits, seed):
    leaf = logits.clone().requires_grad_(True)
    out = make_estimator(spec)(leaf, target_loss, generator=gen(seed))
    out.surrogate.sum().backward()
    return out, leaf.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unit_temperatures_are_st_gumbel_bit_for_bit(dtype):
    logits = torch.randn(128, 3, 6, generator=gen(0), dtype=dtype)
    logits[:16, :, 2] = -math.inf
    out, grad = draw("decoupled-st-gumbel[tau=1,tau_forward=1]", logits, seed=1)
    ref, ref_grad = draw("st-gumbel[tau=1]", logits, seed=1)
    assert torch.equal(out.indices, ref.indices) and torch.equal(out.value, ref.value)
    assert torch.equal(out.surrogate, ref.surrogate) and torch.equal(grad, ref_grad)
    # at another equal temperature it is the paper's ST-GS, softmax(logits/tau + g), not st-gumbel's softmax((logits +
    # g)/tau)
    other, other_grad = draw("decoupled-st-gumbel[tau=0.5,tau_forward=0.5]", logits, seed=1)
    assert not torch.equal(other.indices, ref.indices)


@pytest.mark.parametrize("tau_b, tau_f", [(0.3, 1.0), (1.3, 1.6), (2.0, 0.5)])
def test_forward_is_the_tempered_argmax_and_backward_the_jacobian_at_tau_b(tau_b, tau_f):
    logits = 2 * torch.randn(64, 2, 5, generator=gen(2), dtype=torch.float64)
    upstream = torch.randn(64, 2, 5, generator=gen(3), dtype=torch.float64)
    leaf = logits.clone().requires_grad_(True)
    est = make_estimator(f"decoupled-st-gumbel[tau={tau_b},tau_forward={tau_f}]")
    out = est(leaf, lambda y: (y * upstream).sum((-2, -1)), generator=gen(4))
    out.surrogate.sum().backward()
    g = gumbel_from_uniform(
        uniform_open(logits.shape, generator=gen(4), dtype=torch.float64)
    )  # the same draw, replayed
    assert torch.equal(out.indices, (logits / tau_f + g).argmax(-1))
    torch.testing.assert_close(leaf.grad, jacobian_product(torch.softmax(logits / tau_b + g, -1), upstream) / tau_b)
    assert est.has_temperature and est.temperature == tau_b
    assert est.with_params(tau=0.7).params == {
        "tau": 0.7,
        "tau_forward": tau_f,
    }  # --tau and schedules move the backward one


@pytest.mark.parametrize("tau_f", [0.5, 1.0, 2.5])
def test_forward_samples_the_tempered_distribution(tau_f):
    logits = torch.tensor([[1.5, 0.2, -0.7, 0.0, 2.0, -3.0]])
    out = make_estimator(f"decoupled-st-gumbel[tau_forward={tau_f}]")(
        logits.expand(SAMPLES, 1, 6), lambda y: y.sum((-2, -1)), generator=gen(5)
    )
    counts = torch.bincount(out.indices.reshape(-1), minlength=6).double()
    for tau, should_fit in ((tau_f, True), (1.0, tau_f == 1.0)):
        expected = torch.softmax(logits.double() / tau, -1)[0] * SAMPLES
        p = stats.chisquare(counts.numpy(), expected.numpy()).pvalue
        assert (p > 1e-3) == should_fit, (tau, counts, expected, p)


def test_eval_mode_is_the_noiseless_argmax_without_gradient():
    logits = torch.randn(32, 2, 5, generator=gen(6), requires_grad=True)
    est = make_estimator("decoupled-st-gumbel[tau=0.5,tau_forward=3]").eval()
    out = est(logits, target_loss, generator=gen(7))
    assert torch.equal(out.indices, logits.argmax(-1)) and not out.surrogate.requires_grad


def binary_moments(logits, loss, tau_b, tau_f):
    """Exact mean and per-coordinate variance of decoupled ST-GS on G binary groups, by quadrature.

    Group g with a = l1 - l0 and L = g1 - g0 ~ Logistic(0, 1): D_g = 1 iff a/tau_f + L > 0, and the estimate for
    logit 1 is w(L) (u1 - u0) with w(L) = s (1 - s) / tau_b, s = sigmoid(a/tau_b + L) (logit 0 gets the negative),
    u the loss gradient at the one-hot of the whole configuration D. Given D_g = d, the other groups are independent
    draws with P(D_h = 1) = sigmoid(a_h/tau_f), so E[e] and E[e^2] sum over configurations the integrals of w and w^2
    against the logistic density over d's half-line times the other groups' probabilities."""
    logits = logits.double()
    groups = logits.shape[0]
    index = enumerate_configurations(groups, 2)
    onehot = torch.nn.functional.one_hot(index, 2).double().requires_grad_(True)
    (u,) = torch.autograd.grad(loss(onehot).sum(), onehot)
    du = u[..., 1] - u[..., 0]  # (N, G)
    a = (logits[:, 1] - logits[:, 0]).tolist()
    density = lambda t: expit(t) * expit(-t)  # noqa: E731
    moments = torch.zeros(groups, 2, 2, dtype=torch.float64)  # [g, d, power - 1]
    for g in range(groups):
        threshold = -a[g] / tau_f
        w = lambda t, g=g: density(a[g] / tau_b + t) / tau_b  # noqa: E731
        for d, (lo, hi) in enumerate([(-math.inf, threshold), (threshold, math.inf)]):
            for power in (1, 2):
                value, _ = integrate.quad(
                    lambda t: w(t) ** power * density(t), lo, hi, epsabs=0, epsrel=1e-11, limit=200
                )
                moments[g, d, power - 1] = value
    forward = torch.sigmoid(torch.tensor(a, dtype=torch.float64) / tau_f)
    p_d = torch.where(index == 1, forward, 1 - forward)  # (N, G): P(D_h = d_h) under the tempered forward
    others = torch.stack([p_d[:, [h for h in range(groups) if h != g]].prod(-1) for g in range(groups)], -1)  # (N, G)
    m1 = moments[torch.arange(groups), index, 0]  # (N, G): E[w; D_g = d_g]
    m2 = moments[torch.arange(groups), index, 1]
    first = (others * m1 * du).sum(0)
    second = (others * m2 * du.pow(2)).sum(0)
    mean = torch.stack([-first, first], -1)
    variance = (second - first.pow(2)).unsqueeze(-1).expand(groups, 2)
    return mean, variance


@pytest.mark.parametrize("task", ["bernoulli", "polynomial[L=4,p=3]"])
@pytest.mark.parametrize("tau_b, tau_f", [(1.0, 1.0), (0.5, 1.0), (1.3, 1.6), (2.0, 0.7)])
def test_exact_mean_and_variance_on_binary_toys_match_the_sampled_ones(task, tau_b, tau_f):
    toy = make_task(task)
    mean, variance = binary_moments(toy.logits, toy.loss, tau_b, tau_f)
    spec = f"decoupled-st-gumbel[tau={tau_b},tau_forward={tau_f}]"
    s = gradient_statistics(spec, toy.logits, toy.loss, SAMPLES, seed=8, confidence=LEVEL)
    check_against_enumeration(s, mean, variance)
    exact, _ = exact_gradient(toy.logits, toy.loss)
    assert s.bias.contains(float((mean - exact).norm())), (s.bias, float((mean - exact).norm()))


def test_quadrature_reproduces_st_gumbel_at_unit_temperatures():
    """The same moments describe st-gumbel[tau=1] (the two are one estimator there): a check of the quadrature
    itself."""
    toy = make_task("polynomial[L=3,p=1.5]")
    mean, variance = binary_moments(toy.logits, toy.loss, 1.0, 1.0)
    s = gradient_statistics("st-gumbel[tau=1]", toy.logits, toy.loss, SAMPLES, seed=9, confidence=LEVEL)
    check_against_enumeration(s, mean, variance)
    shifted, _ = binary_moments(toy.logits, toy.loss, 1.0, 1.6)  # a tempered forward moves the mean: the check can fail
    se = (variance / SAMPLES).sqrt()
    assert ((s.mean_gradient - shifted).abs() > 4 * se).any()
