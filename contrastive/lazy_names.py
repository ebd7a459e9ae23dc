"""Package names that load on first use (PEP 562).

torch, torchvision and Lightning take 5-7 s to import on 2 cores. A package that names its
public objects here, rather than importing their modules, lets ``contrastive --help``,
``contrastive health`` and ``import contrastive`` skip that until something needs them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for names that live in other modules.

    Use as ``__getattr__, __dir__ = lazy_names(__name__, {"name": "module.path", ...})``.

    Args:
        package: The package's ``__name__``.
        homes: Each public name and the module that defines it.

    Returns:
        ``__getattr__``, which imports a name's module on its first lookup and keeps the
        value on the package (later lookups skip it), and ``__dir__``, which lists the lazy
        names with the loaded ones.
    """

    def lookup(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    def listing() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes})

    return lookup, listing
