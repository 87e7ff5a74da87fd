"""Validation helpers: good values pass through, bad ones name themselves and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest

from rtstudy.core.checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_positive,
    check_range,
    check_type,
)


def test_existing_helpers_keep_their_messages():
    assert check_choice("kind", "pgd", ("pgd", "none")) == "pgd"
    with pytest.raises(ValueError, match=r"^unknown kind 'x'; allowed: 'pgd', 'none'$"):
        check_choice("kind", "x", ("pgd", "none"))
    assert check_positive("lr", 0.1) == 0.1
    with pytest.raises(ValueError, match=r"^lr must be > 0, got 0$"):
        check_positive("lr", 0)
    assert check_range("p", 1.0, 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"^p must be in \[0.0, 1.0\), got 1.0$"):
        check_range("p", 1.0, 0.0, 1.0, high_open=True)


@pytest.mark.parametrize("value, low", [(0, None), (-5, None), (0, 0), (1, 1), (10**9, 1)])
def test_check_int_passes_good_values_through(value, low):
    assert check_int("n", value, low) is value


@pytest.mark.parametrize("value, low, allowed", [
    (0, 1, "an integer >= 1"),
    (-1, 0, "an integer >= 0"),
    (2.5, 1, "an integer >= 1"),
    (3.0, None, "an integer"),
    (True, 0, "an integer >= 0"),
    ("3", None, "an integer"),
    (None, 1, "an integer >= 1"),
    (np.int64(3), 1, "an integer >= 1"),
])
def test_check_int_rejects(value, low, allowed):
    with pytest.raises(ValueError) as err:
        check_int("steps", value, low)
    assert str(err.value) == f"steps={value!r} is not allowed; use {allowed}"


def test_check_int_none_ok():
    assert check_int("image_size", None, 1, none_ok=True) is None
    assert check_int("image_size", 28, 1, none_ok=True) == 28
    with pytest.raises(ValueError, match=r"^image_size=0 is not allowed; use an integer >= 1 or None$"):
        check_int("image_size", 0, 1, none_ok=True)


def test_check_bool():
    assert check_bool("amp", True) is True
    assert check_bool("amp", False) is False
    for bad in (0, 1, "yes", None, np.bool_(True)):
        with pytest.raises(ValueError) as err:
            check_bool("amp", bad)
        assert str(err.value) == f"amp={bad!r} is not allowed; use True or False"


@pytest.mark.parametrize("value", [1, 1.0, 0.5, 1e-9, np.float32(0.25)])
def test_check_fraction_accepts(value):
    assert check_fraction("fraction", value) is value


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.01, math.nan, math.inf, True, "0.5", None])
def test_check_fraction_rejects(value):
    with pytest.raises(ValueError) as err:
        check_fraction("fraction", value)
    assert str(err.value) == f"fraction={value!r} is not allowed; it must be in (0, 1]"


def test_check_type():
    d = {"a": 1}
    assert check_type("mask", d, Mapping, "a dict") is d
    assert check_type("x", 3, (int, str), "an int or a str") == 3
    with pytest.raises(ValueError, match=r"^mask=\[1, 2\] is not allowed; use a dict, not a list$"):
        check_type("mask", [1, 2], Mapping, "a dict")
    with pytest.raises(ValueError, match=r"^attack=None is not allowed; use an AttackConfig, not a NoneType$"):
        check_type("attack", None, dict, "an AttackConfig")


def test_long_values_are_shortened():
    with pytest.raises(ValueError) as err:
        check_int("n", "x" * 500, 1)
    message = str(err.value)
    assert message.startswith("n='xxx") and "x... is not allowed" in message
    assert len(message) < 120 and message.endswith("is not allowed; use an integer >= 1")
