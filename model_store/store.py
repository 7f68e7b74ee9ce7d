"""A versioned, file-based model store.

Layout::

    <root>/<name>/v<N>/model.onnx      the model (model.tflite for a LiteRT model: the card's ``model_file``)
    <root>/<name>/v<N>/head.onnx       a head on the model's embedding, when the card has one (its own sha256)
    <root>/<name>/v<N>/card.json       its ModelCard (sha256 of the model file inside)
    <root>/<name>/v<N>/README.md       the card, for people
    <root>/<name>/production.json      pointer: {"version": N, "history": [...]}

Writes are atomic: a version is assembled in a hidden temp folder and renamed into place, and the
pointer is replaced with ``os.replace``. A crash leaves either the old state or the new one, never half
a version, and readers (a running service) never see a partial write. Registrations and promotions hold
an exclusive lock on ``<root>/<name>/.lock`` (``filelock``: works on every platform) so concurrent writers
cannot race for a version number. The bundled store is read-only (:mod:`model_store.locations`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import ValidationError

from .card import CARD_FILE, HEAD_FILE, MODEL_FILES, ModelCard, sha256_file
from .locations import POINTER_FILE, WRITE_BUNDLED_ENV, is_bundled

__all__ = ["POINTER_FILE", "ModelStore", "StoreError", "StoreErrorCode", "VerifiedModel", "load_folder",
           "verified_files"]

log = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"^v(\d+)$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class StoreErrorCode(StrEnum):
    NOT_FOUND = "model_not_found"
    NO_PRODUCTION = "no_production_version"
    CHECKSUM = "checksum_mismatch"
    BAD_CARD = "invalid_card"
    BAD_NAME = "invalid_model_name"
    NO_HISTORY = "nothing_to_roll_back"
    READ_ONLY = "read_only_store"


class StoreError(Exception):
    """A store operation that cannot be done, with a stable ``code``."""

    def __init__(self, code: StoreErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class VerifiedModel:
    """A model read from the store whose bytes matched its card's sha256.

    ``onnx_bytes`` are the very bytes that were hashed (the model file's: ONNX, or TFLite for a LiteRT
    card; the name predates LiteRT): load these (not the path) so a file swapped after the check cannot
    slip in. ``head_bytes`` are ``head.onnx``'s, verified against ``card.head.sha256``, when the card has a head.
    """

    card: ModelCard
    onnx_bytes: bytes
    path: Path
    head_bytes: bytes | None = None


def _read_checked(path: Path, expected: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(StoreErrorCode.NOT_FOUND, f"{path}: cannot read the model ({exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise StoreError(StoreErrorCode.CHECKSUM,
                         f"{path}: sha256 {digest[:12]}... does not match the card's {expected[:12] or '(none)'}...")
    return data


def verified_files(card: ModelCard, folder: str | Path) -> VerifiedModel:
    """The model file (and ``head.onnx`` for a card with a head) of a version folder, each checked against
    its sha256 in the card.

    Raises:
        StoreError: a file is missing or unreadable (``model_not_found``), or its sha256 differs
            (``checksum_mismatch``).
    """
    folder = Path(folder)
    data = _read_checked(folder / card.model_file, card.sha256)
    head = _read_checked(folder / card.head.file, card.head.sha256) if card.head is not None else None
    return VerifiedModel(card=card, onnx_bytes=data, path=folder / card.model_file, head_bytes=head)


def load_folder(folder: str | Path) -> VerifiedModel:
    """A version folder outside a store (``card.json`` and its files), verified like :meth:`ModelStore.load`.

    Raises:
        StoreError: no card (``model_not_found``), an invalid card, or files that do not match it.
    """
    folder = Path(folder)
    try:
        card = ModelCard.load(folder / CARD_FILE)
    except FileNotFoundError as exc:
        raise StoreError(StoreErrorCode.NOT_FOUND, f"{folder}: not a model folder ({exc})") from None
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise StoreError(StoreErrorCode.BAD_CARD, f"{folder / CARD_FILE}: invalid model card ({exc})") from None
    return verified_files(card, folder)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _input_text(card: ModelCard) -> str:
    fe = card.frontend
    if fe.input == "mel":
        return f"{fe.n_mels} mels x {fe.n_frames} frames"
    starts = ", ".join(f"{o / fe.sample_rate:g}" for o in fe.model_offsets)
    return (f"waveform: model windows of {fe.model_window_samples / fe.sample_rate:g} s at {starts} s in each "
            f"window, {fe.pool} of their probabilities")


def render_readme(card: ModelCard) -> str:
    """A human-readable README.md for a version folder."""
    fe = card.frontend
    lines = [
        f"# {card.name} v{card.version}",
        "",
        f"- Architecture: `{card.architecture}` ({card.precision}), output `{card.output_activation}`",
        f"- Created: {card.created_at.isoformat()}; parent version: {card.parent_version}",
        f"- Input: `{card.inputs[0].name}` {card.inputs[0].shape}; front end {fe.sample_rate} Hz, "
        f"{fe.window_s:g} s windows, {_input_text(card)}",
        f"- Runtime: {card.runtime}; sha256 of `{card.model_file}`: `{card.sha256}`",
        *([f"- Head: {card.head.kind} on `{card.embedding_output.name}` of {card.head.backbone.name} "
           f"v{card.head.backbone.version} ({card.head.backbone.architecture}); sha256 of `{card.head.file}`: "
           f"`{card.head.sha256}`"] if card.head else []),
        *([f"- License: {card.license}"] if card.license else []),
        *([f"- Source: {card.source.origin}, `{card.source.file}` (sha256 `{card.source.sha256}`)"]
          if card.source.origin else []),
        "",
        "## Metrics",
        "",
        *(f"- {k}: {v:.4f}" for k, v in sorted(card.metrics.items())),
        "",
        f"Computed on: {card.validation.metrics_from or 'unknown'}; checkpoint chosen by: "
        f"{card.validation.selected_by or 'unknown'} ({card.validation.monitor or '-'}).",
        *(f"- {kind}: {how}" for kind, how in card.validation.sets.items()),
        *(["", card.notes] if card.notes else []),
        "",
        "## Labels",
        "",
        "| code | common name |",
        "| --- | --- |",
        *(f"| {label.code} | {label.common_name} |" for label in card.labels),
        "",
    ]
    return "\n".join(lines)


class ModelStore:
    """Versioned models under one root folder.

    Args:
        root (str | Path): the store's folder; created on first registration.

    Example:
        >>> store = ModelStore("model_store/default")
        >>> store.production("birds")
        1
        >>> model = store.load("birds")            # verified against card.sha256
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Model names in the store."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def versions(self, name: str) -> list[int]:
        """Registered versions of ``name``, ascending."""
        folder = self._model_dir(name)
        if not folder.is_dir():
            return []
        found = []
        for p in folder.iterdir():
            m = _VERSION_DIR.match(p.name)
            if m and p.is_dir():
                found.append(int(m.group(1)))
        return sorted(found)

    def version_dir(self, name: str, version: int) -> Path:
        return self._model_dir(name) / f"v{int(version)}"

    def card(self, name: str, version: int | None = None) -> ModelCard:
        """The card of a version (default: production), without checking the ONNX file."""
        version = self._resolve(name, version)
        path = self.version_dir(name, version) / CARD_FILE
        if not path.is_file():
            raise StoreError(StoreErrorCode.NOT_FOUND, f"{name} v{version} is not in the store at {self.root}")
        try:
            return ModelCard.load(path)
        except (ValidationError, ValueError, OSError) as exc:
            raise StoreError(StoreErrorCode.BAD_CARD, f"{path}: invalid model card ({exc})") from None

    def load(self, name: str, version: int | None = None) -> VerifiedModel:
        """Read a version (default: production) and verify its files' bytes (the model file, and ``head.onnx`` for a
        card with a head) against the card's sha256.

        Raises:
            StoreError: not found, invalid card, or checksum mismatch.
        """
        version = self._resolve(name, version)
        card = self.card(name, version)
        model = verified_files(card, self.version_dir(name, version))
        if card.version != version:
            raise StoreError(StoreErrorCode.BAD_CARD, f"{model.path.parent}: card says version {card.version}")
        return model

    def production(self, name: str) -> int | None:
        """The production version of ``name``, or None when none is marked."""
        pointer = self._read_pointer(name)
        return pointer["version"] if pointer else None

    def history(self, name: str) -> list[int]:
        """Production versions in the order they were promoted (last = current)."""
        pointer = self._read_pointer(name)
        return list(pointer["history"]) if pointer else []

    # -- writing ---------------------------------------------------------------------------------
    def register(self, card: ModelCard, model_path: str | Path, *, promote: bool = False,
                 extra_files: dict[str, str | Path] | None = None, head_path: str | Path | None = None) -> ModelCard:
        """Add a new version atomically and return its card (with ``version`` and ``sha256`` set).

        Args:
            card (ModelCard): the model's card; ``version`` and ``sha256`` (and ``head.sha256``) are filled in here.
            model_path (str | Path): the model file to store (copied as the card's ``model_file``: ONNX, or
                TFLite for a LiteRT card).
            promote (bool): also mark the new version as production. (Default: ``False``)
            extra_files (dict, optional): more files for the version folder, ``{name: source path}``
                (e.g. ``metrics.csv``, ``curves.png``).
            head_path (str | Path, optional): the head's ONNX file, for a card with a ``head`` (and only then).
        """
        name = card.name
        self._check_name(name)
        self.check_writable()
        if (card.head is None) != (head_path is None):
            raise ValueError("a head file goes with a card that has a head, and only with one")
        folder = self._model_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=folder))
        try:
            shutil.copyfile(model_path, tmp / card.model_file)
            for fname, src in (extra_files or {}).items():
                if Path(fname).name != fname or fname in (*MODEL_FILES.values(), HEAD_FILE, CARD_FILE, "README.md"):
                    raise ValueError(f"extra file name {fname!r} is not allowed")
                shutil.copyfile(src, tmp / fname)
            update: dict = {"sha256": sha256_file(tmp / card.model_file)}
            if card.head is not None:
                shutil.copyfile(head_path, tmp / HEAD_FILE)
                update["head"] = card.head.model_copy(update={"sha256": sha256_file(tmp / HEAD_FILE)})
            digest = update["sha256"]
            with self._locked(name):
                version = max(self.versions(name), default=0) + 1
                final = card.model_copy(update={"version": version, **update})
                final = ModelCard.model_validate(final.model_dump())  # re-validate the updated copy
                final.save(tmp / CARD_FILE)
                (tmp / "README.md").write_text(render_readme(final), encoding="utf-8")
                for p in tmp.iterdir():
                    with open(p, "rb") as f:
                        os.fsync(f.fileno())
                os.rename(tmp, self.version_dir(name, version))
                _fsync_dir(folder)
                log.info("registered %s v%d (sha256 %s)", name, version, digest[:12])
                if promote:
                    self._promote_locked(name, version)
            return final
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def promote(self, name: str, version: int) -> None:
        """Mark ``version`` as production (atomic pointer swap). The version must load and verify."""
        self.load(name, version)
        with self._locked(name):
            self._promote_locked(name, version)

    def rollback(self, name: str) -> int:
        """Point production back to the version promoted before the current one; returns it."""
        with self._locked(name):
            history = self.history(name)
            if len(history) < 2:
                raise StoreError(StoreErrorCode.NO_HISTORY,
                                 f"{name}: no earlier production version to roll back to")
            history.pop()
            previous = history[-1]
            self._write_pointer(name, previous, history)
            log.info("rolled %s back to v%d", name, previous)
            return previous

    def cleanup(self, name: str) -> int:
        """Remove leftovers of interrupted registrations; returns how many were removed."""
        self.check_writable()
        removed = 0
        for p in self._model_dir(name).glob(".incoming-*"):
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
        return removed

    # -- internals -------------------------------------------------------------------------------
    def _model_dir(self, name: str) -> Path:
        self._check_name(name)
        return self.root / name

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.match(name or ""):
            raise StoreError(StoreErrorCode.BAD_NAME,
                             f"invalid model name {name!r}: use lower-case letters, digits, '-' and '_'")

    def _resolve(self, name: str, version: int | None) -> int:
        if version is not None:
            return int(version)
        current = self.production(name)
        if current is None:
            if not self.versions(name):
                raise StoreError(StoreErrorCode.NOT_FOUND, f"no model named {name!r} in the store at {self.root}")
            raise StoreError(StoreErrorCode.NO_PRODUCTION, f"{name}: no version is marked as production")
        return current

    def _read_pointer(self, name: str) -> dict | None:
        path = self._model_dir(name) / POINTER_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {"version": int(data["version"]), "history": [int(v) for v in data.get("history", [])]}
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(StoreErrorCode.BAD_CARD, f"{path}: unreadable production pointer ({exc})") from None

    def _write_pointer(self, name: str, version: int, history: list[int]) -> None:
        payload = {"version": version, "history": history[-50:],
                   "updated_at": datetime.now(UTC).isoformat()}
        _write_atomic(self._model_dir(name) / POINTER_FILE, json.dumps(payload, indent=2) + "\n")

    def _promote_locked(self, name: str, version: int) -> None:
        if version not in self.versions(name):
            raise StoreError(StoreErrorCode.NOT_FOUND, f"{name} v{version} is not in the store")
        history = [v for v in self.history(name) if v != version] + [version]
        self._write_pointer(name, version, history)
        log.info("promoted %s v%d to production", name, version)

    def check_writable(self) -> None:
        """Raise ``read_only_store`` for the bundled store (:mod:`model_store.locations`)."""
        if is_bundled(self.root) and os.environ.get(WRITE_BUNDLED_ENV) != "1":
            raise StoreError(StoreErrorCode.READ_ONLY, f"{self.root} is the bundled store, which is read-only: write "
                                                       "to the user store (the default) or give --store")

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        from filelock import FileLock

        self.check_writable()
        folder = self._model_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / ".lock"):
            yield
