"""Prometheus metrics, one registry per app (so two apps in one process never mix their counts)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)


class Metrics:
    """The service's metrics, registered in their own :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("soundscape_http_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("soundscape_http_request_duration_seconds", "HTTP request latency by route.",
                                 ["route", "method"], buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("soundscape_requests_in_flight", "Prediction requests being processed.",
                               registry=r)
        self.audio_seconds = Counter("soundscape_audio_seconds_processed",
                                     "Seconds of audio analysed (source duration).", registry=r)
        self.windows = Counter("soundscape_windows_processed", "Windows analysed by the model.", registry=r)
        self.stage_seconds = Histogram("soundscape_stage_duration_seconds",
                                       "Time per request in each stage (decode, frontend, model).",
                                       ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("soundscape_batch_size", "Windows per model run.",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_wait = Histogram("soundscape_batch_wait_seconds",
                                    "Time a batch's first window waited before the model run.",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_exec = Histogram("soundscape_batch_run_seconds", "Duration of one model run.",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("soundscape_queue_depth_windows", "Windows waiting for the model.",
                                 registry=r)
        self.rejected = Counter("soundscape_rejected_requests",
                                "Requests refused because the service was full (503) or a client had too many "
                                "uploads in progress (429).", ["reason"], registry=r)
        self.uploads_in_progress = Gauge("soundscape_uploads_in_progress",
                                         "Uploads whose body is being received.", registry=r)
        self.disconnects = Counter("soundscape_client_disconnects",
                                   "Requests whose client went away before the answer (their status: 499).",
                                   registry=r)
        self.model_version = Gauge("soundscape_model_version", "Version of the model being served.",
                                   ["name"], registry=r)
        self.model_info = Gauge("soundscape_model_info", "The served model (value 1).",
                                ["name", "version", "architecture", "precision", "sha256"], registry=r)
        self.model_ready = Gauge("soundscape_model_ready", "1 when a model is loaded and warm.", registry=r)
        self.model_runs = Gauge("soundscape_model_run_slots",
                                "Model runs the served model may have in flight at once (MAX_CONCURRENT_BATCHES).",
                                registry=r)
        self.reloads = Counter("soundscape_model_reloads", "Model swaps that succeeded.", registry=r)
        self.reload_failures = Counter("soundscape_model_reload_failures",
                                       "Model loads refused (checksum, load or warm-up failure).", ["reason"],
                                       registry=r)

    def set_model(self, name: str, version: int, architecture: str, precision: str, sha256: str, runs: int) -> None:
        """Record the served model (removes the previous ``model_info`` series) and its concurrent runs."""
        self.model_info.clear()
        self.model_runs.set(runs)
        self.model_info.labels(name, str(version), architecture, precision, sha256[:12]).set(1)
        self.model_version.labels(name).set(version)
        self.model_ready.set(1)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts requests and their latency by route template (pure ASGI: no per-request task overhead)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # Templates, not raw paths, keep the label set bounded (404s share one label).
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - start)
