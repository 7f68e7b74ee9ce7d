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
Either way the result must match PyTorch on real windows, or :class:`ExportError` is raised and nothing is
left at the output path.

Parity (:class:`ExportConfig`): the probabilities (sigmoid of the logits, what the service returns) must agree
within an absolute ``prob_atol``; logits and embeddings element-wise within ``atol + rtol * |PyTorch|``.
Logits are unbounded and float32 rounding grows with their size: a correct fine-tuned model with logits
of tens differs between ONNX Runtime and PyTorch by ~1e-4 (BatchNorm folded into Conv, other summation
orders), so a purely absolute bound refuses it, while a wrong weight is off by orders of magnitude more.

Ensembles: ``export_onnx([m1, m2, ...])`` writes K models as one graph with the same signature; its
``logits`` are ``logit(mean_k sigmoid(logits_k))`` (computed in the log domain, finite for any logits), so
the card's ``output_activation: sigmoid`` gives the mean probability, and its ``embedding`` is the
concatenation of the members' embeddings in member order. The reference for the parity check is the mean
of the PyTorch members' sigmoids.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from soundscape.audio import AudioError, Frontend, FrontendConfig, decode

from .checkpoint import Checkpoint

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENSEMBLE_COMBINE",
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "audio_files",
    "check_ensemble_members",
    "combine_members",
    "ensemble_architecture",
    "export_onnx",
    "export_onnx_bytes",
    "exportable_model",
    "model_from_checkpoint",
    "real_images",
    "real_windows",
]

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "embedding")
ENSEMBLE_COMBINE = "logits = logit(mean of the members' sigmoids); embedding = concatenation in member order"


class ExportError(RuntimeError):
    """The model could not be exported, or the ONNX graph does not match PyTorch."""


class ExportConfig(BaseModel):
    """How to export and check a model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    opset: int = Field(18, ge=17, le=21, description="ONNX opset.")
    exporter: Literal["auto", "dynamo", "torchscript"] = Field(
        "auto", description="'dynamo' (torch.export), 'torchscript' (legacy), or dynamo falling back to it.")
    prob_atol: float = Field(
        1e-4, gt=0, description="Largest allowed |ONNX - PyTorch| on the probabilities (sigmoid of the logits).")
    atol: float = Field(
        1e-4, gt=0, description="Absolute part of the logits and embedding tolerance: every element must satisfy "
                                "|ONNX - PyTorch| <= atol + rtol * |PyTorch|.")
    rtol: float = Field(
        1e-3, ge=0, description="Relative part of the logits and embedding tolerance (float32 rounding grows with "
                                "the value; a wrong weight is off by far more).")
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
    max_abs_diff_probabilities: float = 0.0
    max_rel_diff_logits: float = 0.0
    max_rel_diff_embedding: float = 0.0
    tolerance_used: float = 0.0
    members: int = 1
    member_embedding_dims: tuple[int, ...] = ()

    def parity(self) -> dict[str, float | int | str]:
        """The measured differences, for the card's ``training.export``.

        ``max_rel_diff_*`` is the largest ``|ONNX - PyTorch| / (|PyTorch| + atol / rtol)``: the relative
        difference, with values near zero judged against ``atol`` (the check accepts exactly when it is at
        most ``rtol``); ``tolerance_used`` is the largest ``|diff| / allowed`` over the three tensors (at most 1
        when accepted).
        """
        return {"exporter": self.exporter, "parity_windows": self.parity_windows,
                "max_abs_diff_logits": self.max_abs_diff_logits, "max_rel_diff_logits": self.max_rel_diff_logits,
                "max_abs_diff_embedding": self.max_abs_diff_embedding,
                "max_rel_diff_embedding": self.max_rel_diff_embedding,
                "max_abs_diff_probabilities": self.max_abs_diff_probabilities,
                "tolerance_used": self.tolerance_used}


@dataclass(frozen=True)
class _Diff:
    """How one output tensor of ONNX Runtime compares with PyTorch's."""

    name: str
    max_abs: float
    max_rel: float
    ratio: float  # largest |diff| / allowed; inf where ONNX gave NaN or inf
    index: tuple[int, ...]
    got: float
    ref: float
    allowed: float
    rule: str
    batch_of_one_row: int | None = None  # rows from here on are the batch-of-one run's

    def describe(self) -> str:
        index, note = self.index, ""
        if self.batch_of_one_row is not None and index and index[0] >= self.batch_of_one_row:
            index, note = (index[0] - self.batch_of_one_row, *index[1:]), " in the batch-of-one run"
        where = ", ".join(map(str, index))
        return (f"{self.name}[{where}]{note} = {self.got:.6g} vs PyTorch {self.ref:.6g} "
                f"(|diff| {abs(self.got - self.ref):.3g} > allowed {self.allowed:.3g} = {self.rule})")


