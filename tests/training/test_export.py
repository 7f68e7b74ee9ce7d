"""ONNX export: parity with PyTorch on real audio windows, dynamic batch, loud failure.

Parity accepts correct models whose large logits differ from PyTorch's by float32 rounding only, and
refuses a graph with one wrong weight.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import training.export as export_module
from soundscape.cli import main
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
    assert result.max_abs_diff_probabilities <= 1e-4 and 0 <= result.tolerance_used <= 1
    assert result.members == 1 and result.member_embedding_dims == (model.num_features,)
    assert set(result.parity()) >= {"max_abs_diff_logits", "max_rel_diff_logits", "max_abs_diff_embedding",
                                    "max_rel_diff_embedding", "max_abs_diff_probabilities", "tolerance_used"}
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


def trained_like(images: np.ndarray, max_logit: float, seed: int = 0) -> torch.nn.Module:
    """The tiny model with BatchNorm statistics like a trained network's and logits up to ``max_logit``.

    Untrained, the eval-mode tiny model has near-zero activations; with unit-scale running statistics its
    activations and rounding behave like a fine-tuned network's, and the classifier is scaled so that the
    largest logit on ``images`` is ``max_logit`` (confident predictions).
    """
    torch.manual_seed(seed)
    model = create_model("test_efficientnet", num_classes=4).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 1.5, generator=g)
                mod.running_mean.normal_(0, 0.1, generator=g)
        scale = max_logit / model(torch.from_numpy(images)).abs().max()
        model.get_classifier().weight.mul_(scale)
        model.get_classifier().bias.mul_(scale)
    return model


def test_large_logits_pass_on_relative_tolerance(images, tmp_path):
    # float32 rounding (BatchNorm folded into Conv, other summation orders) grows with the logits: an
    # absolute 1e-4 on logits refuses this correct model, the relative rule and the probabilities accept it
    model = trained_like(images, max_logit=2000.0)
    result = export_onnx(model, tmp_path / "m.onnx", images)
    assert result.max_abs_diff_logits > 1e-4  # what the old absolute rule refused
    assert result.max_rel_diff_logits < 1e-4 and result.max_abs_diff_probabilities < 1e-6
    assert result.tolerance_used <= 1
    with pytest.raises(ExportError, match=r"worst is logits\["):  # the old rule: absolute only
        export_onnx(model, tmp_path / "abs.onnx", images, ExportConfig(rtol=0.0))
    assert not (tmp_path / "abs.onnx").exists()


@pytest.mark.parametrize("tensor, factor", [("conv_stem.weight", 1.01), ("classifier.weight", 1.1)])
def test_one_perturbed_weight_is_refused(images, tmp_path, monkeypatch, tensor, factor):
    """The exported file is edited after export: the largest weight of one tensor off by 1 % (first conv) or
    10 % (classifier; 1 % there moves logits of ~8 by 3e-4 relative and probabilities by 4e-6, within the
    tolerances); parity must refuse it and say where."""
    real_exporter = export_module._run_exporter

    def exporter_then_perturb(wrapped, example, path, exporter, opset):
        real_exporter(wrapped, example, path, exporter, opset)
        graph = onnx.load(str(path))
        (init,) = [i for i in graph.graph.initializer if i.name.endswith(tensor)]
        w = numpy_helper.to_array(init).copy()
        w.flat[np.abs(w).argmax()] *= factor
        init.CopyFrom(numpy_helper.from_array(w, init.name))
        onnx.save(graph, str(path))

    monkeypatch.setattr(export_module, "_run_exporter", exporter_then_perturb)
    model = trained_like(images, max_logit=20.0)
    with pytest.raises(ExportError, match="disagree") as err:
        export_onnx(model, tmp_path / "bad.onnx", images)
    message = str(err.value)
    assert "worst is " in message and "|diff|" in message and "> allowed" in message
    worst = message.split("worst is ")[1].split("[")[0]
    assert worst in ("logits", "embedding", "probabilities")
    if tensor == "classifier.weight":  # the embedding is untouched: logits or probabilities are off
        assert worst in ("logits", "probabilities")
    assert not (tmp_path / "bad.onnx").exists()


def test_export_help_shows_tolerances(capsys):
    with pytest.raises(SystemExit) as done:
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for option in ("--prob-atol", "--atol", "--rtol", "--ensemble"):
        assert option in out
    assert "sigmoid" in out  # the help says what each tolerance is about
