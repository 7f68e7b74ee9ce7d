"""Receiving uploads: multipart or raw body, with byte limits, spooling and no client paths.

The body is read through a counting stream that stops at the byte limit (413 ``upload_too_large``),
also when the client sends no Content-Length. Files larger than ``spool_threshold_bytes`` go to an
anonymous temporary file instead of RAM. A client's filename is only ever used, sanitised, as the stem of
BirdCLEF row ids: it never becomes a path on the server.

Multipart bodies are parsed as they stream in by python-multipart's public streaming parser
(``python_multipart.MultipartParser`` and its callbacks; the ``python_multipart`` module exists from 0.0.13,
the dependency asks for >= 0.0.18, its first release without the known parser DoS): each file part goes
straight to its own spooled file, a part over the per-file limit stops the upload at once (413), and more
files or fields than allowed stop it too. Starlette's form parser (not public API, and without a streaming
byte limit or spool size of ours) is not used.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .clients import receive_body
from .core.config import Settings
from .errors import ApiError

__all__ = ["AUDIO_CONTENT_TYPES", "Upload", "is_audio_type", "receive_uploads", "safe_stem"]

# Besides audio/*: what browsers and HTTP clients send for files of unknown type, and Ogg's own type.
AUDIO_CONTENT_TYPES = frozenset({"application/octet-stream", "application/ogg", "video/ogg"})
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers, per file
_STEM_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_FILE_FIELDS = ("file", "files")
_MAX_FIELDS = 16  # form fields that are not files (ignored, but counted)
_MAX_FIELD_BYTES = 64 * 1024
_MAX_PART_HEADER_BYTES = 8 * 1024  # one part header line, e.g. Content-Disposition with the file name
_PARSER_HEADER_BYTES = 64 * 1024  # python-multipart's own limit, above ours so ours answers first
_DOTS = re.compile(r"\.{2,}")


@dataclass
class Upload:
    """One received file: a seekable binary file object and a sanitised name."""

    file: BinaryIO
    filename: str
    size: int
    content_type: str = ""
    field: str = ""  # the multipart field it came in (empty for a raw body)

    def close(self) -> None:
        self.file.close()

    @property
    def stem(self) -> str:
        return safe_stem(self.filename)


def safe_stem(filename: str | None, default: str = "upload") -> str:
    """The stem of a client filename, reduced to ``[A-Za-z0-9._-]`` (at most 100 characters).

    Path components of either style are dropped: ``"../../etc/x.wav"`` gives ``"x"``; runs of dots become
    ``_``, so a stem (and a row id) never holds ``..``.
    """
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = _DOTS.sub("_", _STEM_CHARS.sub("_", stem)).strip("._")[:100].strip("._")
    return stem or default


def is_audio_type(content_type: str | None) -> bool:
    """True for ``audio/*`` and the generic binary types clients use for files."""
    if not content_type:
        return False
    main = content_type.split(";", 1)[0].strip().lower()
    return main.startswith("audio/") or main in AUDIO_CONTENT_TYPES


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "upload_too_large", f"the upload is larger than the limit of {limit} bytes")


async def _limited(request: Request, settings: Settings, limit: int) -> AsyncIterator[bytes]:
    """The body within ``limit`` bytes and the body timeouts (408 ``upload_timeout``)."""
    received = 0
    async for chunk in receive_body(request, idle_s=settings.body_idle_timeout_s, total_s=settings.body_timeout_s):
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
        async for chunk in _limited(request, settings, limit):
            spool.write(chunk)
            size += len(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    name = _filename_from_disposition(request.headers.get("content-disposition"))
    return [Upload(file=spool, filename=name or "upload", size=size, content_type=content_type)]


class _MultipartReceiver:
    """Callbacks of python-multipart's streaming parser: file parts into spooled files, within the limits.

    A file part is one with a filename, or any part named ``file``/``files`` (``curl -F file=<x.wav`` sends
    none); other parts are form fields, counted and bounded but not kept.
    """

    def __init__(self, settings: Settings, max_files: int) -> None:
        self.settings = settings
        self.max_files = max_files
        self.uploads: list[Upload] = []  # every file part opened, in order (closed on error by the caller)
        self.kept: list[Upload] = []  # the file parts named file/files, complete
        self.fields = 0
        self.ended = False
        self._header, self._value = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._part: Upload | None = None
        self._field_bytes = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _begin(self) -> None:
        self._headers, self._part, self._field_bytes = {}, None, 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]
        if len(self._header) + len(self._value) > _MAX_PART_HEADER_BYTES:
            raise ApiError(400, "bad_multipart", f"a part header is longer than {_MAX_PART_HEADER_BYTES} bytes: "
                           "is the file name that long? Send names of at most a few thousand characters")

    def _header_end(self) -> None:
        self._headers[self._header.strip().lower()] = self._value.strip()
        self._header, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise ApiError(400, "bad_multipart", "malformed multipart body (a part without a name)")
        field = options[b"name"].decode("utf-8", "replace")
        if b"filename" not in options and field not in _FILE_FIELDS:  # `curl -F file=<x.wav` sends no filename
            self.fields += 1
            if self.fields > _MAX_FIELDS:
                raise ApiError(400, "bad_multipart", f"malformed multipart body (more than {_MAX_FIELDS} fields)")
            return
        if len(self.uploads) >= self.max_files:
            raise ApiError(413, "too_many_files", f"at most {self.max_files} file(s) per request")
        spool = tempfile.SpooledTemporaryFile(max_size=self.settings.spool_threshold_bytes)  # noqa: SIM115
        self._part = Upload(file=spool, filename=options.get(b"filename", b"").decode("utf-8", "replace") or "upload",
                            size=0, content_type=self._headers.get(b"content-type", b"").decode("latin-1")
                            or "application/octet-stream", field=field)
        self.uploads.append(self._part)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part is None:  # a form field: only bounded, never kept
            self._field_bytes += end - start
            if self._field_bytes > _MAX_FIELD_BYTES:
                raise ApiError(400, "bad_multipart", f"malformed multipart body (a field over {_MAX_FIELD_BYTES} "
                               "bytes)")
            return
        self._part.size += end - start
        if self._part.size > self.settings.max_upload_bytes:
            raise _too_large(self.settings.max_upload_bytes)
        self._part.file.write(data[start:end])

    def _part_end(self) -> None:
        if self._part is not None and self._part.field in _FILE_FIELDS:
            self._part.file.seek(0)
            self.kept.append(self._part)

    def _end(self) -> None:
        self.ended = True


def _boundary(request: Request) -> bytes:
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_multipart", "malformed multipart body (no boundary in the content type)")
    return boundary


async def _receive_multipart(request: Request, settings: Settings, *, limit: int, max_files: int) -> list[Upload]:
    receiver = _MultipartReceiver(settings, max_files)
    try:
        parser = MultipartParser(_boundary(request), receiver.callbacks(), max_header_size=_PARSER_HEADER_BYTES)
        async for chunk in _limited(request, settings, limit):
            parser.write(chunk)
        parser.finalize()
        if not receiver.ended:
            raise ApiError(400, "bad_multipart", "malformed multipart body (it ends before its closing boundary)")
        if not receiver.kept:
            raise ApiError(422, "missing_file", "no file: send the audio in a multipart field named 'file'")
    except MultipartParseError as exc:
        _close(receiver.uploads)
        raise ApiError(400, "bad_multipart", f"malformed multipart body ({exc})") from None
    except BaseException:
        _close(receiver.uploads)
        raise
    kept = {id(u) for u in receiver.kept}
    _close([u for u in receiver.uploads if id(u) not in kept])
    return receiver.kept


def _close(uploads: list[Upload]) -> None:
    for u in uploads:
        u.close()
