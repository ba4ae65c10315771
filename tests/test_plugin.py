"""Plugins: ranges (describe, contains, check messages), finite floats, limits on products, declared-type coercion, spec
and label,
with_params copies, has_temperature; the same ranges on plain arguments."""

import math

import pytest

from gumbench.errors import GumbenchError
from gumbench.estimators import CategoricalEstimator, make_estimator, registry
from gumbench.plugin import (
    AT_LEAST_ONE,
    HALF_OPEN_UNIT,
    NON_NEGATIVE,
    OPEN_UNIT,
    POSITIVE,
    SEED,
    TEMPERATURE,
    Plugin,
    Range,
    check_integer,
    check_number,
)
from gumbench.registry import parse_spec


class Widget(Plugin):
    """A plugin declared here (not registered): every kind of parameter, a choice, ranges and a cross-check."""

    name = "widget"
    defaults = {"tau": 1.0, "count": 3, "fast": False, "mode": "a", "share": 0.5}
    choices = {"mode": ("a", "b")}
    ranges = {"tau": POSITIVE, "count": AT_LEAST_ONE, "share": HALF_OPEN_UNIT}

    def validate(self):
        if self.params["fast"] and self.params["count"] > 5:
            raise GumbenchError(f"{self.name}: fast=true allows count <= 5, got {self.params['count']}")


def message(call):
    with pytest.raises(GumbenchError) as caught:
        call()
    return str(caught.value)


def test_range_describe_contains_and_check_messages():
    assert [r.describe() for r in (POSITIVE, NON_NEGATIVE, AT_LEAST_ONE, OPEN_UNIT, HALF_OPEN_UNIT, TEMPERATURE)] == [
        "> 0", ">= 0", ">= 1", "in (0, 1)", "in (0, 1]", "in [0.01, 100]"]
    assert Range(high=2).describe() == "<= 2" and Range(high=0.5, high_open=True).describe() == "< 0.5"
    assert Range(-1, 2.5).describe() == "in [-1, 2.5]"

    cases = {POSITIVE: ([1e-300, 1, 1e300], [0, -1e-300]), NON_NEGATIVE: ([0, 0.1], [-1e-12]),
             AT_LEAST_ONE: ([1, 7], [0.999, 0]), OPEN_UNIT: ([1e-9, 0.5, 1 - 1e-9], [0, 1]),
             HALF_OPEN_UNIT: ([1e-9, 1], [0, 1.0001]), Range(high=2): ([-1e9, 2], [2.0001]),
             Range(-1, 2.5, low_open=True): ([-0.999, 2.5], [-1, 2.6])}
    for allowed, (inside, outside) in cases.items():
        assert all(allowed.contains(v) for v in inside), (allowed, inside)
        assert not any(allowed.contains(v) for v in outside), (allowed, outside)
        assert not any(allowed.contains(v) for v in (math.nan, math.inf, -math.inf)), "never a non-finite value"

    assert POSITIVE.check("widget", "tau", 0.5) is None
    assert (
        message(lambda: POSITIVE.check("st-gumbel", "tau", 0.0))
        == "st-gumbel: tau must be a finite number > 0, got 0.0"
    )
    assert (
        message(lambda: POSITIVE.check("st-gumbel", "tau", math.nan))
        == "st-gumbel: tau must be a finite number > 0, got nan"
    )
    assert (
        message(lambda: OPEN_UNIT.check("reinforce", "decay", 1.5))
        == "reinforce: decay must be a finite number in (0, 1), got 1.5"
    )
    # integers are not called finite numbers; the meaning, if declared, is named
    assert message(lambda: AT_LEAST_ONE.check("widget", "count", 0)) == "widget: count must be >= 1, got 0"
    assert message(lambda: Range(1, meaning="M, the draws").check("gumbel-rao", "samples", 0)) == (
        "gumbel-rao: samples (M, the draws) must be >= 1, got 0")


