"""Registries: named things (patterns, schemes, tracks, models) looked up with a clear error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> object``; ``get`` of an unknown name names it and what is allowed."""

    def __init__(self, what: str, show: Callable[[str], str] = repr):
        self.what = what
        self._show = show  # how a name is written in the error (repr: quoted)
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> T | Callable[[T], T]:
        """``REG.register("x", obj)`` or ``@REG.register("x")`` over a class or function."""

        def add(o: T) -> T:
            if name in self._items and self._items[name] is not o:
                raise ValueError(f"{self.what} {name!r} is registered already")
            self._items[name] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.what} {name!r}; allowed: {', '.join(map(self._show, self._items))}"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._items)})"
