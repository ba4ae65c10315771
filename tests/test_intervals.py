"""The interval helpers against scipy.stats on fixed inputs: the t quantile and t interval of a mean
(t.ppf, t.interval), Welch's interval of a difference (ttest_ind(equal_var=False)), and the
jackknife standard error (which for the mean equals the standard error sd / sqrt(n))."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from gumbench.errors import GumbenchError
from gumbench.intervals import (
    Estimate,
    bounded_mean_interval,
    jackknife_se,
    mean_interval,
    positive_mean_interval,
    t_half_width,
    t_interval,
    t_quantile,
    welch_difference,
    welch_interval,
)

A = [2.1, 3.4, 1.9, 2.8, 3.0, 2.2]
B = [1.2, 1.9, 1.4, 0.8, 1.1]


@pytest.mark.parametrize("probability, df", [(0.975, 1), (0.975, 4), (0.95, 7.5), (0.995, 30), (0.6, 2.25), (0.025, 9)])
def test_t_quantile_is_scipys_to_the_last_bit(probability, df):
    assert t_quantile(probability, df) == stats.t.ppf(probability, df)


def test_t_quantile_of_two_degrees_of_freedom_in_closed_form():
    # for df = 2 the t quantile is (2p - 1) / sqrt(2 p (1 - p)): a check that does not go through scipy
    p = 0.975
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)
    assert t_quantile(p, float("inf")) == pytest.approx(stats.norm.ppf(p), rel=1e-12)
    assert math.isnan(t_quantile(p, 0)) and math.isnan(t_quantile(p, float("nan")))


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mean_interval_is_scipys_t_interval(confidence):
    low, high = stats.t.interval(confidence, len(A) - 1, loc=np.mean(A), scale=stats.sem(A))
    estimate = mean_interval(A, confidence)
    assert isinstance(estimate, Estimate)
    assert estimate.value == pytest.approx(np.mean(A), rel=1e-15)
    assert (estimate.low, estimate.high) == pytest.approx((low, high), rel=1e-13)
    assert t_half_width(np.std(A, ddof=1), len(A), confidence) == pytest.approx((high - low) / 2, rel=1e-13)
    assert t_interval(np.mean(A), np.std(A, ddof=1), len(A), confidence) == estimate


def test_a_wider_confidence_gives_a_wider_interval():
    widths = [t_half_width(1.0, 5, c) for c in (0.5, 0.9, 0.95, 0.99)]
    assert widths == sorted(widths) and widths[0] > 0


def test_one_value_has_no_interval_and_none_has_no_mean():
    one = mean_interval([4.5])
    assert one.value == 4.5 and math.isnan(one.low) and math.isnan(one.high)
    assert all(math.isnan(x) for x in mean_interval([]))
    assert math.isnan(t_half_width(1.0, 1))
    assert all(math.isnan(x) for x in mean_interval([1.0, math.nan, 2.0]))  # NaN is not dropped silently


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_welch_interval_is_scipys_ttest_ind_unequal_variances(confidence):
    reference = stats.ttest_ind(A, B, equal_var=False).confidence_interval(confidence)
    estimate = welch_difference(A, B, confidence)
    assert estimate.value == pytest.approx(np.mean(A) - np.mean(B), rel=1e-14)
    assert (estimate.low, estimate.high) == pytest.approx((reference.low, reference.high), rel=1e-12)
    summaries = [(np.mean(x), np.var(x, ddof=1), len(x)) for x in (A, B)]
    assert welch_interval(*summaries, confidence=confidence) == pytest.approx(tuple(estimate), rel=1e-15)


def test_welch_interval_excludes_zero_exactly_when_scipys_test_rejects():
    # a two-sided Welch test at level 1 - c rejects exactly when the c interval misses 0
    for shift in (0.0, 0.3, 0.6, 0.9, 1.2, 2.0):
        shifted = [b + shift for b in B]
        rejects = stats.ttest_ind(A, shifted, equal_var=False).pvalue < 0.05
        estimate = welch_difference(A, shifted)
        assert rejects == (estimate.low > 0 or estimate.high < 0), shift


def test_welch_without_spread_or_with_one_value():
    assert welch_interval((2.0, 0.0, 3), (1.5, 0.0, 4)) == (0.5, 0.5, 0.5)  # no spread: the difference is exact
    lone = welch_interval((2.0, math.nan, 1), (1.5, 0.2, 4))
    assert lone.value == 0.5 and math.isnan(lone.low) and math.isnan(lone.high)


def test_jackknife_se_of_the_mean_is_the_standard_error():
    values = torch.tensor(A, dtype=torch.float64)
    n = len(values)
    leave_one_out = (values.sum() - values) / (n - 1)
    assert jackknife_se(leave_one_out).item() == pytest.approx(stats.sem(A), rel=1e-12)


def test_jackknife_se_per_coordinate_and_along_a_dimension():
    gen = torch.Generator().manual_seed(0)
    replicates = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    expected = np.sqrt(9 / 10 * ((replicates.numpy() - replicates.numpy().mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(jackknife_se(replicates).numpy(), expected, rtol=1e-14)
    torch.testing.assert_close(jackknife_se(replicates.T, dim=1), jackknife_se(replicates))
    assert torch.equal(jackknife_se(torch.full((4, 2), 3.0)), torch.zeros(2))  # equal replicates: no spread


def test_positive_mean_interval_is_the_t_interval_of_the_logs_back_transformed():
    values = [0.8, 1.7, 1.1, 0.4, 2.5]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(np.log(values)), scale=stats.sem(np.log(values)))
    estimate = positive_mean_interval(values)
    assert estimate.value == pytest.approx(stats.gmean(values), rel=1e-12)
    assert (estimate.low, estimate.high) == pytest.approx((math.exp(low), math.exp(high)), rel=1e-12)


def test_positive_mean_interval_stays_positive_where_the_t_interval_does_not():
    values = [0.01, 0.02, 3.0]  # MSE ratios of three instances, one far off: the t interval reaches below 0
    assert mean_interval(values).low < 0
    estimate = positive_mean_interval(values)
    assert 0 < estimate.low <= estimate.value <= estimate.high
    one = positive_mean_interval([2.0])
    assert one.value == pytest.approx(2.0) and math.isnan(one.low) and math.isnan(one.high)


@pytest.mark.parametrize("values", [[1.0, 0.0, 2.0], [1.0, -0.5], [1.0, math.inf], [1.0, math.nan]])
def test_positive_mean_interval_refuses_values_off_the_log_scale(values):
    with pytest.raises(GumbenchError, match="positive_mean_interval"):
        positive_mean_interval(values)


def test_bounded_mean_interval_is_fisher_z_back_transformed():
    values = [0.91, 0.97, 0.995, 0.88, 0.99]  # cosines near 1: the t interval reaches above 1
    assert mean_interval(values).high > 1
    z = np.arctanh(values)
    low, high = stats.t.interval(0.95, len(z) - 1, loc=z.mean(), scale=stats.sem(z))
    estimate = bounded_mean_interval(values)
    assert (estimate.value, estimate.low, estimate.high) == pytest.approx(
        (math.tanh(z.mean()), math.tanh(low), math.tanh(high)), rel=1e-12)
    assert -1 < estimate.low <= estimate.value <= estimate.high < 1


def test_bounded_mean_interval_on_another_range_and_at_a_bound():
    rates = [0.02, 0.1, 0.05, 0.6]
    estimate = bounded_mean_interval(rates, 0.0, 1.0)
    assert 0 < estimate.low <= estimate.value <= estimate.high < 1
    # atanh(2p - 1) is half the logit: the interval is the back-transformed t interval of the logits
    logits = np.log(np.asarray(rates) / (1 - np.asarray(rates)))
    low, high = stats.t.interval(0.95, len(rates) - 1, loc=logits.mean(), scale=stats.sem(logits))
    assert (estimate.low, estimate.high) == pytest.approx((1 / (1 + math.exp(-low)), 1 / (1 + math.exp(-high))))
    at_bound = bounded_mean_interval([1.0, 0.9, 0.99])  # z infinite: the t interval, clipped
    raw = mean_interval([1.0, 0.9, 0.99])
    assert at_bound.value == raw.value and at_bound.low == raw.low and at_bound.high == 1.0 < raw.high


@pytest.mark.parametrize("values, low, high", [([0.5, 1.2], -1.0, 1.0), ([0.5], 1.0, 0.0), ([math.nan], 0.0, 1.0)])
def test_bounded_mean_interval_refuses_values_outside_its_range(values, low, high):
    with pytest.raises(GumbenchError, match="bounded_mean_interval"):
        bounded_mean_interval(values, low, high)
