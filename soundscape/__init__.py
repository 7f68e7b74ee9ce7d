"""soundscape: bird species presence in field recordings, from training to serving.

Packages: ``soundscape`` (shared audio front end, inference engine, batch analysis, demo data, CLI),
``model_store`` (model cards and the versioned store), ``training`` (timm fine-tuning, ONNX export,
retraining; needs the ``[train]`` extra) and ``app`` (the FastAPI service; no torch).
"""

import os

__version__ = "0.1.0"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux): the default worker count everywhere."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)
