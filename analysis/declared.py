"""What a method declares about itself (its class in ``methods``), for the analysis.

Records on disk carry a method's name and parameters (``config.json``), not what it is; its
class says that: ``family``, ``variant_of``, ``plugin_of`` and ``al_counterpart`` (see
``methods.base.Method``).
A method this checkout does not know declares nothing and is judged from its records.
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def method_class(name: str):
    """The registered class of ``name``, or None for a method this checkout does not know."""
    try:
        from methods import get_method
        return get_method(name)
    except Exception:
        return None


def family(name: str) -> str:
    return getattr(method_class(name), "family", "") or ""


def variant_of(name: str) -> str:
    """The method ``name`` is an ablation or plug-in of, or ''."""
    return getattr(method_class(name), "variant_of", "") or ""


def plugin_of(name: str, params: dict) -> str | None:
    """The method ``name`` runs on top of with a run's recorded ``params`` (over its defaults:
    a record may predate a parameter), or None."""
    cls = method_class(name)
    return cls.plugin_of({**cls.params, **params}) if cls is not None else None


def al_counterpart(name: str, params: dict) -> str | None:
    """The method whose AL run queries as ``name``'s SSAL run with ``params`` does, or None."""
    cls = method_class(name)
    return cls.al_counterpart({**cls.params, **params}) if cls is not None else None


def ours() -> list[str]:
    """The default "ours": every method that declares family ``ours`` and varies no other."""
    from methods import METHODS

    return [n for n, cls in METHODS.items() if cls.family == "ours" and not cls.variant_of]
