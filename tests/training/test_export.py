"""ONNX export: parity with PyTorch on real audio windows, dynamic batch, loud failure."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.utils.models import tiny_frontend
from training import create_model
from training.export import ExportConfig, ExportError, export_onnx, real_images


@pytest.fixture(scope="module")
def images(tiny_data):
    return real_images(tiny_frontend(), [tiny_data / "soundscapes", tiny_data / "train_audio"], 8)


def test_real_images_are_serving_front_end_windows(images):
    fe = tiny_frontend()
    assert images.shape == (8, 1, fe.n_mels, fe.n_frames) and images.dtype == np.float32
    assert np.isfinite(images).all() and images.std() > 0.5  # standardised log-mels, not silence


def test_export_matches_pytorch_with_dynamic_batch(images, tmp_path):
    torch.manual_seed(0)
    model = create_model("test_efficientnet", num_classes=4)
    result = export_onnx(model, tmp_path / "m.onnx", images, ExportConfig(atol=1e-4))
    assert result.max_abs_diff_logits <= 1e-4 and result.max_abs_diff_embedding <= 1e-4
    assert result.n_labels == 4 and result.embedding_dim == model.num_features
    graph = onnx.load(tmp_path / "m.onnx")
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]
    assert not isinstance(session.get_inputs()[0].shape[0], int)  # dynamic batch axis
    logits, emb = session.run(None, {"image": images[:3]})
    with torch.no_grad():
        ref = model(torch.from_numpy(images[:3]))
    np.testing.assert_allclose(logits, ref.numpy(), atol=1e-4)
    assert emb.shape == (3, model.num_features)


class DriftingHead(torch.nn.Module):
    """A model whose PyTorch output changes on every call: the exported graph freezes one call."""

    def __init__(self) -> None:
        super().__init__()
        self.net = create_model("test_efficientnet", num_classes=4)
        self.calls = 0

    def forward_features(self, x):
        return self.net.forward_features(x)

    def forward_head(self, x, pre_logits=False):
        self.calls += 1
        return self.net.forward_head(x, pre_logits=True) * float(self.calls)

    def get_classifier(self):
        return self.net.get_classifier()


def test_export_fails_loudly_when_parity_breaks(images, tmp_path):
    with pytest.raises(ExportError, match="disagree"):
        export_onnx(DriftingHead(), tmp_path / "bad.onnx", images, ExportConfig(exporter="torchscript"))
    assert not (tmp_path / "bad.onnx").exists()


def test_export_rejects_wrong_image_shape(tmp_path):
    with pytest.raises(ValueError, match="batch, 1, n_mels, n_frames"):
        export_onnx(create_model("test_efficientnet", num_classes=2), tmp_path / "x.onnx",
                    np.zeros((2, 32, 10), np.float32))
