"""One interface for the three estimator families: relaxations (with straight-through),
score-function estimators and vector quantization.

An estimator is a ``torch.nn.Module`` (so ``train()``/``eval()`` and state such as
an EMA baseline or an EMA codebook work as usual) called as

    out = estimator(logits, loss_fn, generator=gen)          # categorical families
    out = estimator(vectors, loss_fn, codebook=E, generator=gen)  # vector quantization

``logits`` has shape (..., G, V): G independent groups of V categories, any
leading batch dimensions. ``loss_fn`` maps the forward value (..., G, V) to one
loss per row, shape (...); it must accept extra leading dimensions, because
estimators that draw several samples per row (REINFORCE with a leave-one-out
baseline) call it once on all of them, shape (S, ..., G, V) -> (S, ...).

The result is an :class:`EstimatorOutput`. ``surrogate`` has one entry per row;
its gradient is the estimate: ``out.surrogate.sum().backward()`` leaves in
``logits.grad[i]`` the estimate for row i (rows never mix), and
``out.surrogate.mean().backward()`` is the usual training step.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, NamedTuple

import torch
from torch.nn.parameter import is_lazy

from gumbench.errors import GumbenchError
from gumbench.kernels.reference import check_logits
from gumbench.plugin import MAX_ELEMENTS, TEMPERATURE, Plugin, Range, check_integer
from gumbench.registry import Registry, parse_spec

LossFn = Callable[[torch.Tensor], torch.Tensor]

FAMILIES = ("relaxation", "score-function", "vq")

# The largest |logit| accepted: the estimators compute in float32 (float64 for float64 logits) and
# divide differences of two logits (plus bounded Gumbel noise) by tau >= TEMPERATURE.low, which
# stays below float32's largest value for logits up to this bound.
LOGIT_LIMIT = torch.finfo(torch.float32).max * TEMPERATURE.low / 4

# the built-ins register when gumbench.estimators (the package) imports their modules
registry = Registry("estimator", group="gumbench.estimators")
register = registry.register


class EstimatorOutput(NamedTuple):
    """What every estimator returns.

    surrogate: (...,) per-row objective; its gradient is the estimate (includes aux losses).
    value:     the forward value handed to ``loss_fn`` (a sample, a relaxation or quantized vectors);
               a leading sample dimension is added when an estimator draws several samples per row.
    indices:   (..., G) chosen category or code per group (for utilization), same leading dims as value.
    loss:      (...,) the downstream loss per row (averaged over samples when several are drawn).
    aux:       named auxiliary losses per row (e.g. VQ codebook and commitment), already in ``surrogate``.
    stage_indices: (..., G, S) the code of each of S stages for residual quantizers (``residual-vq``;
               -1 where quantizer dropout skipped a stage), None for every other estimator.
    """

    surrogate: torch.Tensor
    value: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    aux: dict[str, torch.Tensor]
    stage_indices: torch.Tensor | None = None


class Estimator(Plugin, torch.nn.Module):
    """Base class: a plugin (name, declared parameters, spec, label, ``with_params``) that is also
    an ordinary ``torch.nn.Module``: the declared parameters are ``defaults`` (so ``parameters()``,
    ``named_parameters()``, ``state_dict()``, ``load_state_dict()`` and ``.to()`` are the module's
    own), and learnable state is a Parameter, running state a buffer. State an estimator makes on its
    first call (vq-commitment's EMA statistics and restart counters, registered as None buffers;
    SimVQ's W, an ``UninitializedParameter``; a VQ estimator's own codebook) is left out of
    ``state_dict()`` until it exists, and ``load_state_dict()`` makes it from the saved tensors, so the
    state of a trained estimator loads into a fresh one made from the same spec. It has a family and
    declared capabilities, read directly:

    has_temperature         it has a ``tau`` parameter (set from ``defaults``; the training
                            tasks' temperature schedules and ``gradstats --tau`` change it)
    required_categories     V that logits must have (DisARM: 2), None for any
    zero_estimate_possible  the estimate can be exactly 0 with positive probability (DisARM)
    variants                parameter sets shown in the default gradstats table; () keeps it out
    loss_evaluations        calls' worth of ``loss_fn`` per estimate (per row): 1 by default; a property
                            where it depends on parameters (REINFORCE: its samples, DisARM: 2, REBAR: 3),
                            and :meth:`evaluations_per_estimate` where it depends on the logits' shape too
    """

    family: ClassVar[str]
    has_temperature: ClassVar[bool] = False
    required_categories: ClassVar[int | None] = None
    zero_estimate_possible: ClassVar[bool] = False
    variants: ClassVar[tuple[dict, ...]] = ({},)
    loss_evaluations: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.has_temperature = "tau" in cls.defaults

    def __init__(self, **params):
        torch.nn.Module.__init__(self)
        Plugin.__init__(self, **params)

    @property
    def temperature(self) -> float:
        """The ``tau`` parameter; NaN for estimators without a temperature (as rows record it)."""
        return float(self.params["tau"]) if self.has_temperature else math.nan

    def evaluations_per_estimate(self, groups: int, categories: int) -> int:
        """Loss evaluations per estimate on logits of ``groups`` x ``categories``: ``loss_evaluations``, unless
        the count depends on the shape (IndeCateR: G x V per draw); the equal-cost views compare at this."""
        return self.loss_evaluations

    def incompatibility(self, categories: int) -> str | None:
        """Why this estimator cannot take logits with ``categories`` per group, or None."""
        if self.required_categories is not None and categories != self.required_categories:
            return f"{self.name} needs {self.required_categories} categories"
        return None

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # as torch's LazyModuleMixin, but a parameter not made yet (SimVQ's W before the first call) is left out
        for name, param in self._parameters.items():
            if param is not None and not is_lazy(param):
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buffer if keep_vars else buffer.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Make the state this estimator has not made yet (None parameters and buffers, uninitialized
        parameters) like the saved tensors, then load as any module; a parameter that neither side has
        made yet is not missing."""
        for name, param in self._parameters.items():
            saved = state_dict.get(prefix + name)
            if saved is None:
                continue
            if param is None:
                made = torch.empty_like(saved)
                self._parameters[name] = torch.nn.Parameter(made, requires_grad=saved.is_floating_point())
            elif is_lazy(param):
                param.materialize(saved.shape, device=saved.device, dtype=saved.dtype)
        for name, buffer in self._buffers.items():
            saved = state_dict.get(prefix + name)
            if buffer is None and saved is not None and name not in self._non_persistent_buffers_set:
                self._buffers[name] = torch.empty_like(saved)
        unmade = [prefix + name for name, param in self._parameters.items() if param is not None and is_lazy(param)]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        missing_keys[:] = [key for key in missing_keys if key not in unmade]


def call_loss(loss_fn: LossFn, value: torch.Tensor, batch_shape: torch.Size, who: str) -> torch.Tensor:
    """Call the downstream loss and check it returns one loss per row."""
    loss = loss_fn(value)
    if not isinstance(loss, torch.Tensor) or tuple(loss.shape) != tuple(batch_shape):
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise GumbenchError(
            f"{who}: loss_fn must return one loss per row, shape {tuple(batch_shape)} for a value of shape "
            f"{tuple(value.shape)}; it returned {got}"
        )
    return loss


class CategoricalEstimator(Estimator):
    """Estimators over logits (..., G, V): relaxations, straight-through and score-function."""

    family: ClassVar[str] = "relaxation"

    def forward(
        self, logits: torch.Tensor, loss_fn: LossFn, *, generator: torch.Generator | None = None
    ) -> EstimatorOutput:
        self.check_input(logits)
        return self.estimate(logits, loss_fn, generator)

    def check_input(self, logits: torch.Tensor) -> None:
        """What ``forward`` checks before ``estimate``: NaN, +inf, all-masked rows, shape and the size
        of the logits. Callers that draw many times from copies of checked logits (gradient
        statistics) check once and call ``estimate`` directly."""
        check_logits(logits)
        if logits.dim() < 2:
            raise GumbenchError(f"{self.spec}: logits need shape (..., G, V), got {tuple(logits.shape)}")
        if logits.numel():
            with torch.no_grad():
                largest = float(logits.abs().masked_fill(torch.isneginf(logits), 0).amax())
            if largest > LOGIT_LIMIT:
                raise GumbenchError(f"{self.spec}: logits must be -inf or at most {LOGIT_LIMIT:.2g} in absolute value "
                                    f"(so that logits / tau stays finite in float32), got {largest:.3g}")

    def estimate(self, logits: torch.Tensor, loss_fn: LossFn, generator: torch.Generator | None) -> EstimatorOutput:
        raise NotImplementedError  # abstract: each estimator defines it

    def noiseless(self, logits: torch.Tensor, loss_fn: LossFn) -> EstimatorOutput:
        """The eval-mode output of the Gumbel family: the one-hot of the noiseless argmax, no gradient."""
        indices = logits.detach().argmax(dim=-1)
        value = one_hot(indices, logits.shape[-1], logits.dtype)
        loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})


