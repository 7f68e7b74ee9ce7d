"""soundscape: bird species presence in field recordings, from training to serving.

Packages: ``soundscape`` (shared audio front end, inference engine, batch analysis, demo data, CLI),
``model_store`` (model cards and the versioned store), ``training`` (timm fine-tuning, ONNX export,
retraining; needs the ``[train]`` extra) and ``app`` (the FastAPI service; no torch).
"""

import os
from typing import TYPE_CHECKING

from soundscape.lazy import lazy_exports

if TYPE_CHECKING:
    from soundscape.api import embed, predict

__version__ = "0.1.0"
__all__ = ["__version__", "available_cpus", "embed", "predict"]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux): the default worker count everywhere."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


# ``soundscape.predict`` / ``soundscape.embed`` (:mod:`soundscape.api`) load the engine only when first used, so
# ``import soundscape`` (the CLI, the service) stays light.
__getattr__, __dir__ = lazy_exports(__name__, {"predict": "api", "embed": "api"}, __all__)
