"""One base for everything with a registry name: estimators, toy tasks and training tasks.

A plugin class declares, as data,

    name         its registry name, e.g. ``st-gumbel``
    description  one line for ``gumbench list``
    defaults     the parameters and their default values (the type of a default is the parameter's type)
    choices      allowed values of a parameter, e.g. {"baseline": ("none", "ema", "loo")}
    ranges       allowed interval of a numeric parameter, e.g. {"tau": POSITIVE}; a float
                 parameter without one must still be finite (a range admits +-inf only where
                 it names it as a closed end, e.g. Range(0, math.inf) for "no limit")
    limits       ceilings on products of parameters that size memory together, e.g.
                 {("batch", "codes"): MAX_ELEMENTS}
    requires     a parameter that only applies with another one's value, e.g.
                 {"kmeans_iters": ("init", "kmeans")}: setting it otherwise is an error

It estimates its peak memory from its parameters (:meth:`Plugin.peak_memory`, :mod:`gumbench.footprint`),
and :meth:`Plugin.validate` checks only what a declaration cannot say (parameters that depend
on each other, data that must load). :func:`check_integer` and :func:`check_number` apply the
same ranges to plain function arguments (seeds, sample counts, steps). An instance knows its canonical ``spec`` (every
parameter), its short ``label`` (the parameters given that differ from the defaults) and makes
validated copies with :meth:`Plugin.with_params`; parameters are never changed in place.
This module imports no torch.
"""

from __future__ import annotations

import math
import numbers
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
        """``> 0``, ``>= 1``, ``in (0, 1]``; empty for an unbounded range."""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{format_value(self.low)}, {format_value(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {format_value(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {format_value(self.high)}"
        return ""

    @property
    def infinite(self) -> bool:
        """Whether an infinite value is allowed: an end of the range is a closed +-inf."""
        return (self.low == -math.inf and not self.low_open) or (self.high == math.inf and not self.high_open)

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return not math.isnan(value) and value == (self.high if value > 0 else self.low) and self.infinite
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def check(self, owner: str, key: str, value: float) -> None:
        if not self.contains(value):
            kind = ("a number" if self.infinite else "a finite number") if isinstance(value, float) else ""
            meaning = f" ({self.meaning})" if self.meaning else ""
            allowed = " ".join(part for part in (kind, self.describe()) if part)
            raise GumbenchError(f"{owner}: {key}{meaning} must be {allowed}, got {value!r}")


POSITIVE = Range(0, low_open=True)  # > 0
NON_NEGATIVE = Range(0)  # >= 0
AT_LEAST_ONE = Range(1)  # >= 1 (counts, sizes)
OPEN_UNIT = Range(0, 1, low_open=True, high_open=True)  # in (0, 1): decays
HALF_OPEN_UNIT = Range(0, 1, low_open=True)  # in (0, 1]: probabilities, shares
# tau of the relaxations: the interval over which estimators promise finite values and gradients in
# every dtype they take (their backward multiplies the upstream gradient by up to 1/(2 tau))
TEMPERATURE = Range(0.01, 100)
FINITE = Range()  # any finite number: what a float parameter without a declared range must be
SEED = Range(0, 2**63 - 1)  # what torch.Generator.manual_seed takes as a non-negative int64
STEPS = Range(1, 1_000_000)
# gradient estimates per estimator: about 1.5 hours for st-gumbel on the default toy on one CPU core
# (~50 us per estimate); the accumulated sums are O(groups x logits) whatever the count
SAMPLES = Range(4, 100_000_000)  # optimizer steps: hours to days of work at the top, one row each
LEARNING_RATE = Range(0, 1000, low_open=True)  # Adam moves each weight by about lr per step
# Elements of the largest tensors one step may hold (a batch of logits times the draws per row, an
# activation): 2^26 float32 elements are 256 MiB; a step keeps a handful of tensors that size
# (values, gradients, float64 copies), about 2 GiB at the peak.
MAX_ELEMENTS = 2**26


def check_integer(owner: str, key: str, value, allowed: Range) -> int:
    """``value`` as an int if it is an integer (not a bool, not a float) within ``allowed``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise GumbenchError(f"{owner}: {key} must be an integer {allowed.describe()}, got {value!r}")
    allowed.check(owner, key, int(value))
    return int(value)


def check_number(owner: str, key: str, value, allowed: Range) -> float:
    """``value`` as a float if it is a real number (not a bool) within ``allowed``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise GumbenchError(f"{owner}: {key} must be a number {allowed.describe()}, got {value!r}")
    allowed.check(owner, key, float(value))
    return float(value)


class Plugin:
    """Declared parameters, checked once; see the module docstring."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple]] = {}
    ranges: ClassVar[dict[str, Range]] = {}
    requires: ClassVar[dict[str, tuple[str, Any]]] = {}
    limits: ClassVar[dict[tuple[str, ...], int]] = {}
    # parameters named in the canonical spec only when set away from their default: ones added after results were
    # stored, so the stored spec strings (and the unit ids and seeds derived from them) stay as they were
    spec_optional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params):
        self.given = dict(params)
        self.params = coerce_params(self.name, self.defaults, self.choices, params)
        for key, value in self.params.items():
            if key in self.ranges or isinstance(value, float):
                self.ranges.get(key, FINITE).check(self.name, key, value)
        for key, (switch, value) in self.requires.items():
            if self.params[key] != self.defaults[key] and self.params[switch] != value:
                setting = f"{switch}={format_value(value)}"
                raise GumbenchError(f"{self.name}: {key} only applies with {setting}; set {setting} or leave {key} out")
        for keys, ceiling in self.limits.items():
            product = math.prod(self.params[k] for k in keys)
            if product > ceiling:
                given = " x ".join(format_value(self.params[k]) for k in keys)
                raise GumbenchError(f"{self.name}: {' x '.join(keys)} must be <= {ceiling:,} (memory), "
                                    f"got {given} = {format_value(product)}")
        self.validate()

    def validate(self) -> None:
        """Checks that the declarations cannot express; raise GumbenchError naming what is allowed."""

    def peak_memory(self, *context):
        """The estimated peak memory of running this plugin (:class:`gumbench.footprint.Peak`), from its parameters
        alone: STEP_COPIES float32 copies of its largest declared ``limits`` product, naming that product's
        parameters; none for a plugin without limits (an estimator's sizes are its inputs'). ``context`` (an
        estimator, a sample count) is for subclasses whose peak depends on what they run with."""
        from gumbench.footprint import STEP_COPIES, Peak

        if not self.limits:
            return Peak(0, ())
        keys = max(self.limits, key=lambda k: math.prod(self.params[name] for name in k))
        return Peak(4 * STEP_COPIES * math.prod(self.params[name] for name in keys), keys)

    @property
    def spec(self) -> str:
        """Canonical registry name with every parameter (those in ``spec_optional`` only when set away from their
        default), e.g. ``st-gumbel[tau=0.5]``."""
        return format_spec(self.name, {k: v for k, v in self.params.items()
                                       if k not in self.spec_optional or v != self.defaults[k]})

    @property
    def label(self) -> str:
        """Short name: the parameters given at construction that differ from their defaults."""
        return format_spec(self.name, {k: self.params[k] for k in self.given if self.params[k] != self.defaults[k]})

    def with_params(self, **changes):
        """A new instance with ``changes`` over the parameters given to this one, validated like any other."""
        return type(self)(**{**self.given, **changes})

    def __repr__(self) -> str:
        return self.spec