def test_parameters_are_coerced_to_their_declared_types():
    w = Widget(tau=2, count=4.0, fast=True, mode="b", share=1)
    assert w.params == {"tau": 2.0, "count": 4, "fast": True, "mode": "b", "share": 1.0}
    assert type(w.params["tau"]) is float and type(w.params["count"]) is int and type(w.params["share"]) is float
    assert Widget().params == Widget.defaults and Widget().params is not Widget.defaults
    # through a registry name: '1' parses as an integer, tau is a float
    assert type(make_estimator("st-gumbel[tau=1]").params["tau"]) is float

    assert message(lambda: Widget(count=2.5)) == "widget: count must be an integer, got 2.5"
    assert message(lambda: Widget(count=True)) == "widget: count must be an integer, got True"
    assert message(lambda: Widget(tau="abc")) == "widget: tau must be a number, got 'abc'"
    assert message(lambda: Widget(tau=True)) == "widget: tau must be a number, got True"
    assert message(lambda: Widget(fast="yes")) == "widget: fast must be true or false, got 'yes'"
    assert message(lambda: Widget(mode="c")) == "widget: mode must be one of a, b; got 'c'"
    assert (
        message(lambda: Widget(speed=1, colour=2))
        == "widget has no parameter 'colour', 'speed'; allowed: tau, count, fast, mode, share"
    )
    assert "is a grid" in message(lambda: Widget(tau=[1, 2]))
    # then the declared ranges, then validate()
    assert message(lambda: Widget(tau=0)) == "widget: tau must be a finite number > 0, got 0.0"
    assert message(lambda: Widget(share=1.5)) == "widget: share must be a finite number in (0, 1], got 1.5"
    assert message(lambda: Widget(count=0)) == "widget: count must be >= 1, got 0"
    assert message(lambda: Widget(fast=True, count=6)) == "widget: fast=true allows count <= 5, got 6"


def test_spec_lists_every_parameter_and_label_only_the_given_non_defaults():
    assert Widget().spec == "widget[tau=1,count=3,fast=false,mode=a,share=0.5]" == repr(Widget())
    assert Widget().label == "widget"
    assert Widget(tau=1, count=3).label == "widget", "given but equal to the default: left out"
    assert Widget(tau=0.25, count=3, mode="b").label == "widget[tau=0.25,mode=b]"
    assert Widget(tau=0.25, count=3, mode="b").spec == "widget[tau=0.25,count=3,fast=false,mode=b,share=0.5]"
    # validate() may resolve a parameter: the spec shows the resolved value, the label what was given
    loo = make_estimator("reinforce[baseline=loo]")
    assert loo.spec == "reinforce[baseline=loo,samples=4,decay=0.9]" and loo.label == "reinforce[baseline=loo]"
    assert (
        make_estimator("st-gumbel").label == "st-gumbel"
        and make_estimator("st-gumbel[tau=0.5]").label == "st-gumbel[tau=0.5]"
    )


def test_with_params_returns_a_new_validated_object_and_never_mutates():
    reinmax = make_estimator("reinmax")
    with pytest.raises(GumbenchError, match="tau must be >= 1"):
        reinmax.with_params(tau=0.5)
    assert reinmax.params == {"tau": 1.0} and reinmax.spec == "reinmax[tau=1]"

    st = make_estimator("st-gumbel[tau=0.5]")
    hot = st.with_params(tau=2)
    assert hot is not st and type(hot) is type(st)
    assert hot.spec == "st-gumbel[tau=2]" and hot.label == "st-gumbel[tau=2]"
    assert st.params == {"tau": 0.5} and st.given == {"tau": 0.5} and st.spec == "st-gumbel[tau=0.5]"
    for bad, fragment in (
        ({"tau": 0}, r"tau must be a finite number in \[0.01, 100\]"),
        ({"temperature": 1}, "has no parameter 'temperature'"),
    ):
        with pytest.raises(GumbenchError, match=fragment):
            st.with_params(**bad)
    assert st.params == {"tau": 0.5}
    # the other given parameters are kept
    gst = make_estimator("gst[variant=p]").with_params(tau=0.5)
    assert gst.params == {"tau": 0.5, "variant": "p"} and parse_spec(gst.label).params == {"variant": "p", "tau": 0.5}
    # validate() runs on the copy too
    fast = Widget(fast=True)
    assert fast.with_params(count=5).params["count"] == 5
    with pytest.raises(GumbenchError, match="fast=true allows count <= 5"):
        fast.with_params(count=6)
    assert fast.params["count"] == 3
    # make_estimator: an instance is returned as is, or as with_params of its overrides
    assert make_estimator(st) is st
    copy = make_estimator(st, tau=0.25)
    assert copy is not st and copy.spec == "st-gumbel[tau=0.25]" and st.spec == "st-gumbel[tau=0.5]"


