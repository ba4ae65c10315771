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

from typing import ClassVar

import torch

from gumbench.benchmarks.problems.base import LogitsGradient
from gumbench.benchmarks.problems.enumeration import exact_expectation
from gumbench.plugin import AT_LEAST_ONE, SEED, Plugin, Range

# Logits elements of a toy: 4 MiB a tensor; what a step draws from them is bounded separately
# (gumbench.plugin.MAX_ELEMENTS for rows x logits x draws per row).
MAX_TOY_ELEMENTS = 2**20


class ToyTask(Plugin, LogitsGradient):
    """A toy with logits (G, V) and a loss on (..., G, V) -> (...), a :class:`LogitsGradient` problem measured
    against its exact gradient by enumeration; ``formula`` for ``gumbench list``."""

    formula: ClassVar[str] = ""

    def __init__(self, **params):
        super().__init__(**params)
        self.logits = self.initial_logits().to(torch.float32)

    def initial_logits(self) -> torch.Tensor:
        raise NotImplementedError  # abstract: each toy defines its starting logits

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract: each toy defines its loss

    def expected_loss(self, logits: torch.Tensor) -> torch.Tensor:
        """E[loss] under softmax(logits); enumeration by default, analytic where the loss separates."""
        return exact_expectation(logits, self.loss)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


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


class BernoulliToy(_BinaryToy):
    name = "bernoulli"
    description = "Three binary variables from P(x=1) = 1/2, loss sum (x_i - p_i)^2, p = (0.6, 0.51, 0.48)."
    formula = "f(x) = sum_i (x_i - p_i)^2, p = (0.6, 0.51, 0.48); logits = 0"
    targets = (0.6, 0.51, 0.48)

    def initial_logits(self):
        return torch.zeros(len(self.targets), 2)

    def per_variable_loss(self, x):
        return (x - torch.tensor(self.targets, dtype=x.dtype, device=x.device)).pow(2)


TOYS = (CategoricalToy, PolynomialToy, BernoulliToy)
