"""Gradient statistics: bit-identical per seed, bad input rejected (one line naming the input and what is allowed,
before any work), intervals cover, bias detected, group sums are the draws' sums."""

import math
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.benchmarks.gradstats import accumulate
from gumbench.benchmarks.problems.base import CHUNK_ELEMENTS, draw_estimates, rows_at_once
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.plugin import MAX_ELEMENTS
from tests.estimators.enumeration import SAMPLES, reinforce_variance_closed_form


@pytest.mark.parametrize(
    "estimator",
    [
        "reinforce[baseline=ema]",
        "reinforce[baseline=loo]",
        "straight-through",
        "st-gumbel",
        "gumbel-rao",
        "reinmax",
        "gst[variant=p]",
    ],
)
def test_gradient_statistics_is_bit_identical_for_a_seed(estimator):
    """Every kind of draw (inverse-CDF categories, several per row, Gumbel vectors, conditional Gumbel
    noise, the EMA state): the same seed gives the same statistics to the last bit, another seed others."""
    toy = make_task("categorical")
    a = gradient_statistics(estimator, toy.logits, toy.loss, 3000, seed=9).to_dict()
    b = gradient_statistics(estimator, toy.logits, toy.loss, 3000, seed=9).to_dict()
    c = gradient_statistics(estimator, toy.logits, toy.loss, 3000, seed=10).to_dict()
    assert a.pop("seconds_per_estimate") > 0 and b.pop("seconds_per_estimate") > 0  # wall time: not reproducible
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


TOY = make_task("categorical[groups=2,categories=3]")


def never_called(y):
    raise AssertionError("loss_fn ran: the input should have been refused before any work")


def refused(*args, **kwargs) -> str:
    with pytest.raises(GumbenchError) as caught:
        gradient_statistics(*args, **kwargs)
    text = str(caught.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64, True, 1.5, "0", None])
def test_bad_seeds_are_refused_before_any_work(seed):
    allowed = "in [0, 9223372036854775807]"
    assert refused("st-gumbel", TOY.logits, never_called, 100, seed).startswith("gradient_statistics: seed must be ")
    assert allowed in refused("st-gumbel", TOY.logits, never_called, 100, seed)


@pytest.mark.parametrize("chunk_size, allowed", [(-1, "must be >= 1, got -1"), (0, "must be >= 1, got 0"),
                                                 (1.5, "must be an integer >= 1"), (True, "must be an integer >= 1"),
                                                 ("8", "must be an integer >= 1")])
def test_bad_chunk_sizes_are_refused_before_any_work(chunk_size, allowed):
    # chunk_size=-1 used to draw nothing and report perfect statistics
    assert refused("st-gumbel", TOY.logits, never_called, 100, chunk_size=chunk_size) == (
        f"gradient_statistics: chunk_size {allowed}" + ("" if "got" in allowed else f", got {chunk_size!r}"))


def test_sizes_that_cannot_be_held_are_refused_before_any_work():
    big = make_task("categorical")  # 32 logits
    for samples in (3, 10**8 + 1, 2**63, 10**30):
        assert refused("st-gumbel", big.logits, never_called, samples) == (
            f"gradient_statistics: samples must be in [4, 100000000], got {samples}")
    assert "samples must be an integer in [4, 100000000], got 4.0" in refused(
        "st-gumbel", big.logits, never_called, 4.0
    )
    # rows drawn at once x logits x draws per estimate stay within MAX_ELEMENTS (2^26, ~2 GiB at the peak)
    assert refused("st-gumbel", big.logits, never_called, 10**7, chunk_size=10**7) == (
        "gradient_statistics: chunk_size x logits x draws per estimate of st-gumbel = 10000000 x 32 x 1 elements "
        "at once; "
        f"at most {MAX_ELEMENTS:,} are allowed (use chunk_size <= {MAX_ELEMENTS // 32})"
    )
    wide = make_task("categorical[groups=1,categories=100000]")  # the draw counts' own bound is 1000
    for est in ("gumbel-rao[samples=1000]", "reinforce[baseline=loo,samples=1000]"):
        assert refused(est, wide.logits, never_called, 100) == (
            f"gradient_statistics: one estimate of {est} draws 1000 samples of 100000 logits, 100,000,000 elements; "
            f"at most {MAX_ELEMENTS:,} are allowed (lower its samples)")
    # a chunk larger than the samples is only as large as the samples; by default the chunk shrinks to fit
    assert gradient_statistics("st-gumbel", TOY.logits, TOY.loss, 100, chunk_size=10**30).samples == 100
    # by default a chunk holds CHUNK_ELEMENTS x sqrt(draws per estimate) elements (draws included), at least one row
    assert rows_at_once("f", "chunk_size", make_estimator("st-gumbel"), big.logits, None) == CHUNK_ELEMENTS // 32
    assert rows_at_once(
        "f", "chunk_size", make_estimator("gumbel-rao[samples=100]"), big.logits, None
    ) == CHUNK_ELEMENTS * 10 // (32 * 100)
    assert (
        rows_at_once("f", "chunk_size", make_estimator("gumbel-rao[samples=1000]"), wide.logits[:, :10000], None) == 1
    )