def test_has_temperature_is_read_from_the_declared_parameters():
    for name, cls in registry.classes().items():
        assert cls.has_temperature == ("tau" in cls.defaults), name
        assert make_estimator(name).has_temperature == cls.has_temperature, name
    assert {n for n, cls in registry.classes().items() if cls.has_temperature} >= {
        "st-gumbel",
        "soft-gumbel",
        "straight-through",
        "gumbel-rao",
        "reinmax",
        "gst",
    }
    assert not any(registry.get(n).has_temperature for n in ("reinforce", "disarm", "vq-commitment"))

    class Hot(CategoricalEstimator):  # not registered
        name = "hot"
        defaults = {"tau": 1.0, "k": 2}

    class Cold(Hot):
        name = "cold"
        defaults = {"k": 2}
        has_temperature = True  # a declaration that contradicts the parameters does not count

    assert Hot.has_temperature and Hot(tau=0.5).has_temperature
    assert not Cold.has_temperature and not Cold().has_temperature
    assert "hot" not in registry.names() and "cold" not in registry.names()


def test_an_option_that_requires_another_is_refused_without_it():
    class Switches(Plugin):
        name = "gadget"
        defaults = {"init": "random", "iters": 10, "restart": False, "every": 50}
        requires = {"iters": ("init", "kmeans"), "every": ("restart", True)}

    assert (
        Switches(init="kmeans", iters=3).params["iters"] == 3 and Switches(restart=True, every=2).params["every"] == 2
    )
    assert Switches(iters=10).params["iters"] == 10, "the default value is not a setting"
    assert (
        message(lambda: Switches(iters=3))
        == "gadget: iters only applies with init=kmeans; set init=kmeans or leave iters out"
    )
    assert (
        message(lambda: Switches(every=2))
        == "gadget: every only applies with restart=true; set restart=true or leave every out"
    )


class Gadget(Plugin):
    """A float without a declared range, one that names +inf as "no limit", and a product with a ceiling."""

    name = "gadget"
    defaults = {"gain": 1.0, "budget": 10.0, "rows": 4, "width": 8}
    ranges = {"budget": Range(0, math.inf, low_open=True), "rows": AT_LEAST_ONE, "width": AT_LEAST_ONE}
    limits = {("rows", "width"): 1024}


def test_floats_must_be_finite_unless_a_range_names_infinity():
    for bad in (math.nan, math.inf, -math.inf):
        assert message(lambda: Gadget(gain=bad)) == f"gadget: gain must be a finite number, got {bad!r}"
    assert Gadget(gain=-1e300).params["gain"] == -1e300
    # a closed infinite end allows exactly that infinity, never NaN nor the other one
    assert Gadget(budget=math.inf).params["budget"] == math.inf
    assert message(lambda: Gadget(budget=math.nan)) == "gadget: budget must be a number in (0, inf], got nan"
    assert message(lambda: Gadget(budget=-math.inf)) == "gadget: budget must be a number in (0, inf], got -inf"
    assert not Range(0, math.inf, high_open=True).contains(math.inf) and Range(-math.inf, 0).contains(-math.inf)
    # through a registry name: 'nan' and '1e400' parse as floats and are refused the same way
    assert "gain must be a finite number" in message(lambda: Gadget(**parse_spec("gadget[gain=1e400]").params))


def test_limits_bound_products_of_parameters_before_validate():
    assert Gadget(rows=32, width=32).params["rows"] == 32
    assert (
        message(lambda: Gadget(rows=33, width=32))
        == "gadget: rows x width must be <= 1,024 (memory), got 33 x 32 = 1056"
    )
    assert message(lambda: Gadget(rows=10**30)) == (
        f"gadget: rows x width must be <= 1,024 (memory), got {10**30} x 8 = {8 * 10**30}")


def test_plain_arguments_are_checked_against_ranges():
    assert check_integer("f", "seed", 2**63 - 1, SEED) == 2**63 - 1
    assert type(check_integer("f", "seed", __import__("numpy").int64(3), SEED)) is int
    for bad, text in ((-1, "f: seed must be in [0, 9223372036854775807], got -1"),
                      (2**63, "f: seed must be in [0, 9223372036854775807], got 9223372036854775808"),
                      (True, "f: seed must be an integer in [0, 9223372036854775807], got True"),
                      (1.0, "f: seed must be an integer in [0, 9223372036854775807], got 1.0"),
                      ("0", "f: seed must be an integer in [0, 9223372036854775807], got '0'")):
        assert message(lambda: check_integer("f", "seed", bad, SEED)) == text
    assert check_number("f", "lr", 1, POSITIVE) == 1.0
    for bad in (math.nan, math.inf, 0):
        assert message(lambda: check_number("f", "lr", bad, POSITIVE)).startswith("f: lr must be a finite number > 0")
    assert message(lambda: check_number("f", "lr", None, POSITIVE)) == "f: lr must be a number > 0, got None"
    assert message(lambda: check_number("f", "lr", False, POSITIVE)) == "f: lr must be a number > 0, got False"
