"""Input checks shared by the package: check_positive and check_choice, with messages naming what is allowed."""

import math

import pytest

from gumbench.errors import GumbenchError, check_choice, check_positive


def message(call):
    with pytest.raises(GumbenchError) as caught:
        call()
    return str(caught.value)


def test_gumbench_error_is_a_value_error():
    assert issubclass(GumbenchError, ValueError)


def test_check_positive_returns_a_float_above_the_bound():
    assert check_positive("lr", 0.1) == 0.1
    value = check_positive("lr", 3)
    assert value == 3.0 and type(value) is float
    assert check_positive("lr", "2.5") == 2.5  # anything float() takes
    assert check_positive("tau", 1.0, low=1.0, inclusive=True) == 1.0
    assert check_positive("tau", 1e-300) == 1e-300
    assert check_positive("x", -0.5, low=-1.0) == -0.5


def test_check_positive_rejects_with_a_clear_message():
    assert message(lambda: check_positive("lr", 0)) == "lr must be a finite number > 0, got 0.0"
    assert message(lambda: check_positive("lr", -1.5)) == "lr must be a finite number > 0, got -1.5"
    assert (
        message(lambda: check_positive("tau", 0.5, low=1, inclusive=True))
        == "tau must be a finite number >= 1, got 0.5"
    )
    assert message(lambda: check_positive("tau", 1.0, low=1)) == "tau must be a finite number > 1, got 1.0"
    assert message(lambda: check_positive("lr", math.nan)) == "lr must be a finite number > 0, got nan"
    assert message(lambda: check_positive("lr", math.inf)) == "lr must be a finite number > 0, got inf"
    assert message(lambda: check_positive("lr", -math.inf, low=-1e9)).endswith("got -inf")
    assert message(lambda: check_positive("lr", "fast")) == "lr must be a number, got 'fast'"
    assert message(lambda: check_positive("lr", None)) == "lr must be a number, got None"
    assert message(lambda: check_positive("lr", [0.1])) == "lr must be a number, got [0.1]"


def test_check_choice():
    assert check_choice("backend", "dask", ("local", "dask", "slurm")) == "dask"
    assert check_choice("p", 2.0, (1.5, 2.0, 3.0)) == 2.0
    assert (
        message(lambda: check_choice("backend", "cluster", ("local", "dask")))
        == "backend must be one of local, dask; got 'cluster'"
    )
    assert message(lambda: check_choice("p", 2.5, (1.5, 2.0, 3.0))) == "p must be one of 1.5, 2.0, 3.0; got 2.5"
    with pytest.raises(GumbenchError):
        check_choice("mode", "A", ["a", "b"])  # case matters
