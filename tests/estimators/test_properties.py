"""Analytic properties of the card's estimators, checked within confidence intervals.

Every statistical test uses a fixed seed; tolerances are confidence intervals or
multiples of standard errors, never tuned constants.
"""

import math

import pytest
import torch
from scipy import stats

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.estimators.vq import nearest_codes
from gumbench.kernels.reference import gumbel_from_uniform, uniform_from_integers

SAMPLES = 20_000


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("baseline", ["none", "ema", "loo"])
@pytest.mark.parametrize("task", ["categorical[groups=2,categories=4]", "categorical[loss=linear,groups=3,categories=3]", "bernoulli"])
def test_reinforce_is_unbiased(baseline, task):
    toy = make_task(task)
    s = gradient_statistics(f"reinforce[baseline={baseline}]", toy.logits, toy.loss, SAMPLES, seed=3)
    # the CI of ||bias||^2 (debiased) reaches zero for an unbiased estimator
    assert s.bias.low == 0.0, s.bias
    # and the mean is close to the exact gradient coordinate-wise: within 4 standard errors
    se = (s.coordinate_variance / SAMPLES).sqrt()
    assert ((s.mean_gradient - s.exact_gradient).abs() <= 4 * se + 1e-12).all()


def test_biased_estimators_are_detected():
    """The same machinery flags a biased estimator: the bias CI excludes zero."""
    toy = make_task("categorical[groups=2,categories=4]")
    s = gradient_statistics("st-gumbel[tau=1]", toy.logits, toy.loss, SAMPLES, seed=3)
    assert s.bias.low > 0


def test_straight_through_tau1_is_exact_for_linear_loss():
    toy = make_task("categorical[loss=linear,groups=3,categories=5]")
    s = gradient_statistics("straight-through[tau=1]", toy.logits, toy.loss, 1000, seed=0)
    # zero up to float32 rounding of the gradients: (1e-6 * ||grad||)^2
    assert s.total_variance.value < (1e-6 * s.exact_norm) ** 2
    assert s.coordinate_variance.max() < (1e-6 * s.exact_norm) ** 2
    torch.testing.assert_close(s.mean_gradient, s.exact_gradient, rtol=1e-5, atol=1e-6)
    assert s.cosine.value == pytest.approx(1.0, abs=1e-6)
    # at another temperature it is biased
    biased = gradient_statistics("straight-through[tau=0.5]", toy.logits, toy.loss, 1000, seed=0)
    assert biased.bias.low > 0


def reinforce_variance_closed_form(logits, loss_fn):
    """Per-coordinate variance of f(z) grad log p(z) with one sample and no baseline.

    grad_{g,v} log p(z) = 1[z_g = v] - pi_{g,v}, so with e the exact gradient
    Var_{g,v} = sum_z p(z) f(z)^2 (1[z_g = v] - pi_{g,v})^2 - e_{g,v}^2.
    """
    from gumbench.benchmarks.toys import enumerate_configurations

    logits = logits.double()
    G, V = logits.shape
    pi = torch.softmax(logits, -1)
    index = enumerate_configurations(G, V)
    onehot = torch.nn.functional.one_hot(index, V).double()
    f = loss_fn(onehot)
    p = pi.gather(-1, index.T).prod(0)
    score = onehot - pi  # (N, G, V)
    second = (p * f.pow(2))[:, None, None] * score.pow(2)
    exact, _ = exact_gradient(logits, loss_fn)
    return second.sum(0) - exact.pow(2)


@pytest.mark.parametrize("task", ["categorical[groups=1,categories=6]", "categorical[groups=2,categories=4]", "polynomial[L=4,p=3]"])
def test_reinforce_variance_matches_closed_form(task):
    toy = make_task(task)
    closed = reinforce_variance_closed_form(toy.logits, toy.loss)
    s = gradient_statistics("reinforce", toy.logits, toy.loss, SAMPLES, seed=11)
    assert s.total_variance.contains(float(closed.sum())), (s.total_variance, float(closed.sum()))
    # coordinates: 4 standard errors (se from the CI half width)
    half = (s.coordinate_variance_high - s.coordinate_variance) / stats.t.ppf(0.975, 49)
    assert ((s.coordinate_variance - closed).abs() <= 4 * half + 1e-12).all()


