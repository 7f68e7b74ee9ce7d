"""Factories for real, tiny ONNX models and stores (no torch needed).

The graph: image ``(N, 1, n_mels, T)`` -> mean over time -> ``(N, n_mels)`` embedding -> linear ->
``(N, C)`` logits. Weights are seeded, so two calls with the same seed give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

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


def tiny_card(frontend: FrontendConfig, codes: list[str] | None = None, *, name: str = "birds",
              **fields) -> ModelCard:
    """A card for :func:`write_tiny_onnx`'s model."""
    codes = codes or DEFAULT_CODES
    return ModelCard(
        name=name,
        labels=[Label(code=c, common_name=c.upper()) for c in codes],
        frontend=frontend,
        architecture="tiny-linear",
        inputs=[TensorSpec(name="image", shape=[None, *frontend.image_shape])],
        outputs=[TensorSpec(name="logits", shape=[None, len(codes)]),
                 TensorSpec(name="embedding", shape=[None, frontend.n_mels])],
        metrics={"macro_roc_auc": 0.5},
        **fields,
    )


def make_store(root: str | Path, *, versions: int = 1, frontend: FrontendConfig | None = None,
               codes: list[str] | None = None, name: str = "birds", **card_fields) -> ModelStore:
    """A store with ``versions`` tiny models, the last one in production.

    Version ``i`` has the weights of seed ``i`` whatever ``card_fields`` (e.g. ``postprocess=...``) say, so
    two stores that differ only in a card field serve the same network.
    """
    frontend = frontend or tiny_frontend()
    codes = codes or DEFAULT_CODES
    store = ModelStore(root)
    tmp = Path(root).parent / f".{Path(root).name}-build"
    tmp.mkdir(parents=True, exist_ok=True)
    for i in range(versions):
        onnx_path = write_tiny_onnx(tmp / f"m{i}.onnx", frontend, len(codes), seed=i)
        store.register(tiny_card(frontend, codes, name=name, **card_fields), onnx_path, promote=True)
    return store
