"""Lazy re-exports for package ``__init__`` files (PEP 562).

A package lists the public names it re-exports and the module each lives in; the
name is imported on first use, so ``import femurseg`` (or ``femurseg.export``)
stays cheap and only the parts a user touches pull in torch, TorchIO or VTK writers.

Examples
--------
In a package's ``__init__.py``::

    _EXPORTS = {"segment": "femurseg.inference.predictor"}
    __all__ = list(_EXPORTS)
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` that import ``exports`` on first use.

    Parameters
    ----------
    package
        The package's ``__name__``.
    exports
        Public name → module that defines it.
    public
        Every public name of the package (``__all__``), listed by ``dir()``.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)`` to assign in the package's namespace. A name
        is cached on the package after its first import.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