def test_exact_gradient_equals_autograd_of_the_analytic_expectation():
    toy = make_task("categorical[loss=linear,groups=3,categories=4]")
    grad, value = exact_gradient(toy.logits, toy.loss)
    logits = toy.logits.double().requires_grad_(True)
    analytic = (torch.softmax(logits, -1) * toy.coefficients.double()).sum()
    analytic.backward()
    torch.testing.assert_close(grad, logits.grad)
    assert value == pytest.approx(float(analytic.detach()))

    toy = make_task("categorical[groups=2,categories=5]")
    grad, value = exact_gradient(toy.logits, toy.loss)
    logits = toy.logits.double().requires_grad_(True)
    t = toy.target.double()
    pi = torch.softmax(logits, -1)
    # for one-hot z_g: ||z_g - t_g||^2 = 1 - 2 t_g[z_g] + ||t_g||^2
    analytic = (1 - 2 * (pi * t).sum(-1) + t.pow(2).sum(-1)).sum()
    analytic.backward()
    torch.testing.assert_close(grad, logits.grad)
    assert value == pytest.approx(float(analytic.detach()))


@pytest.mark.parametrize("task", ["polynomial[L=6,p=1.5]", "bernoulli"])
def test_separable_toys_analytic_expectation_matches_enumeration(task):
    from gumbench.benchmarks.toys import exact_expectation

    toy = make_task(task)
    logits = torch.randn(toy.shape, generator=gen(2), dtype=torch.float64)
    assert float(toy.expected_loss(logits)) == pytest.approx(float(exact_expectation(logits, toy.loss)), rel=1e-12)


@pytest.mark.parametrize("name", ["st-gumbel", "soft-gumbel", "straight-through", "reinforce"])
def test_sampled_category_frequencies_match_softmax(name):
    logits = torch.tensor([[1.5, 0.2, -0.7, 0.0, 2.0, -3.0]])
    n = 20_000
    out = make_estimator(name)(logits.expand(n, 1, 6), lambda y: y.sum((-2, -1)), generator=gen(7))
    counts = torch.bincount(out.indices.reshape(-1), minlength=6).double()
    expected = torch.softmax(logits.double(), -1)[0] * n
    p = stats.chisquare(counts.numpy(), expected.numpy()).pvalue
    assert p > 1e-3, (counts, expected, p)


