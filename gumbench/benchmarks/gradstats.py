"""Gradient statistics of an estimator against the exact gradient.

:func:`gradient_statistics` draws S independent estimates x_1..x_S of the gradient
of E[f(z)] w.r.t. logits (G, V) -- batched: the logits are repeated S times along a
leading dimension, one backward gives all S estimates -- and compares them with the
exact gradient e from enumeration (V^G <= 65,536). With m the mean estimate and
Sigma the covariance of one estimate:

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

The three steps are separate functions: :func:`accumulate` draws the estimates (batched by
:func:`draw_estimates`) into per-group sums, :func:`jackknife_intervals` turns them into values
and intervals, :func:`gradient_statistics` checks the input and assembles the result.

VQ estimators take continuous vectors and a codebook rather than logits: :func:`problem_statistics`
measures them on the quantizer problems (:mod:`gumbench.benchmarks.quantizer_problems`), with the
same accumulation and intervals, against the gradient in z or the codebook.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from gumbench.benchmarks.toys import enumerated_losses, exact_gradient, make_task
from gumbench.errors import GumbenchError
from gumbench.estimators import CategoricalEstimator, VQEstimator, make_estimator
from gumbench.kernels.reference import check_logits
from gumbench.memory import keep_freed_memory
from gumbench.plugin import MAX_ELEMENTS, SAMPLES, SEED, TEMPERATURE, Range, check_integer, check_number

DEFAULT_SAMPLES = 10_000
JACKKNIFE_GROUPS = 50
# Elements (rows x logits) of one batched draw by default, times the square root of the draws per
# estimate: small enough that a chunk's tensors stay in cache and the allocator reuses their memory,
# large enough that per-call overhead is amortized. Measured on the project's 2-core machine
# (10,000 estimates, V = 64 to 4,096): 2^18 was fastest for one draw per estimate (straight-through,
# st-gumbel), 2^19 to 2^20 elements with the draws for REINFORCE-RLOO (4 draws) and Gumbel-Rao (10).
CHUNK_ELEMENTS = 2**18


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
        }
        for key in self.SCALARS:
            value = getattr(self, key)
            out[key] = None if value is None else asdict(value)
        for key in ("exact_gradient", "mean_gradient", "coordinate_variance", "coordinate_variance_low", "coordinate_variance_high"):
            out[key] = getattr(self, key).tolist()
        return out


def _group_sizes(samples: int, groups: int) -> list[int]:
    base, extra = divmod(samples, groups)
    return [base + (1 if k < extra else 0) for k in range(groups)]


def draws_per_estimate(estimator) -> int:
    """Samples one estimate draws per row (REINFORCE's ``samples``, Gumbel-Rao's M): it multiplies the memory of a draw."""
    return int(estimator.params.get("samples", 1) or 1)


def rows_at_once(owner: str, key: str, estimator, logits: torch.Tensor, rows: int | None) -> int:
    """Rows of one batched draw: ``rows`` if given (refused when rows x logits x draws per estimate
    passes MAX_ELEMENTS), else CHUNK_ELEMENTS x sqrt(draws per estimate) elements' worth (at least one
    row): memory is bounded by the chunk, whatever the number of estimates."""
    per_row = logits.numel() * draws_per_estimate(estimator)
    if rows is None:
        rows = max(1, int(CHUNK_ELEMENTS * math.sqrt(draws_per_estimate(estimator))) // per_row)
    if per_row > MAX_ELEMENTS:
        raise GumbenchError(f"{owner}: one estimate of {estimator.label} draws {draws_per_estimate(estimator)} samples of "
                            f"{logits.numel()} logits, {per_row:,} elements; at most {MAX_ELEMENTS:,} are allowed (lower its samples)")
    if rows * per_row > MAX_ELEMENTS:
        raise GumbenchError(f"{owner}: {key} x logits x draws per estimate of {estimator.label} = {rows} x {logits.numel()} x "
                            f"{draws_per_estimate(estimator)} elements at once; at most {MAX_ELEMENTS:,} are allowed "
                            f"(use {key} <= {MAX_ELEMENTS // per_row})")
    return rows


def _draw(estimator):
    """The call that draws: ``estimate`` itself where the input checks of ``forward`` are the base
    class's (made once, on the logits the rows copy, by :func:`check_arguments`), else the module."""
    if isinstance(estimator, CategoricalEstimator) and type(estimator).forward is CategoricalEstimator.forward:
        return lambda leaf, loss_fn, generator: estimator.estimate(leaf, loss_fn, generator)
    return lambda leaf, loss_fn, generator: estimator(leaf, loss_fn, generator=generator)


