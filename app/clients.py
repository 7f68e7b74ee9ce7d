"""Slow, silent and vanishing clients: timeouts, the upload gate, disconnects and shutdown past the grace period.

- :func:`header_timeout_protocol`: uvicorn's HTTP protocol with a header read timeout (``header_timeout_s``): a
  connection that opens and sends nothing, or starts a request and never finishes its header, is closed.
- :func:`receive_body`: a request's body, chunk by chunk, with an idle and a total timeout (408
  ``upload_timeout``) and :class:`~starlette.requests.ClientDisconnect` when the client goes away.
- :class:`UploadGate`: uploads being received, in all and per client address (503 ``too_busy``, 429
  ``too_many_uploads``); admission to ``max_concurrent_requests`` comes only once the body has arrived, so idle
  uploads can no longer lock out everyone else.
- :func:`until_disconnect`: runs a request's work, cancelled at once (queued windows dropped) when the client
  disconnects.
- :class:`ShutdownMiddleware`: a request still running when uvicorn cancels it at the end of the shutdown grace
  period answers JSON 503 ``shutting_down`` with ``Retry-After`` instead of uvicorn's plain-text 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TypeVar

from fastapi import Request
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError
from .metrics import Metrics

__all__ = ["ShutdownMiddleware", "UploadGate", "header_timeout_protocol", "receive_body", "until_disconnect"]

log = logging.getLogger(__name__)

T = TypeVar("T")


# -- header read timeout -------------------------------------------------------------------------------------
def header_timeout_protocol(base: type[asyncio.Protocol], timeout_s: float) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's h11 or httptools protocol) closing connections that do not finish a header in time.

    The timer runs from the connection's opening and from the first byte of each later request on it, and
    stops when the request's header is complete (uvicorn then creates the request's cycle).
    """

    class HeaderTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None
        _seen_cycle: object = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._idle():
                self._arm()
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            if cycle is not None and cycle is not self._seen_cycle:  # a header was completed
                self._seen_cycle = cycle
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _idle(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or cycle.response_complete

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = asyncio.get_running_loop().call_later(timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if self._idle() and not self.transport.is_closing():
                log.info("closed a connection from %s: no complete request header within %g s",
                         _peer(getattr(self, "client", None)), timeout_s)
                self.transport.close()

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{base.__name__}"
    return HeaderTimeoutProtocol


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown client"


# -- body read timeouts --------------------------------------------------------------------------------------
def _timeout(detail: str) -> ApiError:
    return ApiError(408, "upload_timeout", detail, headers={"Connection": "close"})


async def receive_body(request: Request, *, idle_s: float, total_s: float) -> AsyncIterator[bytes]:
    """The request's body chunks, each awaited at most ``idle_s`` and all of them within ``total_s``.

    Raises:
        ApiError: 408 ``upload_timeout`` (the connection is then closed).
        ClientDisconnect: the client went away mid-body.
    """
    deadline = time.monotonic() + total_s
    while True:
        left = deadline - time.monotonic()
        wait = min(idle_s, left)
        try:
            message = await asyncio.wait_for(request.receive(), timeout=max(wait, 0.0))
        except TimeoutError:
            if left <= idle_s:
                raise _timeout(f"the upload took longer than {total_s:g} s") from None
            raise _timeout(f"no upload data for {idle_s:g} s") from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return


# -- the upload gate -----------------------------------------------------------------------------------------
class UploadGate:
    """Counts uploads being received, in all and per client address.

    Args:
        total (int): most uploads in progress at once (503 ``too_busy`` past it).
        per_client (int): most from one address (429 ``too_many_uploads``; 0: no limit).
        retry_after_s (int): the ``Retry-After`` of both answers.
        metrics (Metrics): ``soundscape_uploads_in_progress`` and ``soundscape_rejected_requests_total``.
    """

    def __init__(self, total: int, per_client: int, retry_after_s: int, metrics: Metrics) -> None:
        self.total = total
        self.per_client = per_client
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self._by_client: Counter[str] = Counter()
        self._active = 0

    @property
    def active(self) -> int:
        return self._active

    def _refuse(self, status: int, reason: str, detail: str) -> ApiError:
        self.metrics.rejected.labels(reason).inc()
        return ApiError(status, reason, detail, headers={"Retry-After": str(self.retry_after_s)})

    @contextlib.contextmanager
    def receiving(self, request: Request) -> Iterator[None]:
        """Counts one upload in while its body is read."""
        client = request.client.host if request.client else "unknown"
        if self._active >= self.total:
            raise self._refuse(503, "too_busy", f"{self._active} uploads are being received; retry later")
        if self.per_client and self._by_client[client] >= self.per_client:
            raise self._refuse(429, "too_many_uploads", f"{self._by_client[client]} uploads from this address are "
                               f"being received (at most {self.per_client}); finish them first")
        self._active += 1
        self._by_client[client] += 1
        self.metrics.uploads_in_progress.inc()
        try:
            yield
        finally:
            self._active -= 1
            self._by_client[client] -= 1
            if not self._by_client[client]:
                del self._by_client[client]
            self.metrics.uploads_in_progress.dec()


# -- disconnects while a request is processed ----------------------------------------------------------------
async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled at once if the client disconnects (the body must have been read).

    Raises:
        ClientDisconnect: the client went away first (``work`` was cancelled: its queued windows are dropped).
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled from outside (shutdown): the work goes with it
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientDisconnect()


# -- shutdown past the grace period --------------------------------------------------------------------------
class ShutdownMiddleware:
    """Answers JSON 503 ``shutting_down`` + ``Retry-After`` when uvicorn cancels a request at the end of the grace
    period (before the answer started; after it, the connection is just closed)."""

    def __init__(self, app: ASGIApp, retry_after_s: int) -> None:
        self.app = app
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if started:
                raise
            log.warning("%s %s cancelled at the end of the shutdown grace period: answered 503",
                        scope.get("method"), scope.get("path"))
            await self._unavailable(send)

    async def _unavailable(self, send: Send) -> None:
        body = json.dumps({"error": "shutting_down", "detail": "the service is shutting down; retry on another "
                           "instance or after it restarts"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"retry-after", str(self.retry_after_s).encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