def test_bad_logits_are_refused_before_any_work():
    assert "logits must be a floating-point tensor, got dtype torch.int64" in refused(
        "st-gumbel", torch.zeros(2, 3, dtype=torch.long), never_called, 100)
    assert refused("st-gumbel", torch.zeros(0, 3), never_called, 100) == (
        "gradient_statistics: logits must have at least one group and one category, got shape (0, 3)")
    for shape in ((2, 0), (0, 0)):
        assert refused("st-gumbel", torch.zeros(shape), never_called, 100) == (
            f"logits needs a last (category) dimension of size >= 1, got shape {shape}")
    assert "logits contain NaN" in refused("st-gumbel", torch.tensor([[0.0, math.nan, 1.0]]), never_called, 100)


@pytest.mark.parametrize(
    "loss, message",
    [
        (lambda y: 1.0, "loss_fn must map (N, G, V) one-hots to a tensor of shape (N,), got float"),
        (lambda y: None, "loss_fn must map (N, G, V) one-hots to a tensor of shape (N,), got NoneType"),
        (lambda y: TOY.loss(y)[..., None], "loss_fn must map (N, G, V) one-hots to a tensor of shape (N,), got (9, 1)"),
        # NaN or inf on one configuration (group 0 at category 1, group 1 at category 2) is found by the enumeration
        (
            lambda y: torch.where((y[..., 0, 1] * y[..., 1, 2]) > 0.5, math.nan, TOY.loss(y)),
            "loss_fn returned nan for configuration (1, 2) (the category of each group); "
            "it must be finite for every configuration",
        ),
        (
            lambda y: torch.where(y[..., 1, 0] > 0.5, math.inf, TOY.loss(y)),
            "loss_fn returned inf for configuration (0, 0) (the category of each group); "
            "it must be finite for every configuration",
        ),
    ],
)
def test_bad_losses_are_named_with_what_is_allowed(loss, message):
    assert refused("reinforce[baseline=loo]", TOY.logits, loss, 100) == message


def test_a_loss_not_finite_on_drawn_configurations_is_refused_when_drawn():
    """With a reference there is no enumeration: the draw that meets a NaN names it."""
    nan_at_zero = lambda y: torch.where(y[..., 0, 0] > 0.5, math.nan, TOY.loss(y))  # noqa: E731
    assert refused("st-gumbel", TOY.logits, nan_at_zero, 100, reference=torch.zeros(2, 3)) == (
        "st-gumbel[tau=1]: loss_fn returned nan on a drawn configuration; it must be finite for every configuration")


def test_a_loss_that_does_not_depend_on_the_choice_is_refused_not_reported_perfect():
    constant = (
        "the exact gradient is zero: loss_fn takes the same value ({}) on every configuration of positive probability"
    )
    for est in ("st-gumbel", "reinforce[baseline=loo]", "soft-gumbel"):
        assert refused(est, TOY.logits, lambda y: torch.full(y.shape[:-2], 2.5), 100).startswith(constant.format(2.5))
        assert refused(est, TOY.logits, lambda y: y.sum((-2, -1)), 100).startswith(
            constant.format(2)
        )  # one-hots sum to G
    assert refused("st-gumbel", torch.zeros(3, 1), lambda y: y.sum((-2, -1)), 100).startswith(
        constant.format(3)
    )  # V = 1
    # constant on every configuration that can happen: group 0's category 1 is masked
    masked = torch.tensor([[0.0, -math.inf], [0.0, 1.0]])
    assert refused("reinforce", masked, lambda y: 5 * y[..., 0, 1], 100).startswith(constant.format(0))
    # a loss with no gradient path: a relaxation cannot estimate it, REINFORCE can
    detached = lambda y: TOY.loss(y.detach())  # noqa: E731
    assert refused("st-gumbel", TOY.logits, detached, 100) == (
        "st-gumbel[tau=1] got no gradient at the logits: loss_fn's value does not depend on its input through autograd "
        "(detached or constant); a relaxation needs a differentiable loss")
    assert gradient_statistics("reinforce", TOY.logits, detached, 100).total_variance.value > 0
    # a nearly deterministic softmax has a tiny but real gradient: measured, not refused
    sharp = make_task("categorical[scale=40]")
    s = gradient_statistics("reinforce[baseline=loo]", sharp.logits, sharp.loss, 100)
    assert 0 < s.exact_norm < 0.1 and math.isfinite(s.mse.value)


