"""One interface for every problem with a gradient to measure: :class:`GradientProblem`.

A problem hands the statistics (:func:`gumbench.benchmarks.gradstats.problem_statistics`) five things:

    shape                 the shape of the gradient measured (logits (G, V), a vector z (G, D), a codebook ...)
    reference()           the gradient to compare with, in float64, with E[loss] and the reference's own error
                          (:class:`Reference`; error None where it is exact), computed once per instance by
                          ``compute_reference()``, which a problem implements
    check_estimator(est)  refuse, with one line, an estimator that cannot be measured here (before any work)
    rows_at_once(est, ..) how many estimates one batched draw makes (memory-bounded)
    draw(est, rows, gen)  ``rows`` independent estimates, (rows, prod(shape)) in float64

plus ``incompatibility(est)`` (the reason a sweep leaves a pair out, or None), ``check_reference``
(refuse a reference at rounding level) and ``default_estimators()``. Capabilities are class data:
``has_logits`` (the problem's gradient is w.r.t. logits a categorical estimator takes; ``optimize`` needs it).

:class:`LogitsGradient` implements the interface for logits (G, V) and a loss on (relaxed) one-hots
(..., G, V) -> (...): the toys, the ELBO probe and the speech quantizer probe are such problems, and
:class:`LogitsProblem` makes one from any logits and loss (what ``gradient_statistics`` measures).
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, NamedTuple

import torch

from gumbench.benchmarks.problems.enumeration import enumerated_losses, exact_gradient
from gumbench.errors import GumbenchError
from gumbench.kernels.reference import check_logits
from gumbench.plugin import MAX_ELEMENTS

# Elements (rows x logits) of one batched draw by default, times the square root of the draws per
# estimate: small enough that a chunk's tensors stay in cache and the allocator reuses their memory,
# large enough that per-call overhead is amortized. Measured on the project's 2-core machine
# (10,000 estimates, V = 64 to 4,096): 2^18 was fastest for one draw per estimate (straight-through,
# st-gumbel), 2^19 to 2^20 elements with the draws for REINFORCE-RLOO (4 draws) and Gumbel-Rao (10).
CHUNK_ELEMENTS = 2**18
WARMUP_ROWS = (
    256  # rows of the discarded first draw that brings stateful estimators (an EMA baseline) to their running state
)


class Reference(NamedTuple):
    """The gradient to compare with (float64, the problem's shape), E[loss] there (None where unknown) and the
    RMS error of the reference itself (None where it is exact; a Monte Carlo reference's error adds to the bias)."""

    gradient: torch.Tensor
    expected: float | None
    error: float | None


class GradientProblem:
    """The interface; see the module docstring. Subclasses implement ``shape``, ``reference``,
    ``incompatibility``, ``rows_at_once``, ``draw`` and ``default_estimators``."""

    has_logits: ClassVar[bool] = False

    @property
    def spec(self) -> str:
        raise NotImplementedError  # abstract: the name the problem is shown under

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError  # abstract

    _reference: Reference | None = None  # set by the first reference() call

    def reference(self) -> Reference:
        """The reference, computed once per instance by :meth:`compute_reference` (a sweep reuses a problem per
        spec and worker, so the 2^20-pair smoothed reference is computed once)."""
        if self._reference is None:
            self._reference = self.compute_reference()
        return self._reference

    def compute_reference(self) -> Reference:
        raise NotImplementedError  # abstract: the gradient to compare with

    def check_reference(self, reference: Reference) -> None:
        """Refuse a reference that relative statistics cannot be measured against (default: accept)."""

    def vanishes(self, reference: Reference) -> bool:
        """Whether this instance's reference gradient is zero to rounding against the gradient's natural scale, so
        that it can be reported but not ranked (a sweep stores no statistics for it); default: never."""
        return False

    @property
    def choice_shape(self) -> tuple[int, int] | None:
        """(groups, categories) of the discrete choice, what an estimator's loss evaluations per estimate can depend
        on (IndeCateR's G x V); None where the problem does not say (then an estimator's own count is used)."""
        return None

    def loss_evaluations(self, estimator) -> int:
        """Evaluations of the loss per estimate of ``estimator`` here (the equal-cost views compare at this)."""
        shape = self.choice_shape
        return int(estimator.loss_evaluations if shape is None else estimator.evaluations_per_estimate(*shape))

    def incompatibility(self, estimator) -> str | None:
        raise NotImplementedError  # abstract: why ``estimator`` cannot be measured here, or None

    def peak_memory(self, estimator=None, samples: int | None = None):
        """Estimated peak memory of measuring ``estimator`` here (:class:`gumbench.footprint.Peak`); by default
        none beyond the chunked draws' (``rows_at_once`` bounds them)."""
        from gumbench.footprint import Peak

        return Peak(0, ())

    def check_estimator(self, estimator) -> None:
        """Refuse, in one line, an estimator that cannot be measured on this problem."""
        reason = self.incompatibility(estimator)
        if reason:
            raise GumbenchError(f"{estimator.label} cannot be measured on {self.spec}: {reason}")

    def rows_at_once(self, estimator, chunk_size: int | None, samples: int, owner: str = "gradient_statistics") -> int:
        raise NotImplementedError  # abstract: rows of one batched draw

    def warmup_rows(self, estimator, samples: int, rows: int) -> int:
        """Rows of the discarded first draw: WARMUP_ROWS, fewer where the problem's memory bound says so."""
        return min(samples, WARMUP_ROWS, max(1, rows))

    def draw(self, estimator, rows: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError  # abstract: (rows, prod(shape)) float64 estimates

    def default_estimators(self) -> list[str]:
        raise NotImplementedError  # abstract


def draws_per_estimate(estimator) -> int:
    """Samples one estimate draws per row (REINFORCE's ``samples``, Gumbel-Rao's M): it multiplies the memory of a
    draw."""
    return int(estimator.params.get("samples", 1) or 1)


def rows_at_once(owner: str, key: str, estimator, logits: torch.Tensor, rows: int | None) -> int:
    """Rows of one batched draw: ``rows`` if given (refused when rows x logits x draws per estimate
    passes MAX_ELEMENTS), else CHUNK_ELEMENTS x sqrt(draws per estimate) elements' worth (at least one
    row): memory is bounded by the chunk, whatever the number of estimates."""
    per_row = logits.numel() * draws_per_estimate(estimator)
    if rows is None:
        rows = max(1, int(CHUNK_ELEMENTS * math.sqrt(draws_per_estimate(estimator))) // per_row)
    if per_row > MAX_ELEMENTS:
        raise GumbenchError(
            f"{owner}: one estimate of {estimator.label} draws {draws_per_estimate(estimator)} samples of "
            f"{logits.numel()} logits, {per_row:,} elements; at most {MAX_ELEMENTS:,} are allowed (lower its samples)"
        )
    if rows * per_row > MAX_ELEMENTS:
        raise GumbenchError(
            f"{owner}: {key} x logits x draws per estimate of {estimator.label} = {rows} x {logits.numel()} x "
            f"{draws_per_estimate(estimator)} elements at once; at most {MAX_ELEMENTS:,} are allowed "
            f"(use {key} <= {MAX_ELEMENTS // per_row})"
        )
    return rows


def _draw(estimator):
    """The call that draws: ``estimate`` itself where the input checks of ``forward`` are the base
    class's (made once, on the logits the rows copy, by ``check_estimator``), else the module."""
    from gumbench.estimators import CategoricalEstimator

    if isinstance(estimator, CategoricalEstimator) and type(estimator).forward is CategoricalEstimator.forward:
        return lambda leaf, loss_fn, generator: estimator.estimate(leaf, loss_fn, generator)
    return lambda leaf, loss_fn, generator: estimator(leaf, loss_fn, generator=generator)


def draw_estimates(estimator, logits: torch.Tensor, loss_fn, rows: int, generator) -> torch.Tensor:
    """``rows`` independent estimates with one backward: (rows, G*V) in float64, not checked for
    finiteness (the accumulation checks its sums, which any NaN or inf reaches)."""
    leaf = logits.detach().unsqueeze(0).expand(rows, *logits.shape).clone().requires_grad_(True)
    out = _draw(estimator)(leaf, loss_fn, generator)
    loss = out.loss.detach()
    if not torch.isfinite(loss).all():
        raise GumbenchError(f"{estimator.spec}: loss_fn returned {float(loss[~torch.isfinite(loss)][0])} on a drawn "
                            "configuration; it must be finite for every configuration")
    (grad,) = (
        torch.autograd.grad(out.surrogate.sum(), leaf, allow_unused=True) if out.surrogate.requires_grad else (None,)
    )
    if grad is None:
        raise GumbenchError(f"{estimator.spec} got no gradient at the logits: loss_fn's value does not depend on its "
                            "input through autograd (detached or constant); a relaxation needs a differentiable loss")
    return grad.reshape(rows, -1).to(torch.float64)


class LogitsGradient(GradientProblem):
    """The gradient of E_{z ~ softmax(logits)}[loss(z)] w.r.t. logits (G, V): exact by enumeration (V^G <= 65,536)
    unless ``given_reference`` replaces it. Subclasses provide ``logits`` and ``loss(y)``."""

    has_logits: ClassVar[bool] = True
    given_reference: torch.Tensor | None = None
    logits: torch.Tensor

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.logits.shape)

    @property
    def choice_shape(self) -> tuple[int, int]:
        return tuple(self.logits.shape[-2:])

    def compute_reference(self) -> Reference:
        if self.given_reference is not None:
            return Reference(self.given_reference.detach().to(torch.float64).cpu(), None, None)
        return Reference(*exact_gradient(self.logits, self.loss), None)

    def check_reference(self, reference: Reference) -> None:
        # p_i (f_i - E f) vanishes where f is constant on the configurations of positive probability (float64
        # rounding leaves ~1e-16 |E f|); a gradient that small is checked against the values themselves
        if reference.expected is None or float(reference.gradient.norm()) > 1e-10 * abs(reference.expected):
            return
        index, values = enumerated_losses(self.logits, self.loss)
        possible = torch.isfinite(self.logits)[torch.arange(self.logits.shape[0]), index].all(-1)
        if values[possible].unique().numel() == 1:
            raise GumbenchError(
                f"the exact gradient is zero: loss_fn takes the same value ({float(values[possible][0]):g}) on "
                "every configuration of positive probability, so there is nothing to estimate"
            )

    def incompatibility(self, estimator) -> str | None:
        """Why ``estimator`` cannot be measured on these logits (a VQ estimator, DisARM on V != 2), or None."""
        return estimator.incompatibility(self.shape[1])

    def peak_memory(self, estimator=None, samples: int | None = None):
        """Estimated peak memory of measuring ``estimator`` here (:class:`gumbench.footprint.Peak`); by default
        none beyond the chunked draws' (``rows_at_once`` bounds them)."""
        from gumbench.footprint import Peak

        return Peak(0, ())

    def check_estimator(self, estimator) -> None:
        """A VQ estimator is refused pointing to the quantizer problems; a categorical one checks the logits once
        (the draws copy them and skip ``forward``'s checks)."""
        from gumbench.estimators import CategoricalEstimator

        if not isinstance(estimator, CategoricalEstimator):
            raise GumbenchError(
                f"{estimator.label} is a VQ estimator: it takes vectors and a codebook, not logits; measure it on "
                "a quantizer problem (-t vq-distance or quantizer-smoothed) or in a training task"
            )
        estimator.check_input(self.logits)

    def rows_at_once(self, estimator, chunk_size: int | None, samples: int, owner: str = "gradient_statistics") -> int:
        return rows_at_once(
            owner, "chunk_size", estimator, self.logits, None if chunk_size is None else min(chunk_size, samples)
        )

    def warmup_rows(self, estimator, samples: int, rows: int) -> int:
        return min(samples, WARMUP_ROWS, max(1, MAX_ELEMENTS // (self.logits.numel() * draws_per_estimate(estimator))))

    def draw(self, estimator, rows: int, generator: torch.Generator) -> torch.Tensor:
        return draw_estimates(estimator, self.logits, self.loss, rows, generator)

    def default_estimators(self) -> list[str]:
        """Every registered categorical estimator, once per showcased variant (e.g. each REINFORCE baseline)."""
        from gumbench.estimators import categorical_variants

        return categorical_variants()


class LogitsProblem(LogitsGradient):
    """Any logits (G, V) with a loss on one-hots (N, G, V) -> (N,); ``reference`` (a tensor of the logits' shape) or
    ``exact_gradient`` (a callable giving it) replaces enumeration where V^G is too large. Checked on construction.
    The speech tasks' quantizer probe is one (every quantizer group of a frozen batch as one row)."""

    def __init__(
        self,
        logits: torch.Tensor,
        loss_fn: Callable[[torch.Tensor], torch.Tensor],
        reference: torch.Tensor | None = None,
        *,
        name: str = "logits",
        owner: str = "gradient_statistics",
        exact_gradient: Callable[[], torch.Tensor] | None = None,
    ):
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise GumbenchError(
                f"{owner}: logits must be a tensor of shape (G, V), "
                f"got {getattr(logits, 'shape', type(logits).__name__)}"
            )
        check_logits(logits)
        if logits.numel() == 0:
            raise GumbenchError(
                f"{owner}: logits must have at least one group and one category, got shape {tuple(logits.shape)}"
            )
        if reference is not None:
            if not isinstance(reference, torch.Tensor) or tuple(reference.shape) != tuple(logits.shape):
                raise GumbenchError(
                    f"{owner}: reference gradient must be a tensor of the shape of logits {tuple(logits.shape)}, "
                    f"got {getattr(reference, 'shape', type(reference).__name__)}"
                )
            if not torch.isfinite(reference).all():
                raise GumbenchError(f"{owner}: reference gradient must be finite")
        self.logits, self.loss_fn, self.given_reference, self.name = logits, loss_fn, reference, name
        self.exact_gradient = (
            exact_gradient  # d E[loss] / d logits by a route cheaper than enumerating V^G (a per-frame sum)
        )

    def compute_reference(self) -> Reference:
        if self.given_reference is None and self.exact_gradient is not None:
            return Reference(self.exact_gradient().detach().to(torch.float64).cpu(), None, None)
        return super().compute_reference()

    @property
    def spec(self) -> str:
        return self.name

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(y)
