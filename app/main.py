"""Assembles the FastAPI app: settings, metrics, model manager, predictor, routers and error handlers.

``create_app(settings)`` builds a fresh app (tests and the CLI pass their own settings); ``app`` below is
the one uvicorn imports as ``app.main:app``. The model is loaded once, in ``lifespan``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from soundscape import __version__
from soundscape.allocator import limit_malloc_arenas

from .api.main import api_router
from .clients import ShutdownMiddleware
from .core.config import Settings, get_settings
from .errors import install_error_handlers
from .metrics import Metrics, MetricsMiddleware
from .model_manager import ModelLoadError, ModelManager
from .openapi import install_openapi
from .review import Reviewer
from .service import Predictor
from .ui import install_ui

__all__ = ["create_app"]

log = logging.getLogger(__name__)

DESCRIPTION = """Per-species presence probabilities for every 5-second window of a field recording.

Upload a recording to `POST /v1/predict` (multipart field `file`, or the raw file with an audio content
type). Every error is JSON `{"error": code, "detail": message}`. People can open the web page at `/`
(it uses the `review` endpoints); these docs also work offline (`/docs`, `/redoc`).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and warm the production model once; drain and stop on shutdown."""
    settings: Settings = app.state.settings
    manager: ModelManager = app.state.models
    limit_malloc_arenas(settings.malloc_arena_max)  # before the model's and the workers' threads allocate
    try:
        await manager.start()
    except ModelLoadError as exc:
        if settings.require_model:
            log.critical("cannot start: nothing good to serve from %s: %s", settings.store_path, exc.message)
            raise
        log.warning("starting without a model (require_model=false): %s", exc.message)
    try:
        yield
    finally:
        await manager.close()
        app.state.predictor.close()
        log.info("shut down")


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new service app.

    Args:
        settings (Settings, optional): overrides :func:`get_settings` for every route of this app.
            (Default: the environment's settings)

    Returns:
        FastAPI: the app; its model loads when the ASGI lifespan starts.
    """
    settings = settings or get_settings()
    app = FastAPI(title="soundscape", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # served offline by app.ui
                  openapi_tags=[{"name": "predict", "description": "Species probabilities for recordings."},
                                {"name": "review", "description": "The web page's calls: a result with its "
                                 "spectrogram, its progress and its downloads."},
                                {"name": "models", "description": "The served model and the store."},
                                {"name": "admin", "description": "Hot reload and promotion (bearer token)."},
                                {"name": "health", "description": "Liveness, readiness and metrics."}])
    metrics = Metrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.models = ModelManager(settings, metrics)
    app.state.predictor = Predictor(settings, metrics)
    app.state.reviewer = Reviewer(settings, app.state.predictor)
    app.dependency_overrides[get_settings] = lambda: settings
    install_error_handlers(app)
    app.include_router(api_router)
    install_ui(app)
    install_openapi(app)
    app.add_middleware(ShutdownMiddleware, retry_after_s=settings.retry_after_s)  # inside the metrics: counted
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` works, but importing this module builds nothing until asked.
    if name == "app":
        return create_app()
    raise AttributeError(name)
