"""Gradient statistics of an estimator against the exact (or a reference) gradient, on any problem.

:func:`problem_statistics` draws S independent estimates x_1..x_S of a problem's gradient
(:class:`~gumbench.benchmarks.problems.GradientProblem`: the gradient of E[f(z)] w.r.t. logits (G, V) of a toy,
of the ELBO at an image, of a speech quantizer's batch, or a quantizer problem's gradient in z or the
codebook) -- batched: the problem repeats its inputs S times along a leading dimension, one backward
gives all S estimates -- and compares them with the problem's reference e (exact by enumeration, V^G <=
65,536, or Monte Carlo with a stated error). :func:`gradient_statistics` is the same on given logits and
a loss (a :class:`~gumbench.benchmarks.problems.LogitsProblem`). With m the mean estimate and Sigma the
covariance of one estimate:

    bias          ||E[x] - e||, estimated without its upward noise bias:
                  ||b||^2 ~ ||m - e||^2 - tr(Sigma_hat) / S  (unbiased), reported as
                  sqrt(max(., 0)); its CI is the square root of the clipped CI of ||b||^2,
                  so an unbiased estimator's CI reaches 0.
    relative bias bias / ||e||
    total var     tr(Sigma) = sum of per-coordinate variances (unbiased, S - 1)
    mse           E||x - e||^2 = bias^2 + total variance (mean of ||x_s - e||^2)
    cosine        cos(m, e)
    snr           ||m|| / sqrt(tr(Sigma))  (signal-to-noise of a single estimate)

Confidence intervals (95% by default) come from a delete-a-group jackknife over
K contiguous groups of samples (t quantile with K - 1 degrees of freedom); the
per-coordinate variances get element-wise intervals the same way. Only per-group
sums are kept, so memory is O(K G V) whatever S is. All accumulation is float64 on
the CPU in a fixed order: the same seed gives bit-identical statistics.

The three steps are separate functions: :func:`accumulate` draws the estimates (the problem's ``draw``)
into per-group sums, :func:`jackknife_intervals` turns them into values and intervals, :func:`assemble`
builds the result; :func:`problem_statistics` checks every argument first and runs the three.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import asdict, dataclass

import torch

from gumbench.benchmarks.problems import GradientProblem, LogitsProblem, make_problem
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.footprint import check_peak, combined, memory_limit
from gumbench.intervals import jackknife_se, t_quantile
from gumbench.memory import keep_freed_memory
from gumbench.plugin import SAMPLES, SEED, TEMPERATURE, Range, check_integer, check_number

DEFAULT_SAMPLES = 10_000
JACKKNIFE_GROUPS = 50


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval [low, high]."""

    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


@dataclass
class GradientStatistics:
    estimator: str  # canonical spec with every parameter
    label: str  # short spec: parameters that differ from the defaults
    samples: int
    seed: int
    confidence: float
    exact_gradient: torch.Tensor  # (G, V)
    mean_gradient: torch.Tensor  # (G, V)
    exact_norm: float
    expected_loss: float | None  # None when a reference replaced enumeration
    bias: Interval
    relative_bias: Interval | None  # None when the exact gradient is zero
    total_variance: Interval
    coordinate_variance: torch.Tensor  # (G, V)
    coordinate_variance_low: torch.Tensor
    coordinate_variance_high: torch.Tensor
    mse: Interval
    cosine: Interval | None  # None when the mean or exact gradient is zero
    snr: Interval | None  # None when the variance is zero
    reference_error: float | None = None  # RMS error of a Monte Carlo reference (it adds to the bias); None when exact
    loss_evaluations: int | None = None  # the loss's evaluations per estimate on this problem (the equal-cost views)
    seconds_per_estimate: float | None = None  # wall time of the draws over the estimates (reference excluded)

    SCALARS = ("bias", "relative_bias", "total_variance", "mse", "cosine", "snr")

    def to_dict(self) -> dict:
        """JSON-ready: scalars as {value, low, high}, tensors as nested lists."""
        out = {
            "estimator": self.estimator,
            "label": self.label,
            "samples": self.samples,
            "seed": self.seed,
            "confidence": self.confidence,
            "exact_norm": self.exact_norm,
            "expected_loss": self.expected_loss,
            "reference_error": self.reference_error,
            "loss_evaluations": self.loss_evaluations,
            "seconds_per_estimate": self.seconds_per_estimate,
        }
        for key in self.SCALARS:
            value = getattr(self, key)
            out[key] = None if value is None else asdict(value)
        for key in (
            "exact_gradient",
            "mean_gradient",
            "coordinate_variance",
            "coordinate_variance_low",
            "coordinate_variance_high",
        ):
            out[key] = getattr(self, key).tolist()
        return out