@pytest.mark.parametrize("tau", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("name", ["st-gumbel", "soft-gumbel", "straight-through", "reinforce[baseline=loo]"])
def test_extreme_logits_stay_finite(name, tau):
    est = make_estimator(name) if name.startswith("reinforce") else make_estimator(name, tau=tau)
    row = torch.tensor([1e4, -1e4, 0.0, float("-inf"), 1e4 - 1.0])
    logits = row.expand(512, 2, 5).clone().requires_grad_(True)
    out = est(logits, lambda y: (y * torch.arange(5.0)).sum((-2, -1)), generator=gen(0))
    out.surrogate.sum().backward()
    assert torch.isfinite(out.value).all() and torch.isfinite(out.surrogate).all()
    assert torch.isfinite(logits.grad).all()
    assert not (out.indices == 3).any(), "a masked (-inf) category was chosen"


def test_uniform_ends_give_finite_gumbel_noise():
    for dtype, bits in ((torch.float32, 23), (torch.float64, 52)):
        u = uniform_from_integers(torch.tensor([0, 2**bits - 1]), dtype)
        assert (u > 0).all() and (u < 1).all()
        g = gumbel_from_uniform(u)
        assert torch.isfinite(g).all()
    # the naive conversion would have hit 1.0 in fp32 -- the reason for the scheme
    assert torch.tensor(1 - 2**-25, dtype=torch.float32) == 1.0


def test_st_gumbel_eval_is_the_noiseless_argmax():
    est = make_estimator("st-gumbel").eval()
    logits = torch.randn(100, 2, 7, generator=gen(0))
    out = est(logits, lambda y: y.sum((-2, -1)), generator=gen(1))
    assert torch.equal(out.indices, logits.argmax(-1))
    assert torch.equal(out.value, torch.nn.functional.one_hot(logits.argmax(-1), 7).float())
    train = make_estimator("st-gumbel")(logits, lambda y: y.sum((-2, -1)), generator=gen(1))
    assert not torch.equal(train.indices, logits.argmax(-1)), "training mode must sample, not take the argmax"


def test_st_gumbel_backward_is_the_softmax_jacobian_with_the_same_noise():
    from gumbench.kernels.reference import gumbel_noise

    logits = torch.randn(8, 3, 5, generator=gen(0), requires_grad=True)
    upstream = torch.randn(8, 3, 5, generator=gen(1))
    out = make_estimator("st-gumbel[tau=0.7]")(logits, lambda y: (y * upstream).sum((-2, -1)), generator=gen(2))
    out.surrogate.sum().backward()
    g = gumbel_noise(logits.shape, generator=gen(2))
    leaf = logits.detach().clone().requires_grad_(True)
    soft = torch.softmax((leaf + g) / 0.7, -1)
    (soft * upstream).sum().backward()
    torch.testing.assert_close(logits.grad, leaf.grad)
    assert torch.equal(out.indices, (logits.detach() + g).argmax(-1))


@pytest.mark.parametrize("bad", ["st-gumbel[tau=0]", "soft-gumbel[tau=-1]", "straight-through[tau=nan]", "reinforce[baseline=loo,samples=1]", "reinforce[decay=1.5]", "vq-commitment[beta=-1]", "vq-commitment[decay=1]"])
def test_invalid_parameters_raise_clear_errors(bad):
    with pytest.raises(GumbenchError):
        make_estimator(bad)


def test_vq_nearest_code_losses_and_straight_through():
    z = torch.randn(50, 2, 3, generator=gen(0), requires_grad=True)
    codebook = torch.randn(2, 7, 3, generator=gen(1), requires_grad=True)
    brute = torch.cdist(z.detach().transpose(0, 1), codebook.detach()).argmin(-1).T
    assert torch.equal(nearest_codes(z.detach(), codebook.detach()), brute)
    upstream = torch.randn(50, 2, 3, generator=gen(2))
    out = make_estimator("vq-commitment[beta=0.25]")(z, lambda q: (q * upstream).sum((-2, -1)), codebook=codebook)
    z_q = codebook.detach()[torch.arange(2), brute]
    torch.testing.assert_close(out.value, z_q)
    torch.testing.assert_close(out.aux["codebook"], (z.detach() - z_q).pow(2).mean((-2, -1)))
    torch.testing.assert_close(out.aux["commitment"], 0.25 * (z.detach() - z_q).pow(2).mean((-2, -1)))
    out.surrogate.sum().backward()
    # straight-through: upstream gradient copied to z, plus the commitment term
    torch.testing.assert_close(z.grad, upstream + 0.25 * 2 * (z.detach() - z_q) / 6)


def test_vq_ema_moves_codes_to_the_mean_of_their_vectors():
    codebook = torch.tensor([[[0.0, 0.0], [10.0, 10.0], [-50.0, 50.0]]])  # (1, 3, 2)
    est = make_estimator("vq-commitment[ema=true,decay=0.5]")
    z = torch.tensor([[1.0, 1.0], [2.0, 0.0], [9.0, 11.0]]).reshape(3, 1, 2)
    for _ in range(40):
        out = est(z, lambda q: q.sum((-2, -1)), codebook=codebook)
    assert "codebook" not in out.aux
    torch.testing.assert_close(codebook[0, 0], torch.tensor([1.5, 0.5]), atol=1e-4, rtol=0)
    torch.testing.assert_close(codebook[0, 1], torch.tensor([9.0, 11.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(codebook[0, 2], torch.tensor([-50.0, 50.0]))  # never chosen: unchanged
    frozen = codebook.clone()
    est.eval()(z + 1, lambda q: q.sum((-2, -1)), codebook=codebook)
    assert torch.equal(codebook, frozen), "eval mode must not update the codebook"


def test_gradient_statistics_is_bit_identical_for_a_seed():
    toy = make_task("categorical")
    a = gradient_statistics("reinforce[baseline=ema]", toy.logits, toy.loss, 3000, seed=9).to_dict()
    b = gradient_statistics("reinforce[baseline=ema]", toy.logits, toy.loss, 3000, seed=9).to_dict()
    c = gradient_statistics("reinforce[baseline=ema]", toy.logits, toy.loss, 3000, seed=10).to_dict()
    assert a == b
    assert a["total_variance"] != c["total_variance"]


def test_gradient_statistics_rejects_bad_input():
    toy = make_task("categorical")
    with pytest.raises(GumbenchError, match="VQ"):
        gradient_statistics("vq-commitment", toy.logits, toy.loss, 100)
    with pytest.raises(GumbenchError, match="at most 65536"):
        gradient_statistics("st-gumbel", torch.zeros(17, 2), lambda y: y.sum((-2, -1)), 100)
    with pytest.raises(GumbenchError, match=r"\(G, V\)"):
        gradient_statistics("st-gumbel", torch.zeros(2, 3, 4), lambda y: y.sum((-2, -1)), 100)
    with pytest.raises(GumbenchError, match="samples"):
        gradient_statistics("st-gumbel", toy.logits, toy.loss, 1)


def test_confidence_intervals_cover_at_the_nominal_rate():
    """Over 40 independent seeds the 95% CI of the total variance covers the closed form
    at least as often as a Binomial(40, 0.95) lower 0.1% quantile allows."""
    toy = make_task("categorical[groups=1,categories=5]")
    closed = float(reinforce_variance_closed_form(toy.logits, toy.loss).sum())
    covered = sum(
        gradient_statistics("reinforce", toy.logits, toy.loss, 2000, seed=seed).total_variance.contains(closed) for seed in range(40)
    )
    assert covered >= stats.binom.ppf(0.001, 40, 0.95), covered