def draw_estimates(estimator, logits: torch.Tensor, loss_fn, rows: int, generator) -> torch.Tensor:
    """``rows`` independent estimates with one backward: (rows, G*V) in float64, not checked for
    finiteness (:func:`accumulate` checks its sums, which any NaN or inf reaches)."""
    leaf = logits.detach().unsqueeze(0).expand(rows, *logits.shape).clone().requires_grad_(True)
    out = _draw(estimator)(leaf, loss_fn, generator)
    loss = out.loss.detach()
    if not torch.isfinite(loss).all():
        raise GumbenchError(f"{estimator.spec}: loss_fn returned {float(loss[~torch.isfinite(loss)][0])} on a drawn "
                            "configuration; it must be finite for every configuration")
    (grad,) = torch.autograd.grad(out.surrogate.sum(), leaf, allow_unused=True) if out.surrogate.requires_grad else (None,)
    if grad is None:
        raise GumbenchError(f"{estimator.spec} got no gradient at the logits: loss_fn's value does not depend on its "
                            "input through autograd (detached or constant); a relaxation needs a differentiable loss")
    return grad.reshape(rows, -1).to(torch.float64)


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


def accumulate(estimator, logits, loss_fn, exact: torch.Tensor, samples: int, seed: int, groups: int, chunk_size: int,
               draw: Callable[[int, torch.Generator], torch.Tensor] | None = None) -> GroupSums:
    """Draw ``samples`` estimates in chunks of ``chunk_size`` rows and sum them into ``groups`` contiguous groups.

    ``draw(rows, generator)`` gives (rows, P) estimates (default: :func:`draw_estimates` of ``estimator``
    on ``logits``; a :class:`~gumbench.benchmarks.quantizer_problems.QuantizerProblem` passes its own).
    A chunk's rows are summed group by group over contiguous slices (``index_add_`` over rows is
    several times slower on the CPU); a NaN or inf estimate makes its group's sums non-finite, which
    is refused (float64 sums of float32 estimates cannot overflow)."""
    e = exact.reshape(-1)
    generator = torch.Generator().manual_seed(int(seed))
    if draw is None:
        def draw(rows, gen):
            return draw_estimates(estimator, logits, loss_fn, rows, gen)
        fit = MAX_ELEMENTS // (logits.numel() * draws_per_estimate(estimator))
    else:
        fit = chunk_size
    # One discarded warm-up call of 256 rows (fewer where that passes MAX_ELEMENTS) brings stateful
    # estimators (an EMA baseline) to their running state, so that the first group is not measured
    # with an empty baseline.
    draw(min(samples, 256, max(1, fit)), generator)
    sums = torch.zeros(groups, e.numel(), dtype=torch.float64)
    squares = torch.zeros(groups, e.numel(), dtype=torch.float64)
    sizes = _group_sizes(samples, groups)
    ends = [0]
    for size in sizes:
        ends.append(ends[-1] + size)
    group, all_zero = 0, True
    for start in range(0, samples, chunk_size):
        rows = min(chunk_size, samples - start)
        estimates = draw(rows, generator)
        all_zero = all_zero and not bool(estimates.any())
        deviation = estimates.sub_(e)
        squared = deviation * deviation
        first, row = group, start
        while row < start + rows:  # the slices of this chunk that fall in one group each
            while ends[group + 1] <= row:
                group += 1
            stop = min(ends[group + 1], start + rows)
            sums[group] += deviation[row - start : stop - start].sum(0)
            squares[group] += squared[row - start : stop - start].sum(0)
            row = stop
        if not (torch.isfinite(sums[first : group + 1]).all() and torch.isfinite(squares[first : group + 1]).all()):
            raise GumbenchError(f"{estimator.spec} produced NaN or inf gradients from finite losses; "
                                "loss_fn must have finite gradients at the values the estimator passes it")
    return GroupSums(sums, squares, torch.tensor(sizes, dtype=torch.float64), all_zero)


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


