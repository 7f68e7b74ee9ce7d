"""int8 quantization: the report (metric change, speed-up) and the refusal when the metric drops."""

from __future__ import annotations

import numpy as np
import pytest

from soundscape.audio import Frontend
from tests.utils.checkpoints import write_fitted_onnx, write_soundscapes
from tests.utils.models import DEFAULT_CODES, tiny_card, tiny_frontend
from training.evaluate import evaluate_model, load_validation, unregistered_model
from training.quantize import QuantizeConfig, quantize_and_check


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    labels, folder = write_soundscapes(root)
    val = load_validation(labels, folder, DEFAULT_CODES, tiny_frontend(), cache_dir=root / "cache")
    fp32 = write_fitted_onnx(root / "fp32.onnx", val.windows, val.targets)
    card = tiny_card(tiny_frontend())

    def score(path):
        return evaluate_model(unregistered_model(card, path), val).metrics

    return root, val, fp32, score


def test_int8_kept_when_metric_holds(setup, tmp_path):
    _, val, fp32, score = setup
    assert score(fp32)["macro_roc_auc"] > 0.9  # the fitted model is good, so a drop would show
    calibration = Frontend(tiny_frontend())(val.windows)[:, None]
    # the tiny model is all head: quantize it too
    cfg = QuantizeConfig(tolerance=0.05, timing_repeats=3, timing_batch=8, keep_stem_and_head_fp32=False)
    report = quantize_and_check(fp32, tmp_path / "int8.onnx", calibration=calibration, score=score, cfg=cfg)
    assert report.accepted, report.message
    assert (tmp_path / "int8.onnx").is_file()
    assert report.metric_change == pytest.approx(report.int8_metric - report.fp32_metric)
    assert report.metric_change >= -0.05
    # the reported factor is fp32 time over int8 time (not inverted), and the message states that same number
    assert report.speedup == pytest.approx(report.fp32_ms / report.int8_ms)
    assert "accepted" in report.message and f"{report.speedup:.2f}x faster on a batch of 8" in report.message


def test_int8_refused_when_metric_drops(setup, tmp_path):
    _, val, fp32, score = setup
    # Calibrating on silence-like images collapses the activation ranges: the int8 model loses the signal.
    calibration = np.zeros((8, 1, *tiny_frontend().image_shape[1:]), np.float32)
    report = quantize_and_check(fp32, tmp_path / "int8.onnx", calibration=calibration, score=score,
                                cfg=QuantizeConfig(tolerance=0.01, timing_repeats=1, timing_batch=4,
                                                   keep_stem_and_head_fp32=False))
    assert not report.accepted
    assert report.metric_change < -0.01
    assert "refused" in report.message and "keeping fp32" in report.message
    assert not (tmp_path / "int8.onnx").exists()


def test_the_default_int8_recipe_keeps_the_stem_and_the_classifier_fp32(setup, tmp_path):
    import onnx

    from tests.utils.checkpoints import write_checkpoint
    from training.checkpoint import load_checkpoint
    from training.export import export_onnx, model_from_checkpoint
    from training.quantize import quantize_onnx

    _, val, _, _ = setup
    images = Frontend(tiny_frontend())(val.windows)[:, None]
    model = model_from_checkpoint(load_checkpoint(write_checkpoint(tmp_path / "ck.pt")))
    export_onnx(model, tmp_path / "fp32.onnx", images[:4])
    quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calibration=images)  # QuantizeConfig() defaults
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    heads = [n for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    assert convs[0].input[1] not in dequantized  # the stem's weights stay float
    assert heads[-1].input[1] not in dequantized  # so do the classifier's
    assert sum(c.input[1] in dequantized for c in convs[1:]) >= len(convs[1:]) // 2  # the body is int8
