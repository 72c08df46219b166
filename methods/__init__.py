"""Methods: the contract (``base``), the registry, one module per method.

``METHODS`` imports every module here on first use, so a new method is one file plus its test.
"""
from .registry import METHODS, get_method, register  # noqa: F401