def t_quantile(probability: float, df: float) -> float:
    """Student's t quantile, from scipy.special (scipy.stats, for the same number, imports three times as long)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, probability))


def jackknife_intervals(group_sums: GroupSums, exact: torch.Tensor, confidence: float) -> dict[str, tuple | None]:
    """Per statistic (value, low, high): the full-sample value and a delete-a-group jackknife interval
    with a t quantile on K - 1 degrees of freedom; None where a value is not finite."""
    e = exact.reshape(-1)
    sums, squares, counts = group_sums.sums, group_sums.squares, group_sums.counts
    groups = len(counts)
    full = _statistics(e, sums.sum(0), squares.sum(0), counts.sum())
    leave_out = _statistics(e, sums.sum(0) - sums, squares.sum(0) - squares, counts.sum() - counts)  # row k: without group k
    t = t_quantile(0.5 + confidence / 2, groups - 1)
    intervals = {}
    for key, value in full.items():
        replicates = leave_out[key]
        if not torch.isfinite(value).all() or not torch.isfinite(replicates).all():
            intervals[key] = None
            continue
        se = ((groups - 1) / groups * (replicates - replicates.mean(0)).pow(2).sum(0)).sqrt()
        intervals[key] = (value, value - t * se, value + t * se)
    return intervals


def _scalar(interval, transform=lambda v: v, clip=False) -> Interval | None:
    if interval is None:
        return None
    vals = [float(v) for v in interval]
    if clip:
        vals = [max(v, 0.0) for v in vals]
    return Interval(*(transform(v) for v in vals))


def _training_copy(estimator):
    """A copy in training mode (the caller's estimator and its state are left alone); not VQ."""
    est = copy.deepcopy(make_estimator(estimator))
    if isinstance(est, VQEstimator):
        raise GumbenchError(f"{est.label} is a VQ estimator: it takes vectors and a codebook, not logits; measure it on a quantizer "
                            "problem (-t vq-distance or quantizer-smoothed) or in a training task")
    return est.train()


def check_arguments(est, logits, samples, seed, chunk_size=None, confidence=0.95, groups=JACKKNIFE_GROUPS, reference=None,
                    owner="gradient_statistics") -> tuple[int, int, int]:
    """Every argument of :func:`gradient_statistics` checked before any work: (samples, seed, rows per draw)."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise GumbenchError(f"{owner}: logits must be a tensor of shape (G, V), got {getattr(logits, 'shape', type(logits).__name__)}")
    check_logits(logits)
    if logits.numel() == 0:
        raise GumbenchError(f"{owner}: logits must have at least one group and one category, got shape {tuple(logits.shape)}")
    if isinstance(est, CategoricalEstimator):
        est.check_input(logits)  # once: the draws copy these logits and skip forward's checks
    samples = check_integer(owner, "samples", samples, SAMPLES)
    seed = check_integer(owner, "seed", seed, SEED)
    check_number(owner, "confidence", confidence, Range(0, 1, low_open=True, high_open=True))
    check_integer(owner, "groups", groups, Range(2, 10_000))
    if chunk_size is not None:
        chunk_size = check_integer(owner, "chunk_size", chunk_size, Range(1))
    rows = rows_at_once(owner, "chunk_size", est, logits, None if chunk_size is None else min(chunk_size, samples))
    if reference is not None:
        if not isinstance(reference, torch.Tensor) or tuple(reference.shape) != tuple(logits.shape):
            raise GumbenchError(f"{owner}: reference gradient must be a tensor of the shape of logits {tuple(logits.shape)}, "
                                f"got {getattr(reference, 'shape', type(reference).__name__)}")
        if not torch.isfinite(reference).all():
            raise GumbenchError(f"{owner}: reference gradient must be finite")
    return samples, seed, rows


def _exact_or_reference(logits, loss_fn, reference) -> tuple[torch.Tensor, float | None]:
    """(gradient to compare with in float64, E[loss] or None): by enumeration, or the given reference."""
    if reference is not None:
        return reference.detach().to(torch.float64).cpu(), None
    exact, expected = exact_gradient(logits, loss_fn)
    # p_i (f_i - E f) vanishes where f is constant on the configurations of positive probability (float64
    # rounding leaves ~1e-16 |E f|); a gradient that small is checked against the values themselves
    if float(exact.norm()) <= 1e-10 * abs(expected):
        index, values = enumerated_losses(logits, loss_fn)
        possible = torch.isfinite(logits)[torch.arange(logits.shape[0]), index].all(-1)
        if values[possible].unique().numel() == 1:
            raise GumbenchError(f"the exact gradient is zero: loss_fn takes the same value ({float(values[possible][0]):g}) on "
                                "every configuration of positive probability, so there is nothing to estimate")
    return exact, expected


def gradient_statistics(
    estimator,
    logits: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    *,
    confidence: float = 0.95,
    groups: int = JACKKNIFE_GROUPS,
    chunk_size: int | None = None,
    reference: torch.Tensor | None = None,
) -> GradientStatistics:
    """Bias, variance, MSE, cosine and SNR of ``estimator`` on ``logits`` (G, V) against the exact gradient.

    ``estimator`` is a registry name or an Estimator (copied, so its state is left alone).
    ``loss_fn`` maps (S, G, V) to (S,). See the module docstring for the definitions.
    ``reference`` replaces the enumerated exact gradient where V^G is too large to enumerate
    (e.g. a many-sample unbiased estimate); its own error then adds to the reported bias, and
    ``expected_loss`` is then None. ``chunk_size`` rows are drawn at once (default: up to 4096, as
    many as keep rows x logits x draws per estimate within :data:`gumbench.plugin.MAX_ELEMENTS`).
    Every argument is checked before any work (:func:`check_arguments`); a loss that is not finite,
    or constant, on some configuration is refused when enumeration or a draw meets it.
    Three steps: :func:`accumulate` draws, :func:`jackknife_intervals` turns the group sums into
    intervals, and this function assembles the result.
    """
    est = _training_copy(estimator)
    samples, seed, chunk_size = check_arguments(est, logits, samples, seed, chunk_size, confidence, groups, reference)
    keep_freed_memory()  # chunks reuse freed memory instead of faulting in fresh pages (gumbench.memory)
    groups = max(2, min(groups, samples // 2))
    exact, expected = _exact_or_reference(logits, loss_fn, reference)
    group_sums = accumulate(est, logits, loss_fn, exact, samples, seed, groups, chunk_size)
    return assemble(est, samples, seed, confidence, exact, expected, group_sums, tuple(logits.shape))


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
        relative_bias=Interval(bias.value / exact_norm, bias.low / exact_norm, bias.high / exact_norm) if exact_norm > 0 else None,
        total_variance=_scalar(intervals["total_variance"], clip=True),
        coordinate_variance=coord.reshape(shape),
        coordinate_variance_low=coord_low.clamp_min(0).reshape(shape),
        coordinate_variance_high=coord_high.reshape(shape),
        mse=_scalar(intervals["mse"], clip=True),
        cosine=_scalar(intervals["cosine"], lambda v: min(max(v, -1.0), 1.0)),
        snr=_scalar(intervals["snr"], clip=True),
        reference_error=reference_error,
    )


def zero_estimate_statistics(est, samples: int, seed: int, confidence: float, exact: torch.Tensor, expected: float | None,
                             shape: tuple[int, ...], reference_error: float | None = None) -> GradientStatistics:
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


def problem_statistics(estimator, problem, samples: int = DEFAULT_SAMPLES, seed: int = 0, *, confidence: float = 0.95,
                       groups: int = JACKKNIFE_GROUPS) -> GradientStatistics:
    """Bias, variance, MSE, cosine and SNR of ``estimator``'s gradient in z or the codebook (the problem's ``wrt``)
    on a :class:`~gumbench.benchmarks.quantizer_problems.QuantizerProblem` (a name or an instance), against its
    reference: exact by enumeration (``vq-distance``) or Monte Carlo with a stated error (``quantizer-smoothed``)."""
    from gumbench.benchmarks.quantizer_problems import QuantizerProblem

    problem = make_task(problem)
    if not isinstance(problem, QuantizerProblem):
        raise GumbenchError(f"problem_statistics: {problem.spec} is a toy with logits; use gradient_statistics")
    est = copy.deepcopy(make_estimator(estimator)).train()
    problem.check_estimator(est)
    samples = check_integer("problem_statistics", "samples", samples, SAMPLES)
    seed = check_integer("problem_statistics", "seed", seed, SEED)
    check_number("problem_statistics", "confidence", confidence, Range(0, 1, low_open=True, high_open=True))
    check_integer("problem_statistics", "groups", groups, Range(2, 10_000))
    keep_freed_memory()
    groups = max(2, min(groups, samples // 2))
    exact, expected, error = problem.reference()
    exact = exact.clone()  # the problem's cached reference stays as computed, whatever a caller does with the result
    problem.check_reference(exact, expected)
    rows = min(samples, problem.rows_at_once(est))
    group_sums = accumulate(est, None, None, exact, samples, seed, groups, rows, draw=lambda n, gen: problem.draw(est, n, gen))
    return assemble(est, samples, seed, confidence, exact, expected, group_sums, problem.shape, error)


@dataclass
class GradstatsRun:
    """Gradient statistics of several estimators on one toy task."""

    task: str
    statistics: list[GradientStatistics]


def default_estimators() -> list[str]:
    """Every registered categorical estimator, once per showcased variant (e.g. each REINFORCE baseline)."""
    from gumbench.estimators import categorical_variants

    return categorical_variants()


def run_gradstats(task, estimators=None, *, tau: float | None = None, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> GradstatsRun:
    """Statistics for each estimator (default: :func:`default_estimators`) on a toy task.

    ``tau`` overrides the temperature of every estimator that has one; naming an estimator
    without a temperature together with ``tau`` is an error. All names are checked before
    anything runs.
    """
    from gumbench.benchmarks.quantizer_problems import QuantizerProblem

    toy = make_task(task)
    problem = isinstance(toy, QuantizerProblem)
    if tau is not None:  # checked once, so that no estimator of the default set is left out for a tau nothing takes
        check_number("gradstats", "tau", tau, TEMPERATURE)
    explicit = estimators is not None
    built = []
    for name in estimators if explicit else (toy.default_estimators() if problem else default_estimators()):
        est = make_estimator(name)
        if tau is not None and problem and not explicit and not est.has_temperature:
            built.append(est)  # a problem's default VQ estimators have no temperature: --tau sets the others'
            continue
        if tau is not None:
            if est.has_temperature:
                try:
                    est = est.with_params(tau=tau)
                except GumbenchError:
                    if explicit:
                        raise
                    continue  # the default set leaves out estimators that refuse this tau (ReinMax needs tau >= 1)
            elif explicit:
                raise GumbenchError(f"--tau was given but {est.name} has no temperature; estimators with one: "
                                    + ", ".join(n for n in default_estimators() if make_estimator(n).has_temperature))
        built.append(est)
    if not built:
        raise GumbenchError("no estimators to run")
    if tau is not None and not any(est.has_temperature for est in built):
        raise GumbenchError(f"--tau was given but no estimator measured on {toy.spec} has a temperature")
    if problem:
        for est in built:
            toy.check_estimator(est)
        toy.check_reference(*toy.reference()[:2])
        check_integer("gradstats", "samples", samples, SAMPLES)
        check_integer("gradstats", "seed", seed, SEED)
        return GradstatsRun(toy.spec, [problem_statistics(est, toy, samples, seed) for est in built])
    for est in built:  # every argument with every estimator, before the first one runs
        check_arguments(est, toy.logits, samples, seed)
    return GradstatsRun(toy.spec, [gradient_statistics(est, toy.logits, toy.loss, samples, seed) for est in built])


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
    reference = "exact grad" if first.reference_error is None else f"reference grad (RMS error {format_number(first.reference_error)})"
    title = (f"{run.task}: {first.samples} estimates each, seed {first.seed}, ||{reference}|| = {format_number(first.exact_norm)}, "
             f"E(loss) = {format_number(first.expected_loss)}; [{first.confidence:.0%} CI]")
    columns = ("estimator", "bias / ||grad||", "total variance", "MSE", "cosine", "SNR")
    rows = [(s.label, *(format_interval(getattr(s, k)) for k in ("relative_bias", "total_variance", "mse", "cosine", "snr")))
            for s in run.statistics]
    return render(title, columns, rows, width=width)
