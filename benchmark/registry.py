"""The suite's registries (datasets, presets, settings) share the methods' class."""
from methods.registry import Registry, UnknownNameError  # noqa: F401
