"""Analytic properties of Gumbel-Rao, ReinMax, gapped straight-through and DisARM.

ReinMax, GST and DisARM are deterministic functions of a finite random object (the sample D, or
DisARM's antithetic pair), so their exact mean and variance are enumerated here and compared
with (a) the exact gradient, as an identity, and (b) the implementation's sampled statistics,
within confidence intervals. Every statistical check uses a fixed seed and intervals at
confidence LEVEL (99.9%, for the many checks in this file) or 4 standard errors; none is tuned.
"""

import math

import pytest
import torch
from scipy import stats

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.benchmarks.toys import enumerate_configurations
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.estimators.gapped import gapped_logits, probability_gap
from gumbench.kernels.reference import conditional_gumbel
from gumbench.kernels.reference import sample_categorical

SAMPLES = 20_000
LEVEL = 0.999
T_95 = stats.t.ppf(0.975, 49)  # gradient_statistics' default intervals: 95%, 50 jackknife groups


def gen(seed):
    return torch.Generator().manual_seed(seed)


def standard_error(interval, level=0.95):
    """Standard error from a jackknife interval (t on 49 degrees of freedom)."""
    return (interval.high - interval.value) / stats.t.ppf(0.5 + level / 2, 49)


def jacobian_product(p, u):
    """J(p) u with J(p) = diag(p) - p p^T, over the last dim."""
    return p * u - p * (p * u).sum(-1, keepdim=True)


def enumerate_estimates(logits, loss, estimate):
    """Exact mean and per-coordinate variance of an estimator that is a function of D ~ Cat(softmax(logits)).

    ``estimate(index (N, G), u (N, G, V))`` gives the estimate for each configuration, u being the
    gradient of the loss at the one-hot sample.
    """
    logits = logits.double()
    groups, categories = logits.shape
    index = enumerate_configurations(groups, categories)
    onehot = torch.nn.functional.one_hot(index, categories).double().requires_grad_(True)
    (u,) = torch.autograd.grad(loss(onehot).sum(), onehot)
    p = torch.softmax(logits, -1).gather(-1, index.T).prod(0)[:, None, None]
    est = estimate(index, u)
    mean = (p * est).sum(0)
    return mean, (p * (est - mean).pow(2)).sum(0)


def check_against_enumeration(s, mean, variance):
    """Sampled statistics vs the enumerated ones: coordinates within 4 standard errors, total variance in its CI."""
    se = (variance / s.samples).sqrt()
    assert ((s.mean_gradient - mean).abs() <= 4 * se + 1e-6 * mean.abs().max()).all(), (s.mean_gradient, mean)
    assert s.total_variance.contains(float(variance.sum())), (s.total_variance, float(variance.sum()))


# --- Gumbel-Rao -------------------------------------------------------------------------------


