"""Factories for real, tiny ONNX models and stores (no torch needed).

Mel models: image ``(N, 1, n_mels, T)`` -> mean over time -> ``(N, n_mels)`` embedding -> linear ->
``(N, C)`` logits. Waveform models: samples ``(N, 2 s at 16 kHz)`` -> each class's energy at its own
frequency (a fixed cos/sin matrix) -> ``(N, C)`` embedding -> ``log10(energy) + 3`` logits, computed in numpy
by :func:`tiny_waveform_logits`. Weights are seeded, so two calls with the same seed give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_store import Label, ModelCard, ModelStore, TensorSpec
from soundscape.audio import FrontendConfig

DEFAULT_CODES = ["amered", "bkcchi", "comrav", "houspa"]


def tiny_frontend(**overrides) -> FrontendConfig:
    """A small, fast front end for tests: 16 kHz, 32 mels."""
    params = dict(sample_rate=16000, n_fft=512, hop_length=256, n_mels=32, fmin=50.0, fmax=8000.0)
    params.update(overrides)
    return FrontendConfig(**params)


def write_tiny_onnx(path: str | Path, frontend: FrontendConfig, n_labels: int, *, seed: int = 0,
                    input_name: str = "image", n_frames: int | None = None) -> Path:
    """Write a tiny linear ONNX model (opset 17) for ``frontend``'s image shape."""
    rng = np.random.default_rng(seed)
    m, t = frontend.n_mels, n_frames or frontend.n_frames
    w = rng.normal(0, 0.5, size=(m, n_labels)).astype(np.float32)
    b = rng.normal(0, 0.1, size=(n_labels,)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["image_in"], ["pooled"], axes=[1, 3], keepdims=0),
        helper.make_node("Identity", ["pooled"], ["embedding"]),
        helper.make_node("MatMul", ["pooled", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], ["image_in"]), *nodes],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 1, m, t])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_labels]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", m])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path


def tiny_waveform_frontend(**overrides) -> FrontendConfig:
    """A waveform front end for tests: 16 kHz, 2-s model windows in 5-s windows (starts 0, 2 and 3 s)."""
    params = dict(input="waveform", sample_rate=16000, fmax=8000.0, model_window_s=2.0)
    params.update(overrides)
    return FrontendConfig(**params)


def _waveform_basis(frontend: FrontendConfig, n_labels: int, seed: int) -> np.ndarray:
    """``(samples, 2 * n_labels)``: cos then sin at each class's frequency, scaled so a sine of amplitude a
    has energy a**2."""
    freqs = 400.0 * 1.6 ** ((np.arange(n_labels) + seed) % 8)
    t = np.arange(frontend.model_window_samples) / frontend.sample_rate
    phase = 2 * np.pi * freqs[None, :] * t[:, None]
    return (np.concatenate([np.cos(phase), np.sin(phase)], axis=1) * 2 / len(t)).astype(np.float32)


def tiny_waveform_logits(x: np.ndarray, frontend: FrontendConfig, n_labels: int, seed: int = 0) -> np.ndarray:
    """What :func:`write_tiny_waveform_onnx`'s model computes, in numpy: ``(N, samples)`` -> ``(N, C)``."""
    y = np.asarray(x, np.float64) @ _waveform_basis(frontend, n_labels, seed).astype(np.float64)
    energy = y[:, :n_labels] ** 2 + y[:, n_labels:] ** 2
    return np.log10(energy + 1e-6) + 3.0