def _compare(name: str, got: np.ndarray, ref: np.ndarray, *, atol: float, rtol: float,
             atol_name: str = "atol", batch_of_one_row: int | None = None) -> _Diff:
    """Element-wise ``|got - ref| <= atol + rtol * |ref|``; the worst element and the largest differences."""
    got64, ref64 = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    diff = np.abs(got64 - ref64)
    allowed = atol + rtol * np.abs(ref64)
    with np.errstate(invalid="ignore"):
        ratio = np.where(np.isfinite(diff), diff / allowed, np.inf)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    finite = bool(np.isfinite(diff).all())
    rule = f"{atol_name} {atol:g}" + (f" + rtol {rtol:g} * |{ref64[worst]:.4g}|" if rtol else "")
    return _Diff(name=name, max_abs=float(diff.max()) if finite else float("nan"),
                 max_rel=float((diff / (np.abs(ref64) + (atol / rtol if rtol else 0.0))).max()) if finite and rtol
                 else float("nan") if not finite else 0.0,
                 ratio=float(ratio[worst]), index=worst, got=float(got64[worst]), ref=float(ref64[worst]),
                 allowed=float(allowed[worst]), rule=rule, batch_of_one_row=batch_of_one_row)


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


def real_windows(frontend: FrontendConfig, sources: Sequence[str | Path], n: int, *, seed: int = 0) -> np.ndarray:
    """Real audio windows ``(m, window_samples)``, ``1 <= m <= n``, cut by the serving front end.

    Windows are taken round-robin over the files (at most ``n`` in all), so short lists of long
    soundscapes and long lists of short clips both give varied inputs.

    Args:
        frontend (FrontendConfig): the model's front end (rate and windows).
        sources (Sequence[str | Path]): audio files or folders.
        n (int): number of windows wanted.
        seed (int): order in which files are visited. (Default: ``0``)

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
    return np.stack(order[:n])


def real_images(frontend: FrontendConfig, sources: Sequence[str | Path], n: int, *, seed: int = 0) -> np.ndarray:
    """Log-mel images ``(m, 1, n_mels, n_frames)`` of :func:`real_windows`, made by the serving front end."""
    return Frontend(frontend)(real_windows(frontend, sources, n, seed=seed))[:, None]


def model_from_checkpoint(ckpt: Checkpoint | Mapping[str, Any]) -> torch.nn.Module:
    """Rebuild the trained model of a checkpoint in eval mode, export-friendly (a raw dict of
    :func:`training.checkpoint.load_checkpoint` is accepted too).

    Built under ``timm.layers.set_layer_config(exportable=True)`` so layers pick their
    export-friendly implementations; the weights are the checkpoint's, never downloaded or re-initialised
    from a pretrained file.
    """
    ckpt = Checkpoint.of(ckpt)
    return exportable_model(ckpt.arch, ckpt.model_kwargs, ckpt.state_dict)


def exportable_model(arch: str, model_kwargs: Mapping[str, Any], state_dict: Mapping[str, Any]) -> torch.nn.Module:
    """A timm model built export-friendly (see :func:`model_from_checkpoint`) with the given weights, in eval mode."""
    from timm.layers import set_layer_config

    from training.models import create_model

    kwargs = {k: v for k, v in model_kwargs.items() if k not in ("pretrained", "checkpoint")}
    with set_layer_config(exportable=True):
        model = create_model(arch, **kwargs)
    model.load_state_dict(state_dict)
    return model.eval()


def ensemble_architecture(archs: Sequence[str]) -> str:
    """The card's architecture of an ensemble, e.g. ``ensemble[tf_efficientnet_lite0,tf_efficientnet_lite0]``."""
    return f"ensemble[{','.join(archs)}]"


