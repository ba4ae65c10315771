"""Synthetic tasks whose exact gradient is known by enumeration.

Every toy has logits theta of shape (G, V) and a loss f on (relaxed) one-hot
samples y of shape (..., G, V) returning (...). The quantity of interest is
E_{z ~ p_theta}[f(z)] with p_theta(z) = prod_g softmax(theta_g)[z_g].

categorical
    theta ~ N(0, scale^2) of shape (groups, categories), drawn from ``seed``.
    loss=quadratic: f(y) = sum_{g,v} (y_gv - t_gv)^2 with t ~ U(0, 1) drawn from the seed.
    loss=linear:    f(y) = sum_{g,v} c_gv y_gv with c ~ N(0, 1) drawn from the seed.
polynomial
    ReinMax's polynomial programming (Liu et al. 2023): L binary variables
    z_i in {0, 1}, each a group of two categories (z_i = y_i1), theta ~ N(0, 1) from the seed,
    f(z) = (1/L) sum_i |z_i - 0.45|^p for p in {1.5, 2, 3}.
bernoulli
    The Bernoulli toy of REBAR/RELAX style: three binary variables x_i (x_i = y_i1) starting
    at P(x_i = 1) = 1/2 (theta = 0), f(x) = sum_i (x_i - p_i)^2 with p = (0.6, 0.51, 0.48).
    The optimum x = (1, 1, 0) is hard to find because 0.51 and 0.48 sit near 1/2.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch

from gumbench.errors import GumbenchError
from gumbench.plugin import AT_LEAST_ONE, SEED, Plugin, Range
from gumbench.registry import Registry

MAX_ENUMERATION = 65_536
# Logits elements of a toy: 4 MiB a tensor; what a step draws from them is bounded separately
# (gumbench.plugin.MAX_ELEMENTS for rows x logits x draws per row).
MAX_TOY_ELEMENTS = 2**20

registry = Registry("task")
register = registry.register


ENUMERATION_BLOCK = 2**20  # one-hot elements scored at once by enumerated_losses


def enumerate_configurations(groups: int, categories: int) -> torch.Tensor:
    """All V^G assignments as indices, shape (V^G, G); a clear error above 65,536."""
    count = categories**groups
    if count > MAX_ENUMERATION:
        raise GumbenchError(
            f"exact gradients enumerate V^G = {categories}^{groups} = {count} configurations; "
            f"at most {MAX_ENUMERATION} are allowed (use fewer groups or categories)"
        )
    return torch.tensor(list(itertools.product(range(categories), repeat=groups)), dtype=torch.long).reshape(count, groups)


def enumerated_losses(logits: torch.Tensor, loss_fn, sample_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every configuration of logits (G, V) as indices (V^G, G) and ``loss_fn`` on its one-hots (V^G,),
    checked: a tensor of that shape, finite for every configuration."""
    if logits.dim() != 2:
        raise GumbenchError(f"exact expectation needs logits of shape (G, V), got {tuple(logits.shape)}")
    groups, categories = logits.shape
    index = enumerate_configurations(groups, categories).to(logits.device)
    # the one-hots are built and scored in blocks of about ENUMERATION_BLOCK elements: V^G x G x V
    # elements at once (4,096^2 for one group of 4,096) would cost more in fresh memory than in arithmetic
    block = max(1, ENUMERATION_BLOCK // max(1, groups * categories))
    parts = []
    with torch.no_grad():
        for start in range(0, index.shape[0], block):
            rows = index[start : start + block]
            onehots = torch.zeros(*rows.shape, categories, dtype=sample_dtype or logits.dtype, device=logits.device)
            part = loss_fn(onehots.scatter_(-1, rows.unsqueeze(-1), 1.0))
            if not isinstance(part, torch.Tensor) or part.shape != (rows.shape[0],):
                got = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
                raise GumbenchError(f"loss_fn must map (N, G, V) one-hots to a tensor of shape (N,), got {got}")
            parts.append(part)
    values = torch.cat(parts)
    finite = torch.isfinite(values)
    if not finite.all():
        bad = int((~finite).nonzero()[0, 0])
        raise GumbenchError(f"loss_fn returned {float(values[bad])} for configuration {tuple(index[bad].tolist())} "
                            f"(the category of each group); it must be finite for every configuration")
    return index, values


def exact_expectation(logits: torch.Tensor, loss_fn, *, sample_dtype: torch.dtype | None = None) -> torch.Tensor:
    """E_{z ~ p_logits}[loss(z)] by enumeration, differentiable in ``logits`` (G, V).

    ``loss_fn`` receives one-hots in ``sample_dtype`` (default: the logits' dtype), so a float32
    model can be evaluated while the weights and the sum are in float64.
    """
    index, values = enumerated_losses(logits, loss_fn, sample_dtype)
    values = values.to(logits.dtype)
    log_p = torch.log_softmax(logits, dim=-1)
    log_p_config = log_p.gather(-1, index.T).sum(0) if logits.shape[0] else log_p.new_zeros(1)
    # 0 * f stays 0 for configurations of probability 0 (masked categories), f finite.
    return (log_p_config.exp() * values).sum()


def exact_gradient(logits: torch.Tensor, loss_fn) -> tuple[torch.Tensor, float]:
    """Gradient of E[loss] w.r.t. logits (G, V) by enumeration, in float64; also returns E[loss]."""
    leaf = logits.detach().to(torch.float64).requires_grad_(True)
    expectation = exact_expectation(leaf, loss_fn, sample_dtype=logits.dtype)
    (grad,) = torch.autograd.grad(expectation, leaf)
    return grad, float(expectation.detach())


class ToyTask(Plugin):
    """A toy with logits (G, V) and a loss on (..., G, V) -> (...); ``formula`` for ``gumbench list``."""

    formula: ClassVar[str] = ""

    def __init__(self, **params):
        super().__init__(**params)
        self.logits = self.initial_logits().to(torch.float32)

    def initial_logits(self) -> torch.Tensor:
        raise NotImplementedError  # abstract: each toy defines its starting logits

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract: each toy defines its loss

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.logits.shape)

    def expected_loss(self, logits: torch.Tensor) -> torch.Tensor:
        """E[loss] under softmax(logits); enumeration by default, analytic where the loss separates."""
        return exact_expectation(logits, self.loss)

    def incompatibility(self, estimator) -> str | None:
        """Why ``estimator`` cannot be measured on this toy (a VQ estimator, DisARM on V != 2), or None."""
        return estimator.incompatibility(self.shape[1])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