class VQEstimator(Estimator):
    """Estimators over continuous vectors (..., G, D) and a codebook: vector quantization.

    Called as ``estimator(vectors, loss_fn, codebook=E, generator=gen)``, or without ``codebook=`` once the
    estimator owns one (:meth:`own_codebook`); ``assign_codes`` gives the code each vector goes to,
    deterministically (for evaluations). Declared capabilities, read directly:

    codebook_gradient   the given codebook gets a gradient (False where the method holds it frozen, as SimVQ does)
    implicit_codes      the quantizer fixes its code space itself (FSQ's grid, the corners of LFQ and BSQ,
                        residual stages of these), so the codebook's values are never read: ``code_space``
                        gives (codes, code_dim), and a training task sizes its bottleneck from it
    has_code_digits     every code is a tuple of per-dimension levels: ``index_digits`` and ``digit_levels``
                        give them (utilization's effective-bits columns)
    stochastic_codes    in training the chosen codes depend on the draws (SF-DiVeQ's dither), not on the inputs alone
    """

    family: ClassVar[str] = "vq"
    codebook_gradient: ClassVar[bool] = True
    implicit_codes: ClassVar[bool] = False
    has_code_digits: ClassVar[bool] = False
    stochastic_codes: ClassVar[bool] = False

    def __init__(self, **params):
        super().__init__(**params)
        self.register_parameter("codebook", None)  # made by own_codebook(); None: the caller passes codebook=

    def own_codebook(self, codes: int, dim: int, groups: int | None = None, *, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32) -> "VQEstimator":
        """Give this estimator a learnable codebook of its own and return it (the estimator): an ``nn.Parameter``
        of ``codes`` codes of dimension ``dim``, (G, K, D) with one book per group or (K, D) shared when
        ``groups`` is None, drawn N(0, 1/D) from ``generator`` (as the training bottleneck's). Calls without
        ``codebook=`` then use it, and ``parameters()``, ``state_dict()`` and ``.to()`` include it, so
        ``torch.optim.Adam(estimator.parameters())`` trains it (with ``ema=true`` the EMA writes it instead)."""
        sizes = [check_integer(self.label, "codes", codes, Range(1)), check_integer(self.label, "dim", dim, Range(1))]
        if groups is not None:
            sizes.insert(0, check_integer(self.label, "groups", groups, Range(1)))
        if math.prod(sizes) > MAX_ELEMENTS:
            raise GumbenchError(f"{self.label}: a codebook of {' x '.join(map(str, sizes))} elements is too large; "
                                f"at most {MAX_ELEMENTS:,} (memory)")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise GumbenchError(f"{self.label}: the codebook's dtype must be a floating-point torch.dtype, "
                                f"got {dtype!r}")
        self.codebook = torch.nn.Parameter(torch.randn(*sizes, generator=generator).to(dtype) / math.sqrt(dim))
        return self

    def code_space(self, codes: int | None = None, code_dim: int | None = None) -> tuple[int, int] | None:
        """(codes, code_dim) of an implicit code space (``implicit_codes``) that agrees with ``codes`` and
        ``code_dim`` where given (a training task's explicit settings), None if none does."""
        raise NotImplementedError(f"{self.name} has no implicit code space")  # only where implicit_codes

    def index_digits(self, indices: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        """Per-dimension level indices (..., G, D) of code indices (..., G) (only where ``has_code_digits``)."""
        raise NotImplementedError(f"{self.name} has no per-dimension code digits")

    def digit_levels(self, dim: int | None = None) -> tuple[int, ...]:
        """Levels per dimension of codes of dimension ``dim`` (only where ``has_code_digits``)."""
        raise NotImplementedError(f"{self.name} has no per-dimension code digits")

    def book_sizes(self, count: int) -> tuple[int, ...]:
        """The code counts of the books each group of a frame takes one code from, for a codebook of ``count``
        codes: one book of all of them here (residual-vq has one per stage); their log2 sum is the bits per group."""
        return (count,)

    def local_stage_codes(self, stage_indices: torch.Tensor, count: int) -> tuple[torch.Tensor, int | tuple[int, ...]]:
        """``stage_indices`` (..., G, S) as codes of each stage's own book, and the books' sizes: here every
        stage uses the whole codebook of ``count`` codes (residual-vq splits it)."""
        return stage_indices, count

    def assign_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract: each VQ estimator defines its assignment

    def decode(self, indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The vectors (..., G, D) that codes ``indices`` (..., G) stand for: rows of the codebook, (G, K, D)
        per group or (K, D) shared. Quantizers whose codes are not codebook rows (implicit codebooks, a
        learned map) override it."""
        books = codebook if codebook.dim() == 3 else codebook.unsqueeze(0).expand(indices.shape[-1], *codebook.shape)
        return torch.einsum("...gk,gkd->...gd", one_hot(indices, books.shape[1], books.dtype), books)

    @torch.no_grad()
    def quantize(self, vectors: torch.Tensor,
                 codebook: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes and vectors for evaluations, (indices (..., G), vectors (..., G, D)): the estimator's own
        eval-mode forward (no noise, no codebook update), so what is evaluated is what the downstream
        sees, whatever the quantizer (implicit codes, residual sums, a learned map). Without ``codebook``,
        the estimator's own."""
        training = self.training
        self.eval()
        try:
            out = self(vectors, lambda value: value.new_zeros(value.shape[:-2]), codebook=codebook)
        finally:
            self.train(training)
        return out.indices, out.value.detach()

    def incompatibility(self, categories: int) -> str | None:
        return "VQ estimators take vectors, not logits"


def make_estimator(spec: "str | Estimator", **overrides) -> Estimator:
    """An estimator from a registry name (``'st-gumbel[tau=0.5]'``) or an instance (returned as
    is, or as ``spec.with_params(**overrides)``)."""
    if isinstance(spec, Estimator):
        return spec.with_params(**overrides) if overrides else spec
    parsed = parse_spec(spec)
    if any(isinstance(v, list) for v in {**parsed.params, **overrides}.values()):
        raise GumbenchError(f"{spec!r} is a grid of estimators; pass one value per parameter (see Spec.grid())")
    return registry.create(parsed, **overrides)


def one_hot(index: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot of ``index`` over a new last dimension, built directly in ``dtype``."""
    out = torch.zeros(*index.shape, num_classes, dtype=dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1.0)
