"""Input validation: every bad value gets an error that names it and what is allowed."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(map(repr, allowed))}")
    return value


def check_positive(name: str, value: float) -> float:
    """Raise ``ValueError`` unless ``value > 0``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """Raise ``ValueError`` unless ``value`` lies in the interval (open or closed ends)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(name: str, value: Any, low: int | None = None, *, none_ok: bool = False) -> Any:
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not a bool) and ``>= low``.

    ``none_ok`` also allows ``None`` (e.g. "keep as is").
    """
    if none_ok and value is None:
        return value
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or (low is not None and value < low):
        allowed = "an integer" + (f" >= {low}" if low is not None else "")
        allowed += " or None" if none_ok else ""
        raise ValueError(f"{name}={_short(value)} is not allowed; use {allowed}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Raise ``ValueError`` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={_short(value)} is not allowed; use True or False")
    return value


def check_fraction(name: str, value: Any) -> Any:
    """Raise ``ValueError`` unless ``value`` is a real number in (0, 1] (not a bool)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0 < value <= 1:
        raise ValueError(f"{name}={_short(value)} is not allowed; it must be in (0, 1]")
    return value


def check_type(name: str, value: Any, types: type | tuple[type, ...], what: str) -> Any:
    """Raise ``ValueError`` unless ``isinstance(value, types)``; ``what`` says what is allowed."""
    if not isinstance(value, types):
        raise ValueError(
            f"{name}={_short(value)} is not allowed; use {what}, not a {type(value).__name__}"
        )
    return value
