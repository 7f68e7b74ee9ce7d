"""Lazy package exports: names a package re-exports from submodules that load only on first use.

Keeps ``import package`` cheap when the heavy submodules are not needed (``model_store`` imports
``soundscape.audio.config`` for the card without loading soundfile, soxr or scipy). ``soundscape.audio`` and
``training`` use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: dict[str, str],
                 public: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose ``names`` (name -> submodule) load lazily.

    Example:
        >>> __getattr__, __dir__ = lazy_exports(__name__, {"decode": "reader"}, __all__)
    """
    module = importlib.import_module(package)
    public = list(public)

    def __getattr__(name: str) -> Any:
        sub = names.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{sub}", package), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(public))

    return __getattr__, __dir__