def check_ensemble_members(ckpts: Sequence[Checkpoint | Mapping[str, Any]], names: Sequence[str] | None = None) -> None:
    """Refuse an ensemble whose members do not share labels (same codes, same order) and front end.

    Args:
        ckpts (Sequence[Checkpoint]): training checkpoints (or their raw dicts), at least two.
        names (Sequence[str], optional): how to call them in messages (e.g. their paths).

    Raises:
        ValueError: fewer than two members, or a member with other labels or another front end.
    """
    names = list(names or [f"member {i}" for i in range(len(ckpts))])
    if len(ckpts) < 2:
        raise ValueError(f"an ensemble needs at least two checkpoints, got {len(ckpts)}")
    ckpts = [Checkpoint.of(c) for c in ckpts]
    codes = [c.codes for c in ckpts]
    frontends = [c.frontend for c in ckpts]
    for i in range(1, len(ckpts)):
        if codes[i] != codes[0]:
            how = "in another order" if sorted(codes[i]) == sorted(codes[0]) else (
                f"{sorted(set(codes[i]) ^ set(codes[0]))[:5]} not in both")
            raise ValueError(f"ensemble members must share labels: {names[i]} has {len(codes[i])} labels, "
                             f"{names[0]} {len(codes[0])} ({how})")
        if frontends[i] != frontends[0]:
            changed = {k: (v, frontends[i].model_dump()[k]) for k, v in frontends[0].model_dump().items()
                       if frontends[i].model_dump()[k] != v}
            raise ValueError(f"ensemble members must share the front end: {names[i]} differs from {names[0]} "
                             f"in {changed}")


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