def _group_sizes(samples: int, groups: int) -> list[int]:
    base, extra = divmod(samples, groups)
    return [base + (1 if k < extra else 0) for k in range(groups)]


@dataclass
class GroupSums:
    """Per jackknife group k: the sum of the deviations x - e of its estimates from the exact
    gradient, the sum of their squares (both (K, G*V), float64) and the count (K,).

    Shifting by e keeps the sum-of-squares variance free of cancellation (a zero-variance
    estimator reads 0, not float noise), and the squared norms give the MSE directly.
    """

    sums: torch.Tensor
    squares: torch.Tensor
    counts: torch.Tensor
    all_zero: bool = False  # every estimate was exactly 0 (straight-through VQ's codebook gradient)


def accumulate(problem: GradientProblem, estimator, exact: torch.Tensor, samples: int, seed: int, groups: int,
               chunk_size: int) -> GroupSums:
    """Draw ``samples`` estimates from ``problem`` in chunks of ``chunk_size`` rows and sum them into ``groups``
    contiguous groups.

    One discarded warm-up draw (``problem.warmup_rows``) first brings stateful estimators (an EMA baseline) to
    their running state, so that the first group is not measured with an empty baseline. A chunk's rows are
    summed group by group over contiguous slices (``index_add_`` over rows is several times slower on the CPU);
    a NaN or inf estimate makes its group's sums non-finite, which is refused (float64 sums of float32
    estimates cannot overflow)."""
    e = exact.reshape(-1)
    generator = torch.Generator().manual_seed(int(seed))
    problem.draw(estimator, problem.warmup_rows(estimator, samples, chunk_size), generator)
    sums = torch.zeros(groups, e.numel(), dtype=torch.float64)
    squares = torch.zeros(groups, e.numel(), dtype=torch.float64)
    sizes = _group_sizes(samples, groups)
    ends = [0]
    for size in sizes:
        ends.append(ends[-1] + size)
    group, all_zero = 0, True
    for start in range(0, samples, chunk_size):
        rows = min(chunk_size, samples - start)
        estimates = problem.draw(estimator, rows, generator)
        all_zero = all_zero and not bool(estimates.any())
        deviation = estimates.sub_(e)
        first, group = group, _add_to_groups(deviation, start, ends, group, sums, squares)
        if not (torch.isfinite(sums[first : group + 1]).all() and torch.isfinite(squares[first : group + 1]).all()):
            raise GumbenchError(f"{estimator.spec} produced NaN or inf gradients from finite losses; "
                                "loss_fn must have finite gradients at the values the estimator passes it")
    return GroupSums(sums, squares, torch.tensor(sizes, dtype=torch.float64), all_zero)


def _add_to_groups(deviation: torch.Tensor, start: int, ends: list[int], group: int, sums, squares) -> int:
    """Add the rows of a chunk starting at sample ``start`` to the groups they fall in; return the last group."""
    squared = deviation * deviation
    row, stop_row = start, start + deviation.shape[0]
    while row < stop_row:  # the slices of this chunk that fall in one group each
        while ends[group + 1] <= row:
            group += 1
        stop = min(ends[group + 1], stop_row)
        sums[group] += deviation[row - start : stop - start].sum(0)
        squares[group] += squared[row - start : stop - start].sum(0)
        row = stop
    return group


def _statistics(e: torch.Tensor, total_sums, total_squares, n) -> dict[str, torch.Tensor]:
    """Every statistic (and per-coordinate variances) from the sums of n deviations from e.

    Batched: sums (..., P) and counts n (...) give statistics of shape (...) (coordinate variances
    (..., P)), so the jackknife's K leave-one-out replicates are one call."""
    n_ = n.unsqueeze(-1)
    bias_vector = total_sums / n_
    mean = e + bias_vector
    spread = total_squares - n_ * bias_vector.pow(2)
    # below the rounding of that difference (a few ulps of the sum of squares) the estimates are identical:
    # a deterministic estimator reads variance 0, not float noise
    spread = torch.where(spread <= 8 * torch.finfo(torch.float64).eps * total_squares, 0.0, spread)
    coord_var = spread / (n_ - 1)
    total_var = coord_var.sum(-1)
    bias_sq = bias_vector.pow(2).sum(-1) - total_var / n
    mean_norm = mean.norm(dim=-1)
    nan = torch.tensor(math.nan, dtype=torch.float64)
    cosine = torch.where((mean_norm > 0) & (e.norm() > 0), (mean * e).sum(-1) / (mean_norm * e.norm()), nan)
    snr = torch.where(total_var > 0, mean_norm / total_var.sqrt(), nan)
    return {
        "bias_sq": bias_sq,
        "total_variance": total_var,
        "mse": total_squares.sum(-1) / n,
        "cosine": cosine,
        "snr": snr,
        "coord_var": coord_var,
    }


