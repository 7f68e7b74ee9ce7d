"""Ensembles: K checkpoints exported as one ONNX graph whose probabilities are the mean of the members'.

The reference is computed independently: each checkpoint exported alone and run through ONNX Runtime on
the serving front end's images, then the sigmoids averaged in numpy.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest

from model_store import ModelStore
from soundscape.audio import Frontend, decode
from soundscape.cli import main
from soundscape.inference import Engine
from tests.utils.checkpoints import write_checkpoint, write_soundscapes
from tests.utils.models import DEFAULT_CODES, tiny_frontend
from training.checkpoint import Checkpoint
from training.export import ExportConfig, combine_members, export_onnx, model_from_checkpoint
from training.register import PublishConfig, publish


@pytest.fixture(scope="module")
def scapes(tmp_path_factory):
    return write_soundscapes(tmp_path_factory.mktemp("scapes"))


def _confident(path, images, seed: int):
    """Give a checkpoint's untrained tiny model BatchNorm statistics like a trained one and logits of a few
    units (untrained, all its probabilities are ~0.5 and any way of averaging would look right)."""
    import torch

    ckpt = Checkpoint.load(path)
    model = model_from_checkpoint(ckpt)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 1.5, generator=g)
                mod.running_mean.normal_(0, 0.1, generator=g)
        logits = model(torch.from_numpy(images))
        model.get_classifier().weight.mul_(6.0 / logits.abs().max())
        model.get_classifier().bias.normal_(0, 1.0, generator=g)
    return replace(ckpt, state_dict=model.state_dict()).save(path)


@pytest.fixture(scope="module")
def members(tmp_path_factory, scapes):
    from training.export import real_images

    root = tmp_path_factory.mktemp("runs")
    images = real_images(tiny_frontend(), [scapes[1]], 8)
    return [_confident(write_checkpoint(root / f"run{seed}" / "best.pt", seed=seed), images, seed)
            for seed in (0, 1)]


def _single_onnx_outputs(ckpt_path, images, tmp_path):
    """One member alone: exported, then run through ONNX Runtime (no ensemble code involved)."""
    path = tmp_path / f"{ckpt_path.parent.name}.onnx"
    export_onnx(model_from_checkpoint(Checkpoint.load(ckpt_path)), path, images[:4])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, emb = session.run(["logits", "embedding"], {"image": images})
    return logits.astype(np.float64), emb


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_ensemble_serves_the_mean_of_its_members(scapes, members, tmp_path):
    labels, folder = scapes
    store = ModelStore(tmp_path / "store")
    result = publish(members, store, PublishConfig(name="ens", promote=True, soundscapes_labels=labels,
                                                   soundscapes_dir=folder))
    card = store.load("ens").card  # checksum-verified
    assert card == result.card and card.version == 1
    assert card.architecture == "ensemble[test_efficientnet,test_efficientnet]"
    assert card.codes == DEFAULT_CODES and card.frontend == tiny_frontend()
    assert card.output_activation == "sigmoid" and card.precision == "fp32"
    ens = card.training["ensemble"]
    assert [m["checkpoint"] for m in ens["members"]] == [str(p) for p in members]
    assert "mean" in ens["combine"] and all(m["arch"] == "test_efficientnet" for m in ens["members"])
    assert result.export.members == 2 and card.training["export"]["tolerance_used"] <= 1
    # scored through the serving path: the ensemble's own metrics, not a member's checkpoint metrics
    assert card.metrics == result.evaluation.metrics and card.validation.metrics_from == "soundscapes"
    assert {"member0-metrics.csv", "member1-metrics.csv"} <= {
        p.name for p in store.version_dir("ens", 1).iterdir()}

    # the engine on a real recording vs the members exported alone, averaged independently
    engine = Engine(store.load("ens"))
    audio = decode(folder / "ss0.wav", sample_rate=16000)
    pred = engine.predict(audio, embeddings=True)
    images = Frontend(tiny_frontend())(engine.windows(audio).samples)[:, None]
    singles = [_single_onnx_outputs(p, images, tmp_path) for p in members]
    expected = np.mean([_sigmoid(z) for z, _ in singles], axis=0)
    assert pred.probabilities.shape == expected.shape == (4, 4)
    np.testing.assert_allclose(pred.probabilities, expected, atol=1e-5, rtol=0)
    # the check tells the mean of probabilities from a member alone and from the sigmoid of the mean logit
    assert min(np.abs(_sigmoid(z) - expected).max() for z, _ in singles) > 1e-2
    assert np.abs(_sigmoid(np.mean([z for z, _ in singles], axis=0)) - expected).max() > 1e-3
    np.testing.assert_allclose(pred.embeddings, np.concatenate([e for _, e in singles], axis=1), atol=1e-5)
    assert card.outputs[1].shape == [None, sum(e.shape[1] for _, e in singles)]


def test_combination_is_finite_and_exact_for_confident_members():
    torch = pytest.importorskip("torch")
    z = torch.tensor([[[60.0, -60.0, 3.0, 0.0]], [[80.0, -90.0, -3.0, 0.0]]])  # (K=2, B=1, C=4)
    logits, emb = combine_members(list(z), [torch.ones(1, 2), torch.zeros(1, 3)])
    assert torch.isfinite(logits).all() and emb.shape == (1, 5)
    probs = torch.sigmoid(logits.double())
    expected = torch.sigmoid(z.double()).mean(0)
    assert torch.allclose(probs, expected, atol=1e-7, rtol=1e-6)
    assert logits[0, 0] > 30 and logits[0, 1] < -30  # sure members stay sure, no inf from logit(1.0)


def _variant(src, dest, change):
    ckpt = Checkpoint.load(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return replace(ckpt, **change(ckpt)).save(dest)


@pytest.mark.parametrize("what, change", [
    ("labels", lambda c: {"labels": c.labels[::-1]}),
    ("labels", lambda c: {"labels": c.labels[:3]}),
    ("front end", lambda c: {"frontend": tiny_frontend(n_mels=48)}),
])
def test_members_must_share_labels_and_front_end(members, scapes, tmp_path, what, change):
    other = _variant(members[1], tmp_path / "other" / "best.pt", change)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ValueError, match=f"ensemble members must share {'labels' if what == 'labels' else 'the'}"):
        publish([members[0], other], store, PublishConfig(audio=[scapes[1]]))
    assert store.versions("birds") == []


def test_ensemble_is_not_quantized(members, scapes, tmp_path):
    with pytest.raises(ValueError, match="int8 quantization of an ensemble is not supported"):
        publish(members, ModelStore(tmp_path / "store"), PublishConfig(quantize=True, soundscapes_labels=scapes[0],
                                                                       soundscapes_dir=scapes[1]))


def test_export_cli_ensemble(members, scapes, tmp_path, capsys):
    store = tmp_path / "store"
    args = ["export", *map(str, members), "--store", str(store), "--name", "ens", "--audio", str(scapes[1])]
    assert main(args) == 2  # several checkpoints need --ensemble: no accidental averaging
    assert main(["export", str(members[0]), "--ensemble", "--store", str(store)]) == 2
    assert ModelStore(store).versions("ens") == []
    capsys.readouterr()
    assert main([*args, "--ensemble", "--promote"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["architecture"] == "ensemble[test_efficientnet,test_efficientnet]" and out["version"] == 1
    assert out["parity"]["tolerance_used"] <= 1
    assert main([*args, "--ensemble", "--quantize", "int8"]) == 2


def test_ensemble_parity_is_checked(members, scapes, tmp_path):
    """The ensemble graph goes through the same parity check as single models: an impossible tolerance
    refuses it and leaves no file."""
    from training.export import ExportError, real_images

    images = real_images(tiny_frontend(), [scapes[1]], 4)
    models = [model_from_checkpoint(Checkpoint.load(p)) for p in members]
    result = export_onnx(models, tmp_path / "ens.onnx", images)
    assert result.members == 2 and result.embedding_dim == sum(result.member_embedding_dims)
    with pytest.raises(ExportError, match="disagree"):
        export_onnx(models, tmp_path / "strict.onnx", images, ExportConfig(prob_atol=1e-30, atol=1e-30, rtol=0))
    assert not (tmp_path / "strict.onnx").exists()
