"""Lazy public faces for the rooms of crc_core: a room's ``__init__`` names what it hands on and
from which module, and a module is imported only when one of its names is first asked for.

Lazy because the faces are what pages and notebooks import: ``import crc_core.training`` must not
load every trainer (and, through them, torch) just to read a config. The pattern is scientific
Python's ``lazy_loader.attach`` (SPEC 1), kept here in a few lines rather than as a dependency.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def attach(package: str, names_by_module: dict[str, list[str]]
           ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for the package ``package``.

    A handed-on name may not also be a module of the room: once that module is imported, Python
    binds the package attribute to the module and the name would silently change meaning.
    """
    where = {name: module for module, names in names_by_module.items() for name in names}
    clashes = sorted(set(where) & set(names_by_module))
    if clashes:
        raise ValueError(f"{package}: {', '.join(clashes)} is both a module and a handed-on name")

    def __getattr__(name: str) -> object:
        if name in where:
            value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
            globals_of_package = importlib.import_module(package).__dict__
            globals_of_package[name] = value  # later look-ups skip this function
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__, sorted(where)
