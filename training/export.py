"""Checkpoint -> ONNX, checked against PyTorch on real audio.

The exported graph has one input and two outputs, all with a dynamic batch axis:

- ``image`` ``(batch, 1, n_mels, n_frames)`` float32: the serving front end's log-mel images;
- ``logits`` ``(batch, n_labels)``: the classifier output (the service applies the sigmoid);
- ``embedding`` ``(batch, dim)``: the pooled penultimate features (``forward_head(pre_logits=True)``),
  used by batch analysis ``--embeddings``.

Exporter choice (torch 2.11): ``torch.onnx.export`` defaults to ``dynamo=True`` (torch.export + onnxscript),
which also runs the onnxscript optimiser (constant folding, BatchNorm folded into Conv) but writes the
weights to a separate ``.onnx.data`` file unless ``external_data=False``. We use it with
``external_data=False`` so the store keeps one self-contained file; architectures that ``torch.export``
cannot trace fall back to the TorchScript exporter (``do_constant_folding=True``) in ``"auto"`` mode.
Either way the result must match PyTorch within ``atol`` on real windows, or :class:`ExportError` is
raised and nothing is left at the output path.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from soundscape.audio import AudioError, Frontend, FrontendConfig, decode

if TYPE_CHECKING:
    import torch

__all__ = [
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "audio_files",
    "export_onnx",
    "model_from_checkpoint",
    "real_images",
]

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "embedding")


class ExportError(RuntimeError):
    """The model could not be exported, or the ONNX graph does not match PyTorch."""


class ExportConfig(BaseModel):
    """How to export and check a model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    opset: int = Field(18, ge=17, le=21, description="ONNX opset.")
    exporter: Literal["auto", "dynamo", "torchscript"] = Field(
        "auto", description="'dynamo' (torch.export), 'torchscript' (legacy), or dynamo falling back to it.")
    atol: float = Field(1e-4, gt=0, description="Largest allowed |ONNX - PyTorch| on logits and embeddings.")
    parity_windows: int = Field(16, ge=2, description="Real audio windows used for the parity check.")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote and measured."""

    path: Path
    exporter: str
    n_labels: int
    embedding_dim: int
    max_abs_diff_logits: float
    max_abs_diff_embedding: float
    parity_windows: int
    seconds: float


def audio_files(paths: Sequence[str | Path]) -> list[Path]:
    """Audio files named by ``paths``: files as given, folders searched recursively (sorted)."""
    from training.data import list_audio_files

    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(list_audio_files(p))
        elif p.is_file():
            found.append(p)
        else:
            raise ValueError(f"audio path {p} does not exist")
    return found


def real_images(frontend: FrontendConfig, sources: Sequence[str | Path], n: int, *, seed: int = 0) -> np.ndarray:
    """Log-mel images of real audio windows, made by the serving front end.

    Windows are taken round-robin over the files (at most ``n`` in all), so short lists of long
    soundscapes and long lists of short clips both give varied inputs.

    Args:
        frontend (FrontendConfig): the model's front end.
        sources (Sequence[str | Path]): audio files or folders.
        n (int): number of windows wanted.
        seed (int): order in which files are visited. (Default: ``0``)

    Returns:
        np.ndarray: ``(m, 1, n_mels, n_frames)`` float32, ``1 <= m <= n``.

    Raises:
        ValueError: no readable audio among ``sources``.
    """
    files = audio_files(sources)
    rng = np.random.default_rng(seed)
    files = [files[i] for i in rng.permutation(len(files))]
    fe = Frontend(frontend)
    per_file: list[np.ndarray] = []
    for path in files:
        if sum(len(w) for w in per_file) >= n:
            break
        try:
            audio = decode(path, sample_rate=frontend.sample_rate)
        except AudioError as exc:
            log.warning("skipping %s for real inputs: %s", path, exc)
            continue
        per_file.append(fe.windows(audio).samples)
    if not per_file:
        raise ValueError(f"no readable audio among {[str(s) for s in sources]}")
    # round-robin: window 0 of every file, then window 1, ...
    order = [w[i] for i in range(max(len(w) for w in per_file)) for w in per_file if i < len(w)]
    windows = np.stack(order[:n])
    return fe(windows)[:, None]


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the trained model of a checkpoint (agreed format 1) in eval mode, export-friendly.

    Built under ``timm.layers.set_layer_config(exportable=True)`` so layers pick their
    export-friendly implementations; the weights are the checkpoint's, never downloaded or re-initialised
    from a pretrained file.
    """
    from timm.layers import set_layer_config

    from training.models import create_model

    kwargs = {k: v for k, v in dict(ckpt.get("model_kwargs") or {}).items()
              if k not in ("pretrained", "checkpoint")}
    with set_layer_config(exportable=True):
        model = create_model(ckpt["arch"], **kwargs)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def _wrapper(model: torch.nn.Module) -> torch.nn.Module:
    import torch

    class LogitsAndEmbedding(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            embedding = self.inner.forward_head(self.inner.forward_features(image), pre_logits=True)
            return self.inner.get_classifier()(embedding), embedding

    return LogitsAndEmbedding(model).eval()


def _export(wrapped: torch.nn.Module, example: torch.Tensor, path: Path, exporter: str, opset: int) -> None:

    quiet = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [q.level for q in quiet]
    for q in quiet:  # the optimiser logs every pass at INFO
        q.setLevel(logging.WARNING)
    try:
        _run_exporter(wrapped, example, path, exporter, opset)
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)


