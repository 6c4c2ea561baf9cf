"""_validate: one error style "<who>: <name> must be <what>, got <value>.", TypeError for the wrong
kind and ValueError for a value out of range; bools are never numbers, NumPy scalars are."""
import math

import numpy as np
import pytest

from cutedl._validate import check_bool, check_choice, check_int, check_number, check_shape, is_int, is_number


# ---------------------------------------------------------------------------- predicates
@pytest.mark.parametrize("value, expected", [
    (3, True), (np.int64(3), True), (np.uint8(3), True), (0, True), (-2, True),
    (True, False), (np.bool_(True), False), (3.0, False), ("3", False), (None, False),
])
def test_is_int(value, expected):
    assert is_int(value) is expected


@pytest.mark.parametrize("value, expected", [
    (3, True), (3.5, True), (np.float32(0.5), True), (np.int32(2), True), (math.inf, True),
    (True, False), (np.bool_(False), False), ("1", False), (None, False), (1j, False),
])
def test_is_number(value, expected):
    assert is_number(value) is expected


# ---------------------------------------------------------------------------- check_int
def test_check_int_returns_a_python_int():
    v = check_int("Who", "n", np.int64(4), minimum=1)
    assert v == 4 and type(v) is int
    assert check_int("Who", "n", None, allow_none=True) is None


@pytest.mark.parametrize("value, err, message", [
    (0, ValueError, "Who: n must be an integer >= 1, got 0."),
    (2.5, ValueError, "Who: n must be an integer >= 1, got 2.5."),
    (None, ValueError, "Who: n must be an integer >= 1, got None."),
    (True, TypeError, "Who: n must be an integer >= 1, got bool True."),
    ("3", TypeError, "Who: n must be an integer >= 1, got str '3'."),
])
def test_check_int_errors(value, err, message):
    with pytest.raises(err) as info:
        check_int("Who", "n", value, minimum=1)
    assert str(info.value) == message


def test_check_int_ranges_and_custom_description():
    assert check_int("W", "k", 5, minimum=0, maximum=5) == 5
    with pytest.raises(ValueError, match=r"^W: k must be an integer in \[0, 5\], got 6\.$"):
        check_int("W", "k", 6, minimum=0, maximum=5)
    with pytest.raises(ValueError, match=r"^W: k must be an integer <= 5, got 6\.$"):
        check_int("W", "k", 6, maximum=5)
    with pytest.raises(ValueError, match=r"^W: k must be a positive integer, got -1\.$"):
        check_int("W", "k", -1, minimum=1, what="a positive integer")
    with pytest.raises(ValueError, match=r"^W: k must be an integer >= 0 or None, got -1\.$"):
        check_int("W", "k", -1, minimum=0, allow_none=True)


# ---------------------------------------------------------------------------- check_number
def test_check_number_returns_a_python_float():
    v = check_number("Who", "x", np.float32(0.5), minimum=0)
    assert v == 0.5 and type(v) is float
    assert type(check_number("Who", "x", 3)) is float
    assert check_number("Who", "x", None, allow_none=True) is None
    assert check_number("Who", "x", math.inf, finite=False) == math.inf


@pytest.mark.parametrize("kwargs, value, err, message", [
    ({}, "0.1", TypeError, "Who: x must be a finite number, got str '0.1'."),
    ({}, False, TypeError, "Who: x must be a finite number, got bool False."),
    ({}, None, TypeError, "Who: x must be a finite number, got NoneType None."),
    ({}, math.nan, ValueError, "Who: x must be a finite number, got nan."),
    ({}, math.inf, ValueError, "Who: x must be a finite number, got inf."),
    ({"finite": False}, math.nan, ValueError, "Who: x must be a number, got nan."),
    ({"minimum": 0}, -1, ValueError, "Who: x must be a finite number >= 0, got -1."),
    ({"minimum": 0, "low_open": True}, 0, ValueError, "Who: x must be a finite number > 0, got 0."),
    ({"maximum": 1, "high_open": True}, 1.0, ValueError, "Who: x must be a finite number < 1, got 1.0."),
    ({"minimum": 0, "maximum": 1, "high_open": True}, 1, ValueError,
     "Who: x must be a finite number in [0, 1), got 1."),
    ({"minimum": 0, "maximum": 1}, 1.5, ValueError, "Who: x must be a finite number in [0, 1], got 1.5."),
    ({"minimum": 0, "what": "a rate"}, -0.5, ValueError, "Who: x must be a rate, got -0.5."),
])
def test_check_number_errors(kwargs, value, err, message):
    with pytest.raises(err) as info:
        check_number("Who", "x", value, **kwargs)
    assert str(info.value) == message


def test_check_number_bounds_are_inclusive_unless_open():
    assert check_number("W", "x", 0, minimum=0, maximum=1) == 0.0
    assert check_number("W", "x", 1, minimum=0, maximum=1) == 1.0


# ---------------------------------------------------------------------------- check_bool
def test_check_bool():
    assert check_bool("W", "flag", True) is True
    assert check_bool("W", "flag", False) is False
    for bad in (1, 0, "yes", None):
        with pytest.raises(TypeError, match=r"^W: flag must be True or False, got "):
            check_bool("W", "flag", bad)
    with pytest.raises(TypeError) as info:
        check_bool("W", "flag", 1)
    assert str(info.value) == "W: flag must be True or False, got int 1."


def test_check_bool_accepts_numpy_bools():
    assert check_bool("W", "flag", np.bool_(False)) is False
    assert check_bool("W", "flag", np.bool_(True)) is True


# ---------------------------------------------------------------------------- check_choice
def test_check_choice():
    assert check_choice("W", "mode", "min", ("min", "max")) == "min"
    assert check_choice("W", "mode", None, ("a", None)) is None
    with pytest.raises(ValueError) as info:
        check_choice("W", "mode", "avg", ("min", "max"))
    assert str(info.value) == "W: mode must be one of 'min', 'max', got 'avg'."
    # compared by type too: True is not 1, 1.0 is not 1
    with pytest.raises(ValueError):
        check_choice("W", "n", True, (1, 2))
    with pytest.raises(ValueError):
        check_choice("W", "n", 1.0, (1, 2))


# ---------------------------------------------------------------------------- check_shape
def test_check_shape():
    assert check_shape("W", "inshape", 5) == (5,)
    assert check_shape("W", "inshape", [np.int64(2), 3]) == (2, 3)
    assert check_shape("W", "inshape", (None, 4), allow_none_dims=True) == (None, 4)
    assert all(type(d) is int for d in check_shape("W", "inshape", (np.int32(2), 3)))


@pytest.mark.parametrize("value, kwargs, err, match", [
    (5.0, {}, TypeError, r"^W: inshape must be an int or a tuple of ints, got float 5\.0\.$"),
    (None, {}, TypeError, "must be an int or a tuple of ints, got NoneType None"),
    ((0, 3), {}, ValueError, r"^W: inshape must hold positive integers, got \(0, 3\)\.$"),
    ((True, 3), {}, ValueError, "must hold positive integers"),
    ((None, 3), {}, ValueError, "must hold positive integers, got"),
    ((None, -1), {"allow_none_dims": True}, ValueError, r"must hold positive integers \(or None\)"),
])
def test_check_shape_errors(value, kwargs, err, match):
    with pytest.raises(err, match=match):
        check_shape("W", "inshape", value, **kwargs)
