"""``soundscape serve``: run the service with uvicorn.

Options override the ``SOUNDSCAPE_*`` environment and ``.env``; anything not given keeps its setting.
On SIGTERM/SIGINT uvicorn stops accepting connections, lets in-flight requests finish (up to
``graceful_shutdown_s``), then the lifespan drains the batchers.
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

# option -> Settings field; None values are left to the environment.
_OVERRIDES = {
    "host": "host",
    "port": "port",
    "store": "store_path",
    "model": "model_name",
    "intra_op_threads": "intra_op_threads",
    "inter_op_threads": "inter_op_threads",
    "cpu_workers": "cpu_workers",
    "batch_max_size": "batch_max_size",
    "batch_max_wait_ms": "batch_max_wait_ms",
    "max_concurrent_batches": "max_concurrent_batches",
    "max_concurrent_requests": "max_concurrent_requests",
    "max_upload_bytes": "max_upload_bytes",
    "max_duration_s": "max_duration_s",
    "header_timeout_s": "header_timeout_s",
    "body_idle_timeout_s": "body_idle_timeout_s",
    "max_uploads_in_progress": "max_uploads_in_progress",
    "max_uploads_per_client": "max_uploads_per_client",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``soundscape serve`` (defaults come from the settings, so none are shown here)."""
    parser.add_argument("--host", default=None, help="Interface to bind (setting: host, default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=None, help="TCP port (setting: port, default 8000).")
    parser.add_argument("--store", default=None, help="Model store root (setting: store_path; default: the user "
                        "store when it has a production model, else the bundled one).")
    parser.add_argument("--model", default=None, help="Model name in the store (setting: model_name).")
    parser.add_argument("--intra-op-threads", type=int, default=None, help="ONNX Runtime threads per run.")
    parser.add_argument("--inter-op-threads", type=int, default=None, help="ONNX Runtime inter-op threads.")
    parser.add_argument("--cpu-workers", type=int, default=None, help="Decode/front-end threads.")
    parser.add_argument("--batch-max-size", type=int, default=None, help="Most windows per model run.")
    parser.add_argument("--batch-max-wait-ms", type=float, default=None, help="Batch wait after the first window.")
    parser.add_argument("--max-concurrent-batches", type=int, default=None,
                        help="Model runs at once (default: half the cores for log-mel models, all for waveform).")
    parser.add_argument("--max-concurrent-requests", type=int, default=None, help="Requests in progress at once.")
    parser.add_argument("--max-upload-bytes", type=int, default=None, help="Largest upload in bytes.")
    parser.add_argument("--max-duration-s", type=float, default=None, help="Longest recording in seconds.")
    parser.add_argument("--header-timeout-s", type=float, default=None,
                        help="Seconds a connection has to send a complete request header.")
    parser.add_argument("--body-idle-timeout-s", type=float, default=None,
                        help="Longest silence while an upload is read (408 upload_timeout).")
    parser.add_argument("--max-uploads-in-progress", type=int, default=None,
                        help="Uploads being received at once (admission comes after the body).")
    parser.add_argument("--max-uploads-per-client", type=int, default=None,
                        help="Uploads being received at once from one address (0: no limit).")
    parser.add_argument("--access-log", action="store_true", help="Log every request (uvicorn access log).")


def run(args: argparse.Namespace) -> int:
    """Build the settings, then serve until SIGTERM/SIGINT. Returns the exit code."""
    import uvicorn
    from pydantic import ValidationError
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from .clients import header_timeout_protocol
    from .core.config import Settings
    from .main import create_app

    overrides = {field: getattr(args, opt) for opt, field in _OVERRIDES.items() if getattr(args, opt, None) is not None}
    if getattr(args, "log_level", "INFO") != "INFO":  # the top-level --log-level; INFO = not given
        overrides["log_level"] = args.log_level
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        log.error("invalid settings: %s", exc)
        return 2
    logging.getLogger().setLevel(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=bool(getattr(args, "access_log", False)),
        timeout_graceful_shutdown=settings.graceful_shutdown_s,  # type: ignore[arg-type] - a float works
        http=header_timeout_protocol(AutoHTTPProtocol, settings.header_timeout_s),
        log_config=None,  # keep the root logging set up by soundscape.cli
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    # uvicorn sets started=False when the lifespan failed (e.g. no good model to serve).
    return 0 if server.started else 1
