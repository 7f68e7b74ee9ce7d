"""Registration: a full card from the checkpoint, a checksum-verified store entry, the export CLI."""

from __future__ import annotations

import pytest

from model_store import ModelStore, StoreError, StoreErrorCode
from soundscape.audio import decode
from soundscape.cli import main
from soundscape.inference import Engine
from tests.utils.checkpoints import write_checkpoint, write_soundscapes
from tests.utils.models import DEFAULT_CODES, tiny_frontend
from training.register import PublishConfig, publish


@pytest.fixture(scope="module")
def scapes(tmp_path_factory):
    return write_soundscapes(tmp_path_factory.mktemp("scapes"))


def test_publish_registers_a_full_card(scapes, tmp_path):
    labels, folder = scapes
    ckpt = write_checkpoint(tmp_path / "run" / "best.pt")
    store = ModelStore(tmp_path / "store")
    result = publish(ckpt, store, PublishConfig(promote=True, parent_version=7, soundscapes_labels=labels,
                                                soundscapes_dir=folder))
    card = store.load("birds").card  # verified against the sha256
    assert card == result.card and card.version == 1 and store.production("birds") == 1
    assert [lab.code for lab in card.labels] == DEFAULT_CODES
    assert card.labels[0].common_name == f"Common {DEFAULT_CODES[0]}"
    assert card.labels[0].scientific_name == f"Avis {DEFAULT_CODES[0]}"
    assert card.frontend == tiny_frontend()
    assert card.architecture == "test_efficientnet" and card.precision == "fp32"
    assert card.inputs[0].name == "image" and card.inputs[0].shape == [None, *tiny_frontend().image_shape]
    assert [o.name for o in card.outputs] == ["logits", "embedding"]
    assert card.outputs[0].shape == [None, 4] and card.outputs[1].shape[1] > 0
    assert card.parent_version == 7
    # metrics are the ONNX model's, scored through the serving path on the soundscapes
    assert card.metrics == result.evaluation.metrics and set(card.metrics) == {"macro_roc_auc", "padded_cmap"}
    assert set(card.per_species_ap) == set(DEFAULT_CODES)
    assert card.data.train_clips == 12 and card.data.val_soundscapes == 3
    assert card.training["checkpoint_metrics"]["macro_roc_auc"] == pytest.approx(0.61)
    assert card.training["export"]["max_abs_diff_logits"] <= 1e-4
    assert (store.version_dir("birds", 1) / "metrics.csv").is_file()
    # the registered model serves
    engine = Engine(store.load("birds"))
    pred = engine.predict(decode(folder / "ss0.wav", sample_rate=16000), embeddings=True)
    assert pred.probabilities.shape == (4, 4) and pred.embeddings.shape[0] == 4
    # a changed byte is caught by the checksum
    onnx_file = store.version_dir("birds", 1) / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        store.load("birds")
    assert err.value.code == StoreErrorCode.CHECKSUM


def test_publish_without_real_audio_is_a_clear_error(tmp_path):
    ckpt = write_checkpoint(tmp_path / "run" / "best.pt", train_config={"audio_root": str(tmp_path / "gone")})
    with pytest.raises(ValueError, match="no real audio for the parity check"):
        publish(ckpt, ModelStore(tmp_path / "store"))
    assert ModelStore(tmp_path / "store").versions("birds") == []


def test_publish_config_takes_both_soundscape_paths_or_neither(tmp_path):
    with pytest.raises(ValueError, match="given together"):
        PublishConfig(soundscapes_labels=tmp_path / "soundscape_labels.csv")
    with pytest.raises(ValueError, match="extra"):
        PublishConfig(quantize_cfg={})  # one config object, no loose keyword arguments


def test_export_cli(scapes, tmp_path, capsys):
    labels, folder = scapes
    ckpt = write_checkpoint(tmp_path / "run" / "best.pt")
    store = tmp_path / "store"
    rc = main(["export", str(ckpt), "--store", str(store), "--name", "owls", "--promote",
               "--audio", str(folder)])
    assert rc == 0 and ModelStore(store).production("owls") == 1
    assert '"version": 1' in capsys.readouterr().out
    # int8 needs soundscapes to check the metric: bad input, nothing registered
    rc = main(["export", str(ckpt), "--store", str(store), "--name", "owls", "--quantize", "int8",
               "--audio", str(folder)])
    assert rc == 2 and ModelStore(store).versions("owls") == [1]
    assert main(["export", str(tmp_path / "missing.pt"), "--store", str(store)]) == 2


@pytest.mark.parametrize("verb, option", [("export", "--quantize"), ("retrain", "--margin"),
                                          ("build-default-model", "--tolerance")])
def test_cli_help(verb, option, capsys):
    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0 and option in capsys.readouterr().out