def _run_exporter(wrapped: torch.nn.Module, example: torch.Tensor, path: Path, exporter: str, opset: int) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation chatter; parity below is the real check
        if exporter == "dynamo":
            torch.onnx.export(
                wrapped, (example,), str(path), dynamo=True, external_data=False, optimize=True,
                opset_version=opset, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False,
            )
        else:
            torch.onnx.export(
                wrapped, (example,), str(path), dynamo=False, do_constant_folding=True,
                opset_version=opset, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)},
            )


def _ort_outputs(path: Path, images: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if names != [INPUT_NAME]:
        raise ExportError(f"{path}: graph inputs are {names}, expected [{INPUT_NAME!r}]")
    return session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})


def export_onnx(model: torch.nn.Module, path: str | Path, images: np.ndarray,
                cfg: ExportConfig | None = None) -> ExportResult:
    """Export ``model`` to ONNX and check it against PyTorch on ``images``.

    Args:
        model (torch.nn.Module): a timm classifier, ``(B, 1, n_mels, T)`` -> logits ``(B, C)``.
        path (str | Path): the ``.onnx`` file to write.
        images (np.ndarray): ``(B, 1, n_mels, T)`` float32 real inputs for the check (see
            :func:`real_images`); checked whole and as a batch of one, so the batch axis is proven dynamic.
        cfg (ExportConfig, optional): exporter, opset and tolerance.

    Returns:
        ExportResult: the file, the exporter used and the largest differences seen.

    Raises:
        ExportError: the exporter failed, or ONNX Runtime differs from PyTorch by more than ``cfg.atol``
            (the file is deleted).
        ValueError: ``images`` has the wrong shape.
    """
    import torch

    cfg = cfg or ExportConfig()
    path = Path(path)
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] != 1 or len(images) < 1:
        raise ValueError(f"images must be (batch, 1, n_mels, n_frames), got {images.shape}")
    wrapped = _wrapper(model.eval())
    # a batch of 2 as the example, so torch.export does not specialise the batch axis to 1
    example = torch.from_numpy(np.concatenate([images, images])[:2].copy())
    t0 = time.perf_counter()
    used = cfg.exporter
    try:
        if cfg.exporter in ("auto", "dynamo"):
            try:
                used = "dynamo"
                _export(wrapped, example, path, "dynamo", cfg.opset)
            except Exception as exc:  # torch.export raises many types for untraceable code
                if cfg.exporter == "dynamo":
                    raise
                log.warning("dynamo export failed (%s: %s); falling back to the TorchScript exporter",
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                used = "torchscript"
                _export(wrapped, example, path, "torchscript", cfg.opset)
        else:
            _export(wrapped, example, path, "torchscript", cfg.opset)
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ExportError(f"ONNX export of {type(model).__name__} failed ({type(exc).__name__}: {exc})") from exc
    seconds = time.perf_counter() - t0

    with torch.no_grad():
        ref_logits, ref_emb = (t.numpy() for t in wrapped(torch.from_numpy(images)))
    try:
        logits, emb = _ort_outputs(path, images)
        one_logits, _ = _ort_outputs(path, images[:1])
    except ExportError:
        path.unlink(missing_ok=True)
        raise
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ExportError(f"{path}: ONNX Runtime cannot run the exported model ({exc})") from exc
    if logits.shape != ref_logits.shape or emb.shape != ref_emb.shape:
        path.unlink(missing_ok=True)
        raise ExportError(f"{path}: ONNX output shapes {logits.shape}, {emb.shape} differ from PyTorch's "
                          f"{ref_logits.shape}, {ref_emb.shape}")
    d_logits = float(max(np.abs(logits - ref_logits).max(), np.abs(one_logits - ref_logits[:1]).max()))
    d_emb = float(np.abs(emb - ref_emb).max())
    if not (d_logits <= cfg.atol and d_emb <= cfg.atol):  # also catches NaN
        path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree on {len(images)} real windows: max |diff| logits {d_logits:.3g}, "
            f"embedding {d_emb:.3g} > atol {cfg.atol:g} (exporter {used}); nothing was written"
        )
    log.info("exported %s with %s in %.1f s; parity on %d windows: logits %.2g, embedding %.2g",
             path.name, used, seconds, len(images), d_logits, d_emb)
    return ExportResult(path=path, exporter=used, n_labels=int(logits.shape[1]), embedding_dim=int(emb.shape[1]),
                        max_abs_diff_logits=d_logits, max_abs_diff_embedding=d_emb,
                        parity_windows=len(images), seconds=seconds)