@register
class CategoricalToy(ToyTask):
    name = "categorical"
    description = "Random logits (G x V); quadratic ||y - t||^2 or linear c.y loss."
    formula = "f(y) = sum (y - t)^2, t ~ U(0,1)  |  f(y) = sum c * y, c ~ N(0,1); logits ~ N(0, scale^2)"
    defaults = {"loss": "quadratic", "groups": 4, "categories": 8, "scale": 1.0, "seed": 0}
    choices = {"loss": ("quadratic", "linear")}
    # logit differences of a few hundred already make the softmax one-hot in float64
    ranges = {"groups": AT_LEAST_ONE, "categories": AT_LEAST_ONE, "scale": Range(0, 1000, low_open=True), "seed": SEED}
    limits = {("groups", "categories"): MAX_TOY_ELEMENTS}

    def initial_logits(self) -> torch.Tensor:
        gen = _generator(self.params["seed"])
        shape = (self.params["groups"], self.params["categories"])
        logits = torch.randn(shape, generator=gen) * self.params["scale"]
        self.target = torch.rand(shape, generator=gen)
        self.coefficients = torch.randn(shape, generator=gen)
        return logits

    def loss(self, y):
        if self.params["loss"] == "quadratic":
            return (y - self.target.to(y)).pow(2).sum(dim=(-2, -1))
        return (y * self.coefficients.to(y)).sum(dim=(-2, -1))


class _BinaryToy(ToyTask):
    """Binary variables as groups of two categories; x_i = y[..., i, 1]."""

    def per_variable_loss(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract

    def loss(self, y):
        return self.per_variable_loss(y[..., 1]).sum(-1) * self.weight

    weight = 1.0

    def expected_loss(self, logits):
        # The loss is a sum over variables, so E[f] = sum_i [P(x_i=0) f_i(0) + P(x_i=1) f_i(1)].
        p1 = torch.softmax(logits, dim=-1)[..., 1]
        zero = self.per_variable_loss(torch.zeros_like(p1))
        one = self.per_variable_loss(torch.ones_like(p1))
        return ((1 - p1) * zero + p1 * one).sum(-1) * self.weight


@register
class PolynomialToy(_BinaryToy):
    name = "polynomial"
    description = "ReinMax's polynomial programming: L binary variables, mean |z - 0.45|^p."
    formula = "f(z) = (1/L) sum_i |z_i - 0.45|^p, z_i in {0,1}, p in {1.5, 2, 3}; logits ~ N(0,1)"
    defaults = {"p": 2.0, "L": 8, "seed": 0}
    choices = {"p": (1.5, 2.0, 3.0)}
    ranges = {"L": Range(1, MAX_TOY_ELEMENTS // 2), "seed": SEED}

    def validate(self) -> None:
        self.weight = 1.0 / self.params["L"]

    def initial_logits(self):
        return torch.randn(self.params["L"], 2, generator=_generator(self.params["seed"]))

    def per_variable_loss(self, x):
        return (x - 0.45).abs().pow(self.params["p"])


@register
class BernoulliToy(_BinaryToy):
    name = "bernoulli"
    description = "Three binary variables from P(x=1) = 1/2, loss sum (x_i - p_i)^2, p = (0.6, 0.51, 0.48)."
    formula = "f(x) = sum_i (x_i - p_i)^2, p = (0.6, 0.51, 0.48); logits = 0"
    targets = (0.6, 0.51, 0.48)

    def initial_logits(self):
        return torch.zeros(len(self.targets), 2)

    def per_variable_loss(self, x):
        return (x - torch.tensor(self.targets, dtype=x.dtype, device=x.device)).pow(2)


DEFAULT_TASK = "categorical"


def make_task(spec: "str | Plugin") -> "ToyTask | Plugin":
    """A registered task (a toy with logits, or a quantizer problem) from its name; an instance is returned as is."""
    if isinstance(spec, Plugin):
        return spec
    return registry.create(spec)
