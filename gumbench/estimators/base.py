"""One interface for the three estimator families.

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

from typing import Callable, ClassVar, NamedTuple

import torch

from gumbench.errors import GumbenchError
from gumbench.kernels.reference import check_logits
from gumbench.registry import Registry, coerce_params, format_spec, parse_spec

LossFn = Callable[[torch.Tensor], torch.Tensor]

FAMILIES = ("relaxation", "score-function", "vq")

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
    """

    surrogate: torch.Tensor
    value: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    aux: dict[str, torch.Tensor]


class Estimator(torch.nn.Module):
    """Base class: a name, a family, declared parameters with defaults, a one-line description."""

    name: ClassVar[str]
    family: ClassVar[str]
    description: ClassVar[str] = ""
    parameters: ClassVar[dict] = {}
    choices: ClassVar[dict] = {}

    def __init__(self, **params):
        super().__init__()
        self.given = dict(params)
        self.params = coerce_params(self.name, self.parameters, self.choices, params)
        self.validate()

    def validate(self) -> None:
        """Check parameter ranges; raise GumbenchError naming what is allowed."""

    @property
    def spec(self) -> str:
        """Canonical registry name with every parameter, e.g. ``st-gumbel[tau=0.5]``."""
        return format_spec(self.name, self.params)

    @property
    def label(self) -> str:
        """Short name: the parameters given at construction that differ from their defaults."""
        return format_spec(self.name, {k: self.params[k] for k in self.given if self.params[k] != self.parameters[k]})

    def extra_repr(self) -> str:
        return self.spec


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

    def forward(self, logits: torch.Tensor, loss_fn: LossFn, *, generator: torch.Generator | None = None) -> EstimatorOutput:
        check_logits(logits)
        if logits.dim() < 2:
            raise GumbenchError(f"{self.spec}: logits need shape (..., G, V), got {tuple(logits.shape)}")
        return self.estimate(logits, loss_fn, generator)

    def estimate(self, logits: torch.Tensor, loss_fn: LossFn, generator: torch.Generator | None) -> EstimatorOutput:
        raise NotImplementedError  # abstract: each estimator defines it


def make_estimator(spec: "str | Estimator", **overrides) -> Estimator:
    """An estimator from a registry name (``'st-gumbel[tau=0.5]'``) or an instance (returned as is)."""
    if isinstance(spec, Estimator):
        if overrides:
            return type(spec)(**{**spec.params, **overrides})
        return spec
    import gumbench.estimators  # noqa: F401  (registers the built-ins)

    parsed = parse_spec(spec)
    if any(isinstance(v, list) for v in {**parsed.params, **overrides}.values()):
        raise GumbenchError(f"{spec!r} is a grid of estimators; pass one value per parameter (see Spec.grid())")
    return registry.create(parsed, **overrides)


def one_hot(index: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot of ``index`` over a new last dimension, built directly in ``dtype``."""
    out = torch.zeros(*index.shape, num_classes, dtype=dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1.0)