def write_tiny_waveform_onnx(path: str | Path, frontend: FrontendConfig, n_labels: int, *, seed: int = 0,
                             input_name: str = "audio") -> Path:
    """Write a tiny waveform ONNX model (opset 17): per-class band energies of one model window."""
    basis = _waveform_basis(frontend, n_labels, seed)
    nodes = [
        helper.make_node("MatMul", [input_name, "F"], ["y"]),
        helper.make_node("Mul", ["y", "y"], ["y2"]),
        helper.make_node("Reshape", ["y2", "shape"], ["parts"]),
        helper.make_node("ReduceSum", ["parts", "axis1"], ["energy"], keepdims=0),
        helper.make_node("Add", ["energy", "eps"], ["e"]),
        helper.make_node("Log", ["e"], ["ln"]),
        helper.make_node("Mul", ["ln", "inv_ln10"], ["lg"]),
        helper.make_node("Add", ["lg", "bias"], ["logits"]),
    ]
    consts = {"F": basis, "shape": np.asarray([-1, 2, n_labels], np.int64), "axis1": np.asarray([1], np.int64),
              "eps": np.float32(1e-6), "inv_ln10": np.float32(1 / np.log(10)), "bias": np.float32(3.0)}
    graph = helper.make_graph(
        nodes, "tiny-waveform",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", frontend.model_window_samples])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_labels]),
         helper.make_tensor_value_info("energy", TensorProto.FLOAT, ["batch", n_labels])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path


def tiny_waveform_card(frontend: FrontendConfig, codes: list[str] | None = None, *, name: str = "birds",
                       **fields) -> ModelCard:
    """A card for :func:`write_tiny_waveform_onnx`'s model."""
    codes = codes or DEFAULT_CODES
    return _card(frontend, codes, name, "tiny-waveform", TensorSpec(name="audio", shape=[None, *frontend.input_shape]),
                 TensorSpec(name="energy", shape=[None, len(codes)]), **fields)


def register_tiny(store: ModelStore, kind: Literal["mel", "waveform"] = "mel", *, seed: int = 0,
                  codes: list[str] | None = None, name: str = "birds", promote: bool = False,
                  frontend: FrontendConfig | None = None, **card_fields) -> ModelCard:
    """Register one tiny model of ``kind`` (its weights from ``seed``; the tiny front end of that kind unless
    ``frontend`` is given) and return its card."""
    codes = codes or DEFAULT_CODES
    tmp = store.root.parent / f".{store.root.name}-build"
    tmp.mkdir(parents=True, exist_ok=True)
    if kind == "waveform":
        fe = frontend or tiny_waveform_frontend()
        path = write_tiny_waveform_onnx(tmp / f"w{seed}.onnx", fe, len(codes), seed=seed)
        card = tiny_waveform_card(fe, codes, name=name, **card_fields)
    else:
        fe = frontend or tiny_frontend()
        path = write_tiny_onnx(tmp / f"m{seed}.onnx", fe, len(codes), seed=seed)
        card = tiny_card(fe, codes, name=name, **card_fields)
    return store.register(card, path, promote=promote)


def tiny_card(frontend: FrontendConfig, codes: list[str] | None = None, *, name: str = "birds",
              **fields) -> ModelCard:
    """A card for :func:`write_tiny_onnx`'s model."""
    codes = codes or DEFAULT_CODES
    return _card(frontend, codes, name, "tiny-linear", TensorSpec(name="image", shape=[None, *frontend.image_shape]),
                 TensorSpec(name="embedding", shape=[None, frontend.n_mels]), **fields)


def _card(frontend: FrontendConfig, codes: list[str], name: str, architecture: str, model_input: TensorSpec,
          second_output: TensorSpec, **fields) -> ModelCard:
    """The card of a tiny test model: labels ``codes`` (common names upper-cased), logits first."""
    return ModelCard(
        name=name,
        labels=[Label(code=c, common_name=c.upper()) for c in codes],
        frontend=frontend,
        architecture=architecture,
        inputs=[model_input],
        outputs=[TensorSpec(name="logits", shape=[None, len(codes)]), second_output],
        metrics={"macro_roc_auc": 0.5},
        **fields,
    )


def make_store(root: str | Path, *, versions: int = 1, frontend: FrontendConfig | None = None,
               codes: list[str] | None = None, name: str = "birds", kind: Literal["mel", "waveform"] = "mel",
               **card_fields) -> ModelStore:
    """A store with ``versions`` tiny models of ``kind``, the last one in production.

    Version ``i`` has the weights of seed ``i`` whatever ``card_fields`` (e.g. ``postprocess=...``) say, so
    two stores that differ only in a card field serve the same network.
    """
    if kind == "waveform":
        store = ModelStore(root)
        for i in range(versions):
            register_tiny(store, "waveform", seed=i, codes=codes, name=name, promote=True, frontend=frontend,
                          **card_fields)
        return store
    frontend = frontend or tiny_frontend()
    codes = codes or DEFAULT_CODES
    store = ModelStore(root)
    tmp = Path(root).parent / f".{Path(root).name}-build"
    tmp.mkdir(parents=True, exist_ok=True)
    for i in range(versions):
        onnx_path = write_tiny_onnx(tmp / f"m{i}.onnx", frontend, len(codes), seed=i)
        store.register(tiny_card(frontend, codes, name=name, **card_fields), onnx_path, promote=True)
    return store
