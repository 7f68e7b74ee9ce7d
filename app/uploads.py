"""Receiving uploads: multipart or raw body, with byte limits, spooling and no client paths.

The body is read through a counting stream that stops at the byte limit (413 ``upload_too_large``),
also when the client sends no Content-Length. Files larger than ``spool_threshold_bytes`` go to an
anonymous temporary file instead of RAM. A client's filename is only ever used, sanitised, as the stem of
BirdCLEF row ids: it never becomes a path on the server.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

from fastapi import Request
from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from .core.config import Settings
from .errors import ApiError

__all__ = ["AUDIO_CONTENT_TYPES", "Upload", "is_audio_type", "receive_uploads", "safe_stem"]

# Besides audio/*: what browsers and HTTP clients send for files of unknown type, and Ogg's own type.
AUDIO_CONTENT_TYPES = frozenset({"application/octet-stream", "application/ogg", "video/ogg"})
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers, per file
_STEM_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_FILE_FIELDS = ("file", "files")


@dataclass
class Upload:
    """One received file: a seekable binary file object and a sanitised name."""

    file: BinaryIO
    filename: str
    size: int
    content_type: str = ""

    def close(self) -> None:
        self.file.close()

    @property
    def stem(self) -> str:
        return safe_stem(self.filename)


def safe_stem(filename: str | None, default: str = "upload") -> str:
    """The stem of a client filename, reduced to ``[A-Za-z0-9._-]`` (at most 100 characters).

    Path components of either style are dropped: ``"../../etc/x.wav"`` gives ``"x"``.
    """
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = _STEM_CHARS.sub("_", stem).strip("._")[:100]
    return stem or default


def is_audio_type(content_type: str | None) -> bool:
    """True for ``audio/*`` and the generic binary types clients use for files."""
    if not content_type:
        return False
    main = content_type.split(";", 1)[0].strip().lower()
    return main.startswith("audio/") or main in AUDIO_CONTENT_TYPES


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "upload_too_large", f"the upload is larger than the limit of {limit} bytes")


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        yield chunk


def _filename_from_disposition(header: str | None) -> str:
    if not header:
        return ""
    _, params = parse_options_header(header)
    value = params.get(b"filename", b"")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def receive_uploads(request: Request, settings: Settings, *, max_files: int) -> list[Upload]:
    """Read a request's audio files.

    Args:
        request (Request): multipart/form-data with field ``file`` (or ``files``), or a raw body with an
            audio content type.
        settings (Settings): byte limit and spool threshold.
        max_files (int): most files accepted.

    Returns:
        list[Upload]: the files, in upload order; the caller closes them.

    Raises:
        ApiError: 413 (too many bytes or files), 415 (not audio), 422 (no file), 400 (broken multipart).
    """
    content_type = request.headers.get("content-type", "")
    main_type = content_type.split(";", 1)[0].strip().lower()
    per_file = settings.max_upload_bytes
    multipart = main_type == "multipart/form-data"
    limit = per_file * max_files + _MULTIPART_OVERHEAD * max_files if multipart else per_file
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    if multipart:
        return await _receive_multipart(request, settings, limit=limit, max_files=max_files)
    if not is_audio_type(content_type):
        raise ApiError(415, "unsupported_media_type",
                       f"content type {main_type or '(none)'!r} is not audio: send multipart/form-data with a "
                       "'file' field, or a raw body with an audio/* content type")
    spool = tempfile.SpooledTemporaryFile(max_size=settings.spool_threshold_bytes)  # noqa: SIM115 - caller closes
    size = 0
    try:
        async for chunk in _limited(request, limit):
            spool.write(chunk)
            size += len(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    name = _filename_from_disposition(request.headers.get("content-disposition"))
    return [Upload(file=spool, filename=name or "upload", size=size, content_type=content_type)]


async def _receive_multipart(request: Request, settings: Settings, *, limit: int, max_files: int) -> list[Upload]:
    parser = MultiPartParser(request.headers, _limited(request, limit), max_files=max_files, max_fields=16)
    parser.spool_max_size = settings.spool_threshold_bytes  # instance attribute shadows the class default
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "too many files" in exc.message.lower():
            raise ApiError(413, "too_many_files", f"at most {max_files} file(s) per request") from None
        raise ApiError(400, "bad_multipart", f"malformed multipart body ({exc.message})") from None
    files: list[UploadFile] = [v for k, v in form.multi_items() if k in _FILE_FIELDS and isinstance(v, UploadFile)]
    uploads = [Upload(file=f.file, filename=f.filename or "upload", size=f.size or 0,
                      content_type=f.content_type or "application/octet-stream") for f in files]
    try:
        if not files:
            raise ApiError(422, "missing_file", "no file: send the audio in a multipart field named 'file'")
        if len(files) > max_files:
            raise ApiError(413, "too_many_files", f"at most {max_files} file(s) per request, got {len(files)}")
        for f in files:
            if (f.size or 0) > settings.max_upload_bytes:
                raise _too_large(settings.max_upload_bytes)
    except ApiError:
        for u in uploads:
            u.close()
        raise
    return uploads