def test_conditional_sampler_marginal_is_iid_gumbel():
    """With k ~ Cat(softmax(logits)) and g drawn given argmax(logits + g) = k, g is iid Gumbel(0, 1)."""
    logits = torch.tensor([1.5, 0.2, -0.7, 0.0, 2.0, -3.0])
    n, v = SAMPLES, logits.numel()
    rows = logits.expand(n, v)
    k = sample_categorical(rows, gen(0))
    g = conditional_gumbel(rows, k, 2, generator=gen(1))  # two conditional draws per row
    assert (torch.argmax(rows + g, -1) == k).all(), "the condition holds for every draw"
    for m in range(2):
        for j in range(v):
            p = stats.kstest(g[m, :, j].double().numpy(), stats.gumbel_r.cdf).pvalue
            assert p > 1e-3 / v, (m, j, p)  # family-wise 0.1% per draw
    corr = torch.corrcoef(g[0].double().T)
    off_diagonal = corr[~torch.eye(v, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 4 / math.sqrt(n), "independent coordinates: |r| within 4 standard errors"


def test_conditional_sampler_is_finite_for_extreme_and_masked_logits():
    row = torch.tensor([1e4, -1e4, 0.0, float("-inf"), 1e4 - 1.0])
    for dtype in (torch.float32, torch.float64):
        rows = row.to(dtype).expand(4096, 5)
        k = sample_categorical(rows, gen(0))
        g = conditional_gumbel(rows, k, 3, generator=gen(1))
        assert torch.isfinite(g).all() and not (k == 3).any()
        if dtype == torch.float64:  # in fp32 two logits of 1e4 sit 1e-3 apart, below the rounding of the perturbed values
            assert (torch.argmax(rows + g, -1) == k).all()


def mean_difference_within(a, b, z=4.0):
    se = ((a.coordinate_variance + b.coordinate_variance) / a.samples).sqrt()
    return ((a.mean_gradient - b.mean_gradient).abs() <= z * se + 1e-12).all()


def test_gumbel_rao_with_one_draw_is_st_gumbel_in_distribution():
    toy = make_task("categorical[groups=2,categories=4]")
    st = gradient_statistics("st-gumbel", toy.logits, toy.loss, SAMPLES, seed=1)
    rao = gradient_statistics("gumbel-rao[samples=1]", toy.logits, toy.loss, SAMPLES, seed=2)
    assert mean_difference_within(rao, st)
    se = math.hypot(standard_error(rao.total_variance), standard_error(st.total_variance))
    assert abs(rao.total_variance.value - st.total_variance.value) <= 4 * se, (rao.total_variance, st.total_variance)


@pytest.mark.parametrize("task", ["categorical[groups=2,categories=4]", "polynomial[L=4,p=3]"])
def test_gumbel_rao_has_st_gumbels_mean_and_lower_variance(task):
    """E[J | D] averaged over M draws: same mean; Var drops by (1 - 1/M) E[Var(J u | D)] (total variance)."""
    toy = make_task(task)
    st = gradient_statistics("st-gumbel[tau=0.5]", toy.logits, toy.loss, SAMPLES, seed=1, confidence=LEVEL)
    rao = gradient_statistics("gumbel-rao[tau=0.5,samples=10]", toy.logits, toy.loss, SAMPLES, seed=2, confidence=LEVEL)
    assert mean_difference_within(rao, st)
    assert rao.total_variance.high < st.total_variance.low, (rao.total_variance, st.total_variance)


def test_gumbel_rao_backward_averages_the_conditional_jacobians():
    logits = torch.randn(8, 3, 5, generator=gen(0), requires_grad=True)
    upstream = torch.randn(8, 3, 5, generator=gen(1))
    out = make_estimator("gumbel-rao[tau=0.7,samples=4]")(logits, lambda y: (y * upstream).sum((-2, -1)), generator=gen(2))
    out.surrogate.sum().backward()
    # replay the draws: the sample from gen(2), then the conditional noise from the same stream
    stream = gen(2)
    k = sample_categorical(logits.detach(), stream)
    g = conditional_gumbel(logits.detach(), k, 4, generator=stream)
    assert torch.equal(out.indices, k)
    expected = sum(jacobian_product(torch.softmax((logits.detach() + g[m]) / 0.7, -1), upstream) / 0.7 for m in range(4)) / 4
    torch.testing.assert_close(logits.grad, expected)
    torch.testing.assert_close(out.value, torch.nn.functional.one_hot(k, 5).float())


def test_gumbel_rao_eval_is_the_noiseless_argmax():
    logits = torch.randn(50, 2, 6, generator=gen(0))
    out = make_estimator("gumbel-rao").eval()(logits, lambda y: y.sum((-2, -1)), generator=gen(1))
    assert torch.equal(out.indices, logits.argmax(-1))


# --- ReinMax ----------------------------------------------------------------------------------


def reinmax_estimate(logits, tau):
    pi = torch.softmax(logits.double(), -1)
    soft = torch.softmax(logits.double() / tau, -1)

    def estimate(index, u):
        half = (soft + torch.nn.functional.one_hot(index, logits.shape[-1]).double()) / 2
        return 2 * jacobian_product(half, u) - 0.5 * jacobian_product(pi.expand_as(u), u)

    return estimate


def test_reinmax_backward_is_the_second_order_formula():
    logits = torch.randn(16, 3, 5, generator=gen(0), requires_grad=True)
    upstream = torch.randn(16, 3, 5, generator=gen(1))
    out = make_estimator("reinmax[tau=2]")(logits, lambda y: (y * upstream).sum((-2, -1)), generator=gen(2))
    out.surrogate.sum().backward()
    assert torch.equal(out.indices, sample_categorical(logits.detach(), gen(2)))
    half = (torch.softmax(logits.detach() / 2, -1) + torch.nn.functional.one_hot(out.indices, 5)) / 2
    expected = 2 * jacobian_product(half, upstream) - 0.5 * jacobian_product(torch.softmax(logits.detach(), -1), upstream)
    torch.testing.assert_close(logits.grad, expected)
    assert torch.equal(out.value, torch.nn.functional.one_hot(out.indices, 5).float())


@pytest.mark.parametrize("task", ["categorical[groups=2,categories=4]", "polynomial[L=4,p=2]", "categorical[loss=linear,groups=2,categories=5]"])
def test_reinmax_at_tau_1_is_unbiased_for_quadratic_losses(task):
    """The trapezoid rule behind ReinMax is exact for quadratics: E[estimate] = exact gradient."""
    toy = make_task(task)
    mean, variance = enumerate_estimates(toy.logits, toy.loss, reinmax_estimate(toy.logits, 1.0))
    exact, _ = exact_gradient(toy.logits, toy.loss)
    torch.testing.assert_close(mean, exact, rtol=0, atol=1e-6 * float(exact.abs().max()))  # an identity
    s = gradient_statistics("reinmax[tau=1]", toy.logits, toy.loss, SAMPLES, seed=4, confidence=LEVEL)
    assert s.bias.low == 0.0, s.bias
    check_against_enumeration(s, mean, variance)


@pytest.mark.parametrize("spec, task", [("reinmax[tau=1]", "polynomial[L=4,p=3]"), ("reinmax[tau=2]", "categorical[groups=2,categories=4]")])
def test_reinmax_is_biased_beyond_quadratics_or_above_tau_1(spec, task):
    toy = make_task(task)
    tau = make_estimator(spec).params["tau"]
    mean, variance = enumerate_estimates(toy.logits, toy.loss, reinmax_estimate(toy.logits, tau))
    exact, _ = exact_gradient(toy.logits, toy.loss)
    s = gradient_statistics(spec, toy.logits, toy.loss, SAMPLES, seed=5, confidence=LEVEL)
    assert s.bias.low > 0, s.bias
    assert s.bias.contains(float((mean - exact).norm())), (s.bias, float((mean - exact).norm()))
    check_against_enumeration(s, mean, variance)


def test_reinmax_rejects_tau_below_one():
    with pytest.raises(GumbenchError, match="tau must be >= 1"):
        make_estimator("reinmax[tau=0.5]")


# --- Gapped straight-through --------------------------------------------------------------------


def gst_estimate(logits, tau, variant):
    theta = logits.double()

    def estimate(index, u):
        # the perturbation written out independently of the implementation
        top = theta.max(-1, keepdim=True).values
        log_p = torch.log_softmax(theta, -1).expand(*index.shape, -1)
        p = log_p.gather(-1, index.unsqueeze(-1)).exp()
        gap = -torch.log1p(-p) / p if variant == "p" else torch.ones_like(p)
        perturbed = torch.minimum(theta, top - gap).scatter(-1, index.unsqueeze(-1), top.expand(*index.shape, 1))
        return jacobian_product(torch.softmax(perturbed / tau, -1), u) / tau

    return estimate


@pytest.mark.parametrize("variant", ["1.0", "p"])
def test_gapped_logits_are_consistent_with_a_gap(variant):
    logits = 3 * torch.randn(500, 7, generator=gen(0), dtype=torch.float64)
    index = sample_categorical(logits, gen(1))
    perturbed = gapped_logits(logits, index, variant)
    assert (perturbed.argmax(-1) == index).all()
    top = perturbed.gather(-1, index.unsqueeze(-1))
    others = perturbed.scatter(-1, index.unsqueeze(-1), float("-inf")).max(-1, keepdim=True).values
    p = torch.softmax(logits, -1).gather(-1, index.unsqueeze(-1))
    gap = -torch.log1p(-p) / p if variant == "p" else torch.ones_like(p)
    assert (top - others >= gap - 1e-12).all()
    torch.testing.assert_close(top, logits.max(-1, keepdim=True).values)  # the sample is raised to the top logit, no higher


def test_gst_p_gap_is_the_expected_gumbel_gap_of_a_binary_variable():
    """-log(1 - p)/p = E[x_D - x_other | D] for the Gumbel-perturbed logits x of a binary variable."""
    n = SAMPLES
    for a in (-2.0, 0.0, 1.0, 3.0):
        logits = torch.tensor([0.0, a], dtype=torch.float64).expand(n, 2)
        for chosen in (0, 1):
            index = torch.full((n,), chosen)
            x = logits + conditional_gumbel(logits, index, 1, generator=gen(chosen))[0]
            gap = x[:, chosen] - x[:, 1 - chosen]
            kappa = float(probability_gap(torch.log_softmax(logits[:1], -1), index[:1]))
            assert abs(float(gap.mean()) - kappa) <= 4 * float(gap.std()) / math.sqrt(n), (a, chosen, float(gap.mean()), kappa)


@pytest.mark.parametrize("variant", ["1.0", "p"])
def test_gst_backward_and_statistics_match_the_enumerated_estimator(variant):
    toy = make_task("categorical[groups=2,categories=4]")
    spec = f"gst[tau=0.5,variant={variant}]"
    logits = toy.logits.expand(32, 2, 4).clone().requires_grad_(True)
    upstream = torch.randn(32, 2, 4, generator=gen(0))
    out = make_estimator(spec)(logits, lambda y: (y * upstream).sum((-2, -1)), generator=gen(1))
    out.surrogate.sum().backward()
    torch.testing.assert_close(logits.grad, gst_estimate(toy.logits, 0.5, variant)(out.indices, upstream).float())
    mean, variance = enumerate_estimates(toy.logits, toy.loss, gst_estimate(toy.logits, 0.5, variant))
    s = gradient_statistics(spec, toy.logits, toy.loss, SAMPLES, seed=6, confidence=LEVEL)
    check_against_enumeration(s, mean, variance)


def test_gst_variant_names():
    assert make_estimator("gst[variant=1.0]").spec == "gst[tau=1,variant=1.0]"
    assert make_estimator("gst[variant=1]").params["variant"] == "1.0"
    assert make_estimator(make_estimator("gst[variant=p]").spec).params["variant"] == "p"
    with pytest.raises(GumbenchError, match="variant must be one of 1.0, p"):
        make_estimator("gst[variant=2]")


# --- DisARM -----------------------------------------------------------------------------------


def disarm_enumeration(logits, loss):
    """Exact mean and variance of DisARM: per variable the pair (b, b~) is (1,0) or (0,1) with
    probability min(s, 1-s) each, (1,1) with max(2s - 1, 0), (0,0) with max(1 - 2s, 0), s = sigmoid(a)."""
    logits = logits.double()
    a = logits[:, 1] - logits[:, 0]
    s = torch.sigmoid(a)
    pairs = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    pair_prob = torch.stack([torch.minimum(s, 1 - s), torch.minimum(s, 1 - s), (2 * s - 1).clamp_min(0), (1 - 2 * s).clamp_min(0)], -1)
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


# --- all four -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gumbel-rao", "reinmax", "gst", "gst[variant=p]"])
def test_sampled_category_frequencies_match_softmax(name):
    logits = torch.tensor([[1.5, 0.2, -0.7, 0.0, 2.0, -3.0]])
    n = SAMPLES
    out = make_estimator(name)(logits.expand(n, 1, 6), lambda y: y.sum((-2, -1)), generator=gen(7))
    counts = torch.bincount(out.indices.reshape(-1), minlength=6).double()
    expected = torch.softmax(logits.double(), -1)[0] * n
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


@pytest.mark.parametrize(
    "name, tau",
    [(n, t) for n in ["gumbel-rao", "reinmax", "gst", "gst[variant=p]", "disarm"] for t in (0.01, 1.0, 100.0)
     if not (n == "reinmax" and t < 1)],  # ReinMax needs tau >= 1 (tested as an error elsewhere)
)
def test_extreme_logits_stay_finite(name, tau):
    est = make_estimator(name) if name == "disarm" else make_estimator(name, tau=tau)
    row = torch.tensor([1e4, -1e4, 0.0, float("-inf"), 1e4 - 1.0])
    if name == "disarm":  # binary groups: (1e4, -1e4), (0, -inf), (-inf, 1e4 - 1), (0, 0)
        row = torch.tensor([[1e4, -1e4], [0.0, float("-inf")], [float("-inf"), 1e4 - 1.0], [0.0, 0.0]])
    logits = row.expand(512, *row.shape[-2:]) if row.dim() == 2 else row.expand(512, 2, 5)
    logits = logits.clone().requires_grad_(True)
    out = est(logits, lambda y: (y * torch.arange(float(y.shape[-1]))).sum((-2, -1)), generator=gen(0))
    out.surrogate.sum().backward()
    assert torch.isfinite(out.value).all() and torch.isfinite(out.surrogate).all()
    assert torch.isfinite(logits.grad).all()
    chosen = out.indices.unsqueeze(-1)
    assert torch.isfinite(logits.detach().expand(*out.indices.shape, logits.shape[-1]).gather(-1, chosen)).all(), "a masked category was chosen"


@pytest.mark.parametrize("bad", ["gumbel-rao[samples=0]", "gumbel-rao[tau=0]", "gst[tau=-1]", "reinmax[tau=nan]", "disarm[tau=1]"])
def test_invalid_parameters_raise_clear_errors(bad):
    with pytest.raises(GumbenchError):
        make_estimator(bad)
