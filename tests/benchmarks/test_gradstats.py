"""Gradient statistics: bit-identical per seed, bad input rejected, intervals cover, bias detected, group sums are the draws' sums."""

import pytest
import torch
from scipy import stats

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.benchmarks.gradstats import accumulate, draw_estimates
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from tests.estimators.enumeration import SAMPLES, reinforce_variance_closed_form


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


def test_biased_estimators_are_detected():
    """The same machinery flags a biased estimator: the bias CI excludes zero."""
    toy = make_task("categorical[groups=2,categories=4]")
    s = gradient_statistics("st-gumbel[tau=1]", toy.logits, toy.loss, SAMPLES, seed=3)
    assert s.bias.low > 0


@pytest.mark.parametrize("spec", ["st-gumbel[tau=0.5]", "reinforce[baseline=ema]"])  # stateless, and stateful (EMA baseline)
def test_group_sums_reproduce_the_statistics_of_the_draws(spec):
    """accumulate's per-group sums equal sums over the very draws that draw_estimates makes from the same
    generator (a discarded warm-up call, then chunks), and gradient_statistics' mean, variances and MSE
    are those of the draws, computed here directly from all of them."""
    toy = make_task("categorical[groups=2,categories=3]")
    samples, seed, groups, chunk = 1000, 5, 7, 300  # uneven groups (143 x 6, 142) and a partial last chunk
    exact, _ = exact_gradient(toy.logits, toy.loss)

    est = make_estimator(spec).train()
    generator = torch.Generator().manual_seed(seed)
    draw_estimates(est, toy.logits, toy.loss, 256, generator)  # the warm-up accumulate discards
    draws = torch.cat([draw_estimates(est, toy.logits, toy.loss, min(chunk, samples - start), generator)
                       for start in range(0, samples, chunk)])
    assert draws.shape == (samples, 6) and draws.dtype == torch.float64

    sums = accumulate(make_estimator(spec).train(), toy.logits, toy.loss, exact, samples, seed, groups, chunk)
    sizes = [143] * 6 + [142]
    assert sums.counts.tolist() == sizes
    deviation = draws - exact.reshape(-1)
    for k, part in enumerate(deviation.split(sizes)):
        torch.testing.assert_close(sums.sums[k], part.sum(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sums.squares[k], part.pow(2).sum(0), rtol=1e-12, atol=1e-12)

    s = gradient_statistics(spec, toy.logits, toy.loss, samples, seed, groups=groups, chunk_size=chunk)
    mean = draws.mean(0)
    variance = draws.var(0, unbiased=True)
    torch.testing.assert_close(s.mean_gradient.reshape(-1), mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s.coordinate_variance.reshape(-1), variance, rtol=1e-8, atol=1e-12)
    assert s.total_variance.value == pytest.approx(float(variance.sum()), rel=1e-8)
    assert s.mse.value == pytest.approx(float(deviation.pow(2).sum(-1).mean()), rel=1e-10)
    debiased = float((mean - exact.reshape(-1)).pow(2).sum() - variance.sum() / samples)
    assert s.bias.value == pytest.approx(max(debiased, 0.0) ** 0.5, rel=1e-6, abs=1e-9)
    # a different seed draws different estimates
    other = accumulate(make_estimator(spec).train(), toy.logits, toy.loss, exact, samples, seed + 1, groups, chunk)
    assert not torch.equal(other.sums, sums.sums)