LOSSES = {
    "quadratic": TOY.loss,
    "float": lambda y: 1.0,
    "constant": lambda y: torch.ones(y.shape[:-2]),
    "nan on one configuration": lambda y: torch.where(y[..., 0, 2] * y[..., 1, 1] > 0.5, math.nan, TOY.loss(y)),
    "detached": lambda y: TOY.loss(y.detach()),
}
NOT_INTEGERS = st.one_of(st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(estimator=st.sampled_from(["st-gumbel", "reinforce[baseline=loo]", "gumbel-rao[samples=4]", "soft-gumbel"]),
       loss=st.sampled_from(sorted(LOSSES)),
       samples=st.one_of(st.integers(4, 300), st.integers(max_value=3), st.integers(min_value=10**8 + 1), NOT_INTEGERS),
       seed=st.one_of(st.integers(0, 2**63 - 1), st.integers(max_value=-1), st.integers(min_value=2**63), NOT_INTEGERS),
       chunk_size=st.one_of(st.none(), st.integers(1, 10**40), st.integers(max_value=0), NOT_INTEGERS))
def test_any_arguments_give_finite_statistics_or_one_clear_error(estimator, loss, samples, seed, chunk_size):
    """Whatever the arguments, within a few seconds: finite statistics, or a one-line GumbenchError."""
    start = time.perf_counter()
    try:
        s = gradient_statistics(estimator, TOY.logits, LOSSES[loss], samples, seed, chunk_size=chunk_size)
    except GumbenchError as error:
        assert "\n" not in str(error) and str(error)
        assert loss != "quadratic" or any(k in str(error) for k in ("samples", "seed", "chunk_size", "no gradient")), (
            str(error)
        )
    else:
        assert loss in ("quadratic", "detached")
        assert all(math.isfinite(getattr(s, k).value) for k in ("bias", "total_variance", "mse"))
    assert time.perf_counter() - start < 10


def test_confidence_intervals_cover_at_the_nominal_rate():
    """Over 40 independent seeds the 95% CI of the total variance covers the closed form
    at least as often as a Binomial(40, 0.95) lower 0.1% quantile allows."""
    toy = make_task("categorical[groups=1,categories=5]")
    closed = float(reinforce_variance_closed_form(toy.logits, toy.loss).sum())
    covered = sum(
        gradient_statistics("reinforce", toy.logits, toy.loss, 2000, seed=seed).total_variance.contains(closed)
        for seed in range(40)
    )
    assert covered >= stats.binom.ppf(0.001, 40, 0.95), covered


def test_biased_estimators_are_detected():
    """The same machinery flags a biased estimator: the bias CI excludes zero."""
    toy = make_task("categorical[groups=2,categories=4]")
    s = gradient_statistics("st-gumbel[tau=1]", toy.logits, toy.loss, SAMPLES, seed=3)
    assert s.bias.low > 0


@pytest.mark.parametrize(
    "spec", ["st-gumbel[tau=0.5]", "reinforce[baseline=ema]"]
)  # stateless, and stateful (EMA baseline)
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

    sums = accumulate(toy, make_estimator(spec).train(), exact, samples, seed, groups, chunk)
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
    # the MSE is a mean of per-draw squared errors; its delete-a-group jackknife interval is taken on the log
    # scale: log MSE +- t * (jackknife SE of the leave-one-group-out log MSEs), back-transformed
    errors = deviation.pow(2).sum(-1)
    group_means = torch.stack([part.mean() for part in errors.split(sizes)])
    weights = torch.tensor(sizes, dtype=torch.float64)
    leave_out = ((errors.sum() - group_means * weights) / (samples - weights)).log()
    se = float(((groups - 1) / groups * (leave_out - leave_out.mean()).pow(2).sum()).sqrt())
    half = stats.t.ppf(0.975, groups - 1) * se
    assert se > 0 and math.log(s.mse.high / s.mse.value) == pytest.approx(half, rel=1e-8)
    assert math.log(s.mse.value / s.mse.low) == pytest.approx(half, rel=1e-8)
    # a different seed draws different estimates
    other = accumulate(toy, make_estimator(spec).train(), exact, samples, seed + 1, groups, chunk)
    assert not torch.equal(other.sums, sums.sums)


def test_the_t_quantile_is_scipy_stats_one():
    from gumbench.intervals import t_quantile

    for df in (1, 2, 3, 7, 29, 99, 10**6):
        for p in (0.5, 0.6, 0.95, 0.975, 0.995, 0.9995):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-12, abs=1e-12), (p, df)
    assert t_quantile(0.975, 9) == pytest.approx(2.2621571628, abs=1e-9)  # printed tables


PEAK_MEMORY = """
import resource, sys, torch
from gumbench.benchmarks import gradient_statistics, make_task
toy = make_task("categorical[groups=1,categories=64]")
gradient_statistics("reinforce[baseline=loo]", toy.logits, toy.loss, int(sys.argv[1]), 0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_is_bounded_by_the_chunk_not_by_the_samples():
    """Peak resident memory of a fresh process drawing 20,000 and then 200,000 estimates (K = 64,
    RLOO): holding the extra 180,000 estimates in float64 would take 90,000 KiB; the draws reuse one
    chunk's memory, so the peak may grow by a tenth of that at most (measured: 1-3 MiB, allocator noise)."""
    import subprocess
    import sys

    peak_kib = {}
    for samples in (20_000, 200_000):
        done = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY, str(samples)], capture_output=True, text=True, check=True
        )
        peak_kib[samples] = int(done.stdout.split()[-1])
    holding_kib = (200_000 - 20_000) * 64 * 8 / 1024
    assert peak_kib[200_000] - peak_kib[20_000] < holding_kib / 10, peak_kib
