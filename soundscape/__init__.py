"""soundscape: bird species presence in field recordings, from training to serving.

Packages: ``soundscape`` (shared audio front end, inference engine, batch analysis, demo data, CLI),
``model_store`` (model cards and the versioned store), ``training`` (timm fine-tuning, ONNX export,
retraining; needs the ``[train]`` extra) and ``app`` (the FastAPI service; no torch).
"""

__version__ = "0.1.0"