def combine_members(logits: Sequence[torch.Tensor], embeddings: Sequence[torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ensemble's outputs from its members': ``logit(mean_k sigmoid(z_k))`` and the concatenated embeddings.

    ``log p = logsumexp_k(-softplus(-z_k)) - log K`` and ``log(1 - p) = logsumexp_k(-softplus(z_k)) - log K``,
    so ``logit(p)`` is the difference of the two log-sum-exps: no float32 ``p`` that rounds to 0 or 1, so
    finite logits even when every member is sure.
    """
    import torch
    from torch.nn.functional import softplus

    z = torch.stack(list(logits))  # (K, B, C)
    return (torch.logsumexp(-softplus(-z), dim=0) - torch.logsumexp(-softplus(z), dim=0),
            torch.cat(list(embeddings), dim=1))


def _ensemble(members: Sequence[torch.nn.Module]) -> torch.nn.Module:
    import torch

    class Ensemble(torch.nn.Module):
        def __init__(self, wrapped: Sequence[torch.nn.Module]) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(wrapped)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            outs = [m(image) for m in self.members]
            return combine_members([o[0] for o in outs], [o[1] for o in outs])

    return Ensemble([_wrapper(m) for m in members]).eval()


REFERENCE_BATCH = 4
"""Windows per PyTorch pass of the parity reference: eager float32 activations of 16 lite0 windows at 128 x 313
took ~190 MB at once, on top of whatever the process (a training run about to publish) already holds."""


def _reference(members: Sequence[torch.nn.Module], images: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's logits, embeddings and probabilities (the mean of the members' sigmoids) on ``images``, run
    :data:`REFERENCE_BATCH` windows at a time."""
    import torch

    x = torch.from_numpy(images)
    with torch.no_grad():
        outs = []
        for m in members:
            parts = [_wrapper(m)(x[a : a + REFERENCE_BATCH]) for a in range(0, len(x), REFERENCE_BATCH)]
            outs.append((torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])))
        logits, emb = combine_members([o[0] for o in outs], [o[1] for o in outs]) if len(outs) > 1 else outs[0]
        probs = torch.stack([torch.sigmoid(o[0].double()) for o in outs]).mean(0)
    return {"logits": logits.numpy(), "embedding": emb.numpy(), "probabilities": probs.numpy(),
            "member_dims": np.array([o[1].shape[1] for o in outs])}


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
    opts.enable_cpu_mem_arena = False  # a check run once: its buffers go back when it ends
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if names != [INPUT_NAME]:
        raise ExportError(f"{path}: graph inputs are {names}, expected [{INPUT_NAME!r}]")
    return session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def export_onnx(model: torch.nn.Module | Sequence[torch.nn.Module], path: str | Path, images: np.ndarray,
                cfg: ExportConfig | None = None) -> ExportResult:
    """Export ``model`` (or an ensemble of models) to ONNX and check it against PyTorch on ``images``.

    Args:
        model (torch.nn.Module | Sequence[torch.nn.Module]): a timm classifier, ``(B, 1, n_mels, T)`` -> logits
            ``(B, C)``; or several sharing labels and input, exported as one ensemble graph (see the module
            docstring).
        path (str | Path): the ``.onnx`` file to write.
        images (np.ndarray): ``(B, 1, n_mels, T)`` float32 real inputs for the check (see
            :func:`real_images`); checked whole and as a batch of one, so the batch axis is proven dynamic.
        cfg (ExportConfig, optional): exporter, opset and tolerances.

    Returns:
        ExportResult: the file, the exporter used and the largest differences seen.

    Raises:
        ExportError: the exporter failed, or ONNX Runtime differs from PyTorch by more than the tolerances
            (the file is deleted; the message names the worst tensor and element).
        ValueError: ``images`` has the wrong shape, or an empty list of models.
    """
    import torch

    cfg = cfg or ExportConfig()
    path = Path(path)
    members = [model] if isinstance(model, torch.nn.Module) else list(model)
    if not members:
        raise ValueError("no model to export")
    members = [m.eval() for m in members]
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] != 1 or len(images) < 1:
        raise ValueError(f"images must be (batch, 1, n_mels, n_frames), got {images.shape}")
    wrapped = _wrapper(members[0]) if len(members) == 1 else _ensemble(members)
    what = type(members[0]).__name__ if len(members) == 1 else f"an ensemble of {len(members)} models"
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
        raise ExportError(f"ONNX export of {what} failed ({type(exc).__name__}: {exc})") from exc
    seconds = time.perf_counter() - t0

    ref = _reference(members, images)
    try:
        logits, emb = _ort_outputs(path, images)
        one_logits, _ = _ort_outputs(path, images[:1])
    except ExportError:
        path.unlink(missing_ok=True)
        raise
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ExportError(f"{path}: ONNX Runtime cannot run the exported model ({exc})") from exc
    if logits.shape != ref["logits"].shape or emb.shape != ref["embedding"].shape:
        path.unlink(missing_ok=True)
        raise ExportError(f"{path}: ONNX output shapes {logits.shape}, {emb.shape} differ from PyTorch's "
                          f"{ref['logits'].shape}, {ref['embedding'].shape}")
    all_logits = np.concatenate([logits, one_logits])  # the batch of one is checked too
    diffs = [
        _compare("logits", all_logits, np.concatenate([ref["logits"], ref["logits"][:1]]),
                 atol=cfg.atol, rtol=cfg.rtol, batch_of_one_row=len(images)),
        _compare("embedding", emb, ref["embedding"], atol=cfg.atol, rtol=cfg.rtol),
        _compare("probabilities", _sigmoid64(all_logits),
                 np.concatenate([ref["probabilities"], ref["probabilities"][:1]]), atol=cfg.prob_atol, rtol=0.0,
                 atol_name="prob_atol", batch_of_one_row=len(images)),
    ]
    d = {x.name: x for x in diffs}
    worst = max(diffs, key=lambda x: x.ratio)
    measured = (f"max |diff| logits {d['logits'].max_abs:.3g} (rel {d['logits'].max_rel:.3g}), embedding "
                f"{d['embedding'].max_abs:.3g} (rel {d['embedding'].max_rel:.3g}), probabilities "
                f"{d['probabilities'].max_abs:.3g}")
    if not worst.ratio <= 1.0:  # also catches NaN
        path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree on {len(images)} real windows (exporter {used}): worst is "
            f"{worst.describe()}; {measured}; nothing was written"
        )
    log.info("exported %s (%s) with %s in %.1f s; parity on %d windows: %s (%.0f%% of the tolerance)",
             path.name, what, used, seconds, len(images), measured, 100 * worst.ratio)
    return ExportResult(path=path, exporter=used, n_labels=int(logits.shape[1]), embedding_dim=int(emb.shape[1]),
                        max_abs_diff_logits=d["logits"].max_abs, max_abs_diff_embedding=d["embedding"].max_abs,
                        parity_windows=len(images), seconds=seconds,
                        max_abs_diff_probabilities=d["probabilities"].max_abs,
                        max_rel_diff_logits=d["logits"].max_rel, max_rel_diff_embedding=d["embedding"].max_rel,
                        tolerance_used=worst.ratio, members=len(members),
                        member_embedding_dims=tuple(int(x) for x in ref["member_dims"]))


def export_onnx_bytes(model: torch.nn.Module | Sequence[torch.nn.Module], images: np.ndarray,
                      cfg: ExportConfig | None = None) -> tuple[bytes, ExportResult]:
    """:func:`export_onnx` kept in memory: the checked graph's bytes and the export report.

    The file goes through a temporary folder (the exporter and the parity check work on files) and is
    deleted before returning; ``ExportResult.path`` names that deleted file.

    Raises:
        ExportError: as :func:`export_onnx`.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="soundscape-export-") as tmp:
        result = export_onnx(model, Path(tmp) / "model.onnx", images, cfg)
        return result.path.read_bytes(), result
