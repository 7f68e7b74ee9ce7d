"""The served model and its hot reload.

A :class:`ServedModel` is one verified, warmed :class:`~soundscape.inference.Engine` with its own
:class:`~app.batching.DynamicBatcher`. Requests hold a lease on the model they started with; a reload
loads and warms the new version beside the old one, swaps the reference (atomic for the event loop) and
closes the old batcher only when its last lease is released, so in-flight requests finish on the model
they started with. A version whose checksum, load or warm-up fails is refused: the old one keeps serving,
and the refusal is logged and counted in ``soundscape_model_reload_failures``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from model_store import ModelCard, ModelStore, StoreError
from soundscape.inference import Engine, EngineError

from .batching import DynamicBatcher
from .core.config import Settings
from .metrics import Metrics

__all__ = ["ModelLoadError", "ModelManager", "ServedModel"]

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A version that cannot be served (``code``: a :class:`StoreErrorCode` value or ``model_load_failed``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class ServedModel:
    """One loaded, warm model version and its batcher."""

    engine: Engine
    batcher: DynamicBatcher
    load_s: float
    leases: int = 0
    retired: bool = False

    @property
    def card(self) -> ModelCard:
        return self.engine.card

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def version(self) -> int:
        return self.engine.version


class ModelManager:
    """Loads the production model, hands out leases and swaps versions.

    Args:
        settings (Settings): store path, model name, threads and batching limits.
        metrics (Metrics): where model info and reload outcomes are recorded.
    """

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = ModelStore(settings.store_path)
        self.name = settings.model_name
        self.current: ServedModel | None = None
        self._swap_lock = asyncio.Lock()
        self._closing: set[asyncio.Task] = set()

    # -- loading ---------------------------------------------------------------------------------
    def _build(self, version: int | None) -> tuple[Engine, float]:
        """Verify, load and warm a version (blocking; runs in a worker thread)."""
        start = time.perf_counter()
        try:
            verified = self.store.load(self.name, version)
        except StoreError as exc:
            raise ModelLoadError(str(exc.code), exc.message) from None
        s = self.settings
        try:
            engine = Engine(verified, intra_op_threads=s.intra_op_threads, inter_op_threads=s.inter_op_threads,
                            fft_workers=s.fft_workers, memory_arena=s.memory_arena,
                            memory_pattern=s.memory_pattern)
            engine.warmup()
        except EngineError as exc:
            raise ModelLoadError("model_load_failed", str(exc)) from None
        except Exception as exc:  # onnxruntime raises assorted types on a broken graph
            raise ModelLoadError("model_load_failed", f"{verified.path}: warm-up failed ({exc})") from None
        return engine, time.perf_counter() - start

    async def _load(self, version: int | None) -> ServedModel:
        try:
            engine, took = await asyncio.to_thread(self._build, version)
        except ModelLoadError as exc:
            self.metrics.reload_failures.labels(exc.code).inc()
            log.error("refused %s v%s: %s", self.name, version if version is not None else "(production)",
                      exc.message)
            raise
        s = self.settings
        batcher = DynamicBatcher(
            lambda images: engine.run(images)[0],
            max_batch_size=s.batch_max_size,
            max_wait_ms=s.batch_max_wait_ms,
            max_queue_windows=s.max_queue_windows,
            max_concurrent_batches=s.model_runs(engine.card.frontend.input),
            metrics=self.metrics,
            name=f"{engine.name}-v{engine.version}",
        )
        batcher.start()
        log.info("loaded %s v%d (%s, %s) in %.0f ms", engine.name, engine.version, engine.card.architecture,
                 engine.card.precision, took * 1000)
        return ServedModel(engine=engine, batcher=batcher, load_s=took)

    async def start(self) -> ServedModel:
        """Load and warm the production version (start-up).

        Raises:
            ModelLoadError: nothing good to serve (no model, no production version, bad checksum, ...).
        """
        served = await self._load(None)
        self._swap(served)
        return served

    def _swap(self, new: ServedModel) -> ServedModel | None:
        old, self.current = self.current, new
        card = new.card
        self.metrics.set_model(card.name, card.version, card.architecture, card.precision, card.sha256,
                               new.batcher.max_concurrent_batches)
        if old is not None:
            old.retired = True
            self.metrics.reloads.inc()
            log.info("now serving %s v%d (was v%d)", new.name, new.version, old.version)
            self._maybe_close(old)
        return old

    def _maybe_close(self, model: ServedModel) -> None:
        if model.retired and model.leases == 0:
            task = asyncio.get_running_loop().create_task(model.batcher.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # -- requests --------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[ServedModel]:
        """The current model, kept alive (not closed by a swap) until the block exits.

        Raises:
            LookupError: no model is loaded.
        """
        model = self.current
        if model is None:
            raise LookupError("no model is loaded")
        model.leases += 1
        try:
            yield model
        finally:
            model.leases -= 1
            self._maybe_close(model)

    # -- admin -----------------------------------------------------------------------------------
    async def reload(self) -> tuple[ServedModel | None, ServedModel]:
        """Serve the store's production version, loading it beside the current one.

        Returns:
            tuple: the previous model (None at first load) and the one served now (the same object when
            production was already served).

        Raises:
            ModelLoadError: the production version cannot be served; the current one keeps serving.
        """
        async with self._swap_lock:
            try:
                target = self.store.production(self.name)
            except StoreError as exc:
                self.metrics.reload_failures.labels(str(exc.code)).inc()
                log.error("reload refused: %s", exc.message)
                raise ModelLoadError(str(exc.code), exc.message) from None
            current = self.current
            if current is not None and target == current.version:
                return current, current
            new = await self._load(target)
            return self._swap(new), new

    async def promote(self, version: int) -> tuple[ServedModel | None, ServedModel]:
        """Verify and warm ``version``, mark it production in the store, then serve it.

        Raises:
            ModelLoadError: the version is missing or cannot be served; nothing changes.
        """
        async with self._swap_lock:
            current = self.current
            if current is not None and current.version == version and self.store.production(self.name) == version:
                return current, current
            new = await self._load(version)
            try:
                await asyncio.to_thread(self.store.promote, self.name, version)
            except StoreError as exc:
                await new.batcher.close()
                self.metrics.reload_failures.labels(str(exc.code)).inc()
                raise ModelLoadError(str(exc.code), exc.message) from None
            return self._swap(new), new

    async def close(self) -> None:
        """Drain and stop every batcher (shutdown)."""
        current, self.current = self.current, None
        self.metrics.model_ready.set(0)
        if current is not None:
            await current.batcher.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
