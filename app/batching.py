"""Dynamic batching: windows from concurrent requests share model runs (Triton / Ray Serve style).

A request submits its images and awaits their probabilities. One loop task waits for the first item,
waits for a free run slot (``max_concurrent_batches``), then keeps taking queued items until the batch
holds ``max_batch_size`` windows or ``max_wait_ms`` has passed since the first item arrived. The model
runs in a dedicated thread pool, so the event loop keeps accepting uploads while it computes.

Guarantees: every future is resolved (result or exception), a request cancelled while queued (its client
went away) leaves the queue at once, a run's error is propagated to every request in the batch, and the
queue is bounded: a request that would push it past ``max_queue_windows`` gets :class:`QueueFullError` at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .metrics import Metrics

__all__ = ["BatcherClosedError", "DynamicBatcher", "QueueFullError"]

log = logging.getLogger(__name__)

RunFn = Callable[[np.ndarray], np.ndarray]


class QueueFullError(RuntimeError):
    """The batcher's queue cannot take the request's windows now; retry later."""


class BatcherClosedError(RuntimeError):
    """The batcher was closed (shutdown or model swap) before the request was queued."""


@dataclass(eq=False)  # identity: the queue removes a cancelled caller's own items
class _Item:
    images: np.ndarray  # (n, ...) one request's chunk: n windows, any trailing shape (image, model windows)
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)

    def __len__(self) -> int:
        return len(self.images)


class DynamicBatcher:
    """Batches model inputs from concurrent callers.

    Args:
        run_fn (Callable): ``(batch, ...) float32 -> (batch, n_out)``; called in a worker thread, must be
            thread-safe when ``max_concurrent_batches > 1``.
        max_batch_size (int): most windows in one run; a larger request is split into chunks.
        max_wait_ms (float): how long a batch waits for more items after its first one arrived.
        max_queue_windows (int): most windows waiting; beyond it :meth:`submit` raises QueueFullError.
        max_concurrent_batches (int): runs in flight at once. (Default: ``1``)
        metrics (Metrics, optional): where batch sizes, waits, run times and queue depth go.
        name (str): used in log messages and thread names. (Default: ``"model"``)

    Example:
        >>> batcher = DynamicBatcher(lambda x: engine.run(x)[0], max_batch_size=32, max_wait_ms=2,
        ...                          max_queue_windows=4096)
        >>> batcher.start()
        >>> probs = await batcher.submit(images)   # (n, n_labels)
    """

    def __init__(self, run_fn: RunFn, *, max_batch_size: int, max_wait_ms: float, max_queue_windows: int,
                 max_concurrent_batches: int = 1, metrics: Metrics | None = None, name: str = "model") -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue_windows < 1:
            raise ValueError(f"max_queue_windows must be >= 1, got {max_queue_windows}")
        if max_concurrent_batches < 1:
            raise ValueError(f"max_concurrent_batches must be >= 1, got {max_concurrent_batches}")
        self.run_fn = run_fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_windows = max_queue_windows
        self.max_concurrent_batches = max_concurrent_batches
        self.metrics = metrics
        self.name = name
        self._items: collections.deque[_Item] = collections.deque()
        self._arrived = asyncio.Event()
        self._queued = 0
        self._slots = asyncio.Semaphore(max_concurrent_batches)
        self._running: set[asyncio.Task] = set()
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent_batches,
                                            thread_name_prefix=f"batch-{name}")
        self._forming: list[_Item] = []  # taken off the queue by the loop, not yet handed to a run
        self._loop_task: asyncio.Task | None = None
        self._closed = False

    # -- public ----------------------------------------------------------------------------------
    @property
    def queued_windows(self) -> int:
        """Windows waiting for a run."""
        return self._queued

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start the loop task on the running event loop."""
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Queue one request's images and wait for their outputs.

        Args:
            images (np.ndarray): ``(n, ...)`` float32 model inputs.

        Returns:
            np.ndarray: ``(n, n_out)`` outputs, in input order.

        Raises:
            QueueFullError: the queue has no room for ``n`` more windows.
            BatcherClosedError: the batcher is closed.
            Exception: whatever ``run_fn`` raised for a batch holding these windows.
        """
        if self._closed:
            raise BatcherClosedError(f"batcher {self.name} is closed")
        n = len(images)
        if n == 0:
            raise ValueError("images is empty: submit at least one window")
        if self._queued + n > self.max_queue_windows:
            raise QueueFullError(
                f"{self._queued} windows are queued; {n} more would exceed max_queue_windows={self.max_queue_windows}"
            )
        loop = asyncio.get_running_loop()
        items = [_Item(images[a : a + self.max_batch_size], loop.create_future())
                 for a in range(0, n, self.max_batch_size)]
        self._items.extend(items)
        self._add_queued(n)
        self._arrived.set()
        try:
            outs = await asyncio.gather(*(item.future for item in items))
        except BaseException:
            self._drop(items)  # a cancelled caller (client gone, shutdown): its queued chunks leave the queue now
            raise
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    async def close(self, timeout_s: float | None = 30.0) -> None:
        """Refuse new items, let queued and running ones finish, then stop the loop."""
        self._closed = True
        deadline = None if timeout_s is None else time.perf_counter() + timeout_s
        while (self._items or self._forming or self._running) and (deadline is None or time.perf_counter() < deadline):
            await asyncio.sleep(0.005)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        # Anything left (timeout): fail it rather than leave a caller hanging.
        while self._items:
            item = self._items.popleft()
            self._add_queued(-len(item))
            if not item.future.done():
                item.future.set_exception(BatcherClosedError(f"batcher {self.name} closed before the run"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals -------------------------------------------------------------------------------
    def _drop(self, items: list[_Item]) -> None:
        """Cancel ``items``; those still queued leave the queue (and its count) at once."""
        for item in items:
            item.future.cancel()
            try:
                self._items.remove(item)
            except ValueError:  # already taken by the loop: it skips cancelled items
                continue
            self._add_queued(-len(item))

    def _add_queued(self, n: int) -> None:
        self._queued += n
        if self.metrics:
            self.metrics.queue_depth.inc(n)

    async def _next(self, timeout: float | None) -> _Item | None:
        """The next live queued item, waiting up to ``timeout`` seconds (None: forever)."""
        while True:
            while self._items:
                item = self._items.popleft()
                if item.future.done():  # cancelled while queued: drop it
                    self._add_queued(-len(item))
                    continue
                return item
            self._arrived.clear()
            if timeout is not None and timeout <= 0:
                return None
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                return None

    async def _loop(self) -> None:
        batch = self._forming
        while True:
            try:
                if not batch:  # else: the item carried over from the last batch opens this one
                    first = await self._next(None)
                    if first is None:
                        continue
                    batch.append(first)
                await self._slots.acquire()
                size, carry = len(batch[0]), None
                deadline = batch[0].enqueued + self.max_wait_s
                while size < self.max_batch_size:
                    item = await self._next(deadline - time.perf_counter())
                    if item is None:
                        break
                    if size + len(item) > self.max_batch_size:
                        carry = item  # it opens the next batch
                        break
                    batch.append(item)
                    size += len(item)
                self._add_queued(-size)
                task = asyncio.get_running_loop().create_task(self._run(list(batch)))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                batch.clear()
                if carry is not None:
                    batch.append(carry)
            except asyncio.CancelledError:
                # Put unfinished work back at the front of the queue so close() resolves it.
                self._items.extendleft(reversed(batch))
                batch.clear()
                raise
            except Exception:  # never let the loop die: log it and go on
                log.exception("batcher %s loop error", self.name)

    async def _run(self, batch: list[_Item]) -> None:
        try:
            live = [item for item in batch if not item.future.done()]
            if not live:
                return
            images = live[0].images if len(live) == 1 else np.concatenate([item.images for item in live])
            start = time.perf_counter()
            if self.metrics:
                self.metrics.batch_size.observe(len(images))
                self.metrics.batch_wait.observe(start - live[0].enqueued)
            loop = asyncio.get_running_loop()
            try:
                outs = await loop.run_in_executor(self._executor, self.run_fn, images)
                if len(outs) != len(images):
                    raise RuntimeError(f"run_fn returned {len(outs)} rows for {len(images)} inputs")
            except Exception as exc:
                log.error("batcher %s: model run on %d windows failed: %s", self.name, len(images), exc)
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)
                return
            if self.metrics:
                self.metrics.batch_exec.observe(time.perf_counter() - start)
            offset = 0
            for item in live:
                n = len(item)
                if not item.future.done():
                    item.future.set_result(outs[offset : offset + n])
                offset += n
        finally:
            for item in batch:  # cancelled mid-run (shutdown): still resolve every future
                if not item.future.done():
                    item.future.set_exception(BatcherClosedError(f"batcher {self.name} stopped during the run"))
            self._slots.release()
