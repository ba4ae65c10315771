"""One base for everything with a registry name: estimators, toy tasks and training tasks.

A plugin class declares, as data,

    name         its registry name, e.g. ``st-gumbel``
    description  one line for ``gumbench list``
    parameters   the parameters and their defaults (the type of a default is the parameter's type)
    choices      allowed values of a parameter, e.g. {"baseline": ("none", "ema", "loo")}
    ranges       allowed interval of a numeric parameter, e.g. {"tau": POSITIVE}
    requires     a parameter that only applies with another one's value, e.g.
                 {"kmeans_iters": ("init", "kmeans")}: setting it otherwise is an error

and :meth:`Plugin.validate` checks only what a declaration cannot say (other parameters that
depend on each other, data that must load). An instance knows its canonical ``spec`` (every
parameter), its short ``label`` (the parameters given that differ from the defaults) and makes
validated copies with :meth:`Plugin.with_params`; parameters are never changed in place.
This module imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from gumbench.errors import GumbenchError
from gumbench.registry import coerce_params, format_spec, format_value


@dataclass(frozen=True)
class Range:
    """An interval of allowed values: ``low`` and ``high`` (None: unbounded), each end included
    unless ``*_open``; ``meaning`` says in errors what the parameter is."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    meaning: str = ""

    def describe(self) -> str:
        """``> 0``, ``>= 1`` or ``in (0, 1]``."""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{format_value(self.low)}, {format_value(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {format_value(self.low)}"
        return f"{'<' if self.high_open else '<='} {format_value(self.high)}"

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def check(self, owner: str, key: str, value: float) -> None:
        if not self.contains(value):
            kind = "a finite number " if isinstance(value, float) else ""
            meaning = f" ({self.meaning})" if self.meaning else ""
            raise GumbenchError(f"{owner}: {key}{meaning} must be {kind}{self.describe()}, got {value!r}")


POSITIVE = Range(0, low_open=True)  # > 0
NON_NEGATIVE = Range(0)  # >= 0
AT_LEAST_ONE = Range(1)  # >= 1 (counts, sizes)
OPEN_UNIT = Range(0, 1, low_open=True, high_open=True)  # in (0, 1): decays
HALF_OPEN_UNIT = Range(0, 1, low_open=True)  # in (0, 1]: probabilities, shares
# tau of the relaxations: the interval over which estimators promise finite values and gradients in
# every dtype they take (their backward multiplies the upstream gradient by up to 1/(2 tau))
TEMPERATURE = Range(0.01, 100)


class Plugin:
    """Declared parameters, checked once; see the module docstring."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple]] = {}
    ranges: ClassVar[dict[str, Range]] = {}
    requires: ClassVar[dict[str, tuple[str, Any]]] = {}

    def __init__(self, **params):
        self.given = dict(params)
        self.params = coerce_params(self.name, self.parameters, self.choices, params)
        for key, allowed in self.ranges.items():
            allowed.check(self.name, key, self.params[key])
        for key, (switch, value) in self.requires.items():
            if self.params[key] != self.parameters[key] and self.params[switch] != value:
                setting = f"{switch}={format_value(value)}"
                raise GumbenchError(f"{self.name}: {key} only applies with {setting}; set {setting} or leave {key} out")
        self.validate()

    def validate(self) -> None:
        """Checks that the declarations cannot express; raise GumbenchError naming what is allowed."""

    @property
    def spec(self) -> str:
        """Canonical registry name with every parameter, e.g. ``st-gumbel[tau=0.5]``."""
        return format_spec(self.name, self.params)

    @property
    def label(self) -> str:
        """Short name: the parameters given at construction that differ from their defaults."""
        return format_spec(self.name, {k: self.params[k] for k in self.given if self.params[k] != self.parameters[k]})

    def with_params(self, **changes):
        """A new instance with ``changes`` over the parameters given to this one, validated like any other."""
        return type(self)(**{**self.given, **changes})

    def __repr__(self) -> str:
        return self.spec