def jackknife_intervals(group_sums: GroupSums, exact: torch.Tensor, confidence: float) -> dict[str, tuple | None]:
    """Per statistic (value, low, high): the full-sample value and a delete-a-group jackknife interval
    with a t quantile on K - 1 degrees of freedom; None where a value is not finite."""
    e = exact.reshape(-1)
    sums, squares, counts = group_sums.sums, group_sums.squares, group_sums.counts
    groups = len(counts)
    full = _statistics(e, sums.sum(0), squares.sum(0), counts.sum())
    leave_out = _statistics(
        e, sums.sum(0) - sums, squares.sum(0) - squares, counts.sum() - counts
    )  # row k: without group k
    t = t_quantile(0.5 + confidence / 2, groups - 1)
    intervals = {}
    for key, value in full.items():
        replicates = leave_out[key]
        if not torch.isfinite(value).all() or not torch.isfinite(replicates).all():
            intervals[key] = None
            continue
        se = jackknife_se(replicates)
        intervals[key] = (value, value - t * se, value + t * se)
    return intervals


def _scalar(interval, transform=lambda v: v, clip=False) -> Interval | None:
    if interval is None:
        return None
    vals = [float(v) for v in interval]
    if clip:
        vals = [max(v, 0.0) for v in vals]
    return Interval(*(transform(v) for v in vals))


def check_arguments(owner: str, samples, seed, confidence, groups, chunk_size) -> tuple[int, int, int | None]:
    """(samples, seed, chunk_size) checked, with the confidence and the number of jackknife groups."""
    samples = check_integer(owner, "samples", samples, SAMPLES)
    seed = check_integer(owner, "seed", seed, SEED)
    check_number(owner, "confidence", confidence, Range(0, 1, low_open=True, high_open=True))
    check_integer(owner, "groups", groups, Range(2, 10_000))
    if chunk_size is not None:
        chunk_size = check_integer(owner, "chunk_size", chunk_size, Range(1))
    return samples, seed, chunk_size


