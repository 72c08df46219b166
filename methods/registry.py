"""Name -> object registries whose errors list the known names and the closest match.

One class serves methods, datasets, presets and settings (``benchmark.registry`` re-exports it),
so every "unknown name" error in the suite reads the same way. ``METHODS`` fills itself on first
use by importing every module of this package: a new method is one file plus its test, and the
registry alone imports no torch (``python -m benchmark --help`` stays quick).
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name no registry entry has; the message names the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, discover: Callable[[], None] | None = None):
        """``discover`` runs once, before the first lookup, and registers the entries."""
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._discover = discover

    @property
    def _items(self) -> dict[str, T]:
        if self._discover is not None:
            discover, self._discover = self._discover, None
            discover()
        return self._entries

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``; a name may be registered once."""
        key = name.lower()

        def add(obj: T) -> T:
            if key in self._entries and self._entries[key] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[key] = obj
            return obj

        return add

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        key = str(name).lower()
        if key in self._items:
            return self._items[key]
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name).lower(), self._items, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(sorted(self._items))}"

    def __contains__(self, name: object) -> bool:
        return str(name).lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self):
        return sorted(self._items.items())

    def __len__(self) -> int:
        return len(self._items)


def _import_every_method() -> None:
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{info.name}")


METHODS = Registry("method", discover=_import_every_method)


def register(name: str):
    """``@register("name")`` on a :class:`~methods.base.Method` subclass."""
    def add(cls):
        cls.name = name
        return METHODS.register(name)(cls)
    return add


def get_method(name: str):
    return METHODS.get(name)