def problem_statistics(estimator, problem, samples: int = DEFAULT_SAMPLES, seed: int = 0, *, confidence: float = 0.95,
                       groups: int = JACKKNIFE_GROUPS, chunk_size: int | None = None,
                       owner: str = "problem_statistics") -> GradientStatistics:
    """Bias, variance, MSE, cosine and SNR of ``estimator`` on ``problem`` (a registered name such as ``categorical`` or
    ``vq-distance[T=0.1]``, or any :class:`~gumbench.benchmarks.problems.GradientProblem`) against its reference:
    exact by enumeration, or Monte Carlo with a stated error (``quantizer-smoothed``), or one the problem was given.

    ``estimator`` is a registry name or an Estimator (copied, in training mode, so its state is left alone).
    Every argument is checked before any work; then :func:`accumulate` draws, :func:`jackknife_intervals` turns
    the group sums into intervals, and :func:`assemble` builds the result. ``chunk_size`` rows are drawn at once
    (default: as many as the problem's memory bound allows)."""
    problem = make_problem(problem)
    est = copy.deepcopy(make_estimator(estimator)).train()
    problem.check_estimator(est)
    samples, seed, chunk_size = check_arguments(owner, samples, seed, confidence, groups, chunk_size)
    rows = problem.rows_at_once(est, chunk_size, samples, owner)
    keep_freed_memory()  # chunks reuse freed memory instead of faulting in fresh pages (gumbench.memory)
    groups = max(2, min(groups, samples // 2))
    reference = problem.reference()
    problem.check_reference(reference)
    exact = (
        reference.gradient.clone()
    )  # the problem's cached reference stays as computed, whatever a caller does with the result
    began = time.perf_counter()
    group_sums = accumulate(problem, est, exact, samples, seed, groups, rows)
    elapsed = time.perf_counter() - began
    stats = assemble(
        est, samples, seed, confidence, exact, reference.expected, group_sums, problem.shape, reference.error
    )
    return dataclasses.replace(stats, loss_evaluations=problem.loss_evaluations(est),
                               seconds_per_estimate=elapsed / samples)


def gradient_statistics(estimator, logits: torch.Tensor, loss_fn, samples: int = DEFAULT_SAMPLES, seed: int = 0, *,
                        confidence: float = 0.95, groups: int = JACKKNIFE_GROUPS, chunk_size: int | None = None,
                        reference: torch.Tensor | None = None) -> GradientStatistics:
    """:func:`problem_statistics` on ``logits`` (G, V) and ``loss_fn``, which maps (S, G, V) to (S,): a
    :class:`~gumbench.benchmarks.problems.LogitsProblem`. ``reference`` replaces the enumerated exact gradient
    where V^G is too large to enumerate (e.g. a many-sample unbiased estimate); its own error then adds to
    the reported bias, and ``expected_loss`` is then None. A loss that is not finite, or constant, on some
    configuration is refused when enumeration or a draw meets it."""
    problem = LogitsProblem(logits, loss_fn, reference)
    return problem_statistics(
        estimator,
        problem,
        samples,
        seed,
        confidence=confidence,
        groups=groups,
        chunk_size=chunk_size,
        owner="gradient_statistics",
    )


def assemble(est, samples: int, seed: int, confidence: float, exact: torch.Tensor, expected: float | None,
             group_sums: GroupSums, shape: tuple[int, ...], reference_error: float | None = None) -> GradientStatistics:
    """The :class:`GradientStatistics` of accumulated group sums against ``exact`` (any shape, flattened alike).
    Estimates that were all exactly 0 get exactly the statistics of a zero estimate (the sums of their deviations
    would leave rounding residue: a mean of 1e-15 and a cosine of noise)."""
    if group_sums.all_zero:
        return zero_estimate_statistics(est, samples, seed, confidence, exact, expected, shape, reference_error)
    intervals = jackknife_intervals(group_sums, exact, confidence)
    bias = _scalar(intervals["bias_sq"], math.sqrt, clip=True)
    exact_norm = float(exact.norm())
    coord, coord_low, coord_high = intervals["coord_var"]
    return GradientStatistics(
        estimator=est.spec,
        label=est.label,
        samples=samples,
        seed=seed,
        confidence=confidence,
        exact_gradient=exact.reshape(shape),
        mean_gradient=(exact.reshape(-1) + group_sums.sums.sum(0) / group_sums.counts.sum()).reshape(shape),
        exact_norm=exact_norm,
        expected_loss=expected,
        bias=bias,
        relative_bias=Interval(bias.value / exact_norm, bias.low / exact_norm, bias.high / exact_norm)
        if exact_norm > 0
        else None,
        total_variance=_scalar(intervals["total_variance"], clip=True),
        coordinate_variance=coord.reshape(shape),
        coordinate_variance_low=coord_low.clamp_min(0).reshape(shape),
        coordinate_variance_high=coord_high.reshape(shape),
        mse=_scalar(intervals["mse"], clip=True),
        cosine=_scalar(intervals["cosine"], lambda v: min(max(v, -1.0), 1.0)),
        snr=_scalar(intervals["snr"], clip=True),
        reference_error=reference_error,
    )


def zero_estimate_statistics(
    est,
    samples: int,
    seed: int,
    confidence: float,
    exact: torch.Tensor,
    expected: float | None,
    shape: tuple[int, ...],
    reference_error: float | None = None,
) -> GradientStatistics:
    """The statistics of an estimator whose every estimate is exactly 0: bias ||e||, relative bias 1, variance 0,
    MSE ||e||^2, no cosine and no SNR (the mean has no direction)."""
    norm = float(exact.norm())
    zeros = torch.zeros(shape, dtype=torch.float64)
    point = lambda v: Interval(v, v, v)  # noqa: E731
    return GradientStatistics(
        estimator=est.spec, label=est.label, samples=samples, seed=seed, confidence=confidence,
        exact_gradient=exact.reshape(shape), mean_gradient=zeros, exact_norm=norm, expected_loss=expected,
        bias=point(norm), relative_bias=point(1.0) if norm > 0 else None, total_variance=point(0.0),
        coordinate_variance=zeros, coordinate_variance_low=zeros, coordinate_variance_high=zeros.clone(),
        mse=point(norm * norm), cosine=None, snr=None, reference_error=reference_error)


@dataclass
class GradstatsRun:
    """Gradient statistics of several estimators on one toy task."""

    task: str
    statistics: list[GradientStatistics]


def default_estimators() -> list[str]:
    """Every registered categorical estimator, once per showcased variant (e.g. each REINFORCE baseline): the default
    set on problems with logits."""
    from gumbench.estimators import categorical_variants

    return categorical_variants()


def _with_temperature(problem: GradientProblem, estimators, tau: float | None) -> list:
    """The estimators to run (default: the problem's), with ``tau`` set on each that has a temperature. Naming
    an estimator without one together with ``tau`` is an error; the default set keeps those as they are and
    leaves out estimators that refuse this tau (ReinMax needs tau >= 1)."""
    explicit = estimators is not None
    if tau is not None:  # checked once, so that no estimator of the default set is left out for a tau nothing takes
        check_number("gradstats", "tau", tau, TEMPERATURE)
    built = []
    for name in estimators if explicit else problem.default_estimators():
        est = make_estimator(name)
        if tau is not None and est.has_temperature:
            try:
                est = est.with_params(tau=tau)
            except GumbenchError:
                if explicit:
                    raise
                continue
        elif tau is not None and explicit:
            with_tau = [n for n in problem.default_estimators() if make_estimator(n).has_temperature]
            raise GumbenchError(
                f"--tau was given but {est.name} has no temperature; estimators with one: " + ", ".join(with_tau)
            )
        built.append(est)
    if not built:
        raise GumbenchError("no estimators to run")
    if tau is not None and not any(est.has_temperature for est in built):
        raise GumbenchError(f"--tau was given but no estimator measured on {problem.spec} has a temperature")
    return built


def run_gradstats(
    task, estimators=None, *, tau: float | None = None, samples: int = DEFAULT_SAMPLES, seed: int = 0, max_memory=None
) -> GradstatsRun:
    """Statistics for each estimator (default: the problem's ``default_estimators()``) on a problem.

    ``tau`` overrides the temperature of every estimator that has one; naming an estimator
    without a temperature together with ``tau`` is an error. Every name and argument is checked,
    with every estimator and its estimated peak memory (against ``max_memory``, :mod:`gumbench.footprint`),
    and the reference computed, before the first estimator runs.
    """
    problem = make_problem(task)
    built = _with_temperature(problem, estimators, tau)
    samples, seed, _ = check_arguments("gradstats", samples, seed, 0.95, JACKKNIFE_GROUPS, None)
    limit = memory_limit(max_memory)
    for est in built:
        problem.check_estimator(est)
        problem.rows_at_once(est, None, samples, "gradstats")
        peak = combined(problem.peak_memory(est, samples), est.peak_memory())
        check_peak(f"{est.label} on {problem.spec}", peak, limit)
    problem.check_reference(problem.reference())
    return GradstatsRun(problem.spec, [problem_statistics(est, problem, samples, seed) for est in built])


def format_number(x: float | None) -> str:
    """Three significant figures; below 1e-3 in scientific notation; None as n/a."""
    if x is None:  # no expected loss where a reference replaced enumeration
        return "n/a"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def format_interval(interval: Interval | None) -> str:
    if interval is None:
        return "n/a"
    return f"{format_number(interval.value)} [{format_number(interval.low)}, {format_number(interval.high)}]"


def gradstats_table(run: GradstatsRun, width: int | None = None) -> str:
    """The run as a text table, one row per estimator (see :func:`gumbench.tables.render`)."""
    from gumbench.tables import render

    first = run.statistics[0]
    reference = (
        "exact grad"
        if first.reference_error is None
        else f"reference grad (RMS error {format_number(first.reference_error)})"
    )
    title = (
        f"{run.task}: {first.samples} estimates each, seed {first.seed}, "
        f"||{reference}|| = {format_number(first.exact_norm)}, "
        f"E(loss) = {format_number(first.expected_loss)}; [{first.confidence:.0%} CI]"
    )
    columns = ("estimator", "bias / ||grad||", "total variance", "MSE", "cosine", "SNR")
    rows = [
        (
            s.label,
            *(format_interval(getattr(s, k)) for k in ("relative_bias", "total_variance", "mse", "cosine", "snr")),
        )
        for s in run.statistics
    ]
    return render(title, columns, rows, width=width)
