"""EfficientNet-Lite0: the ImageNet checkpoint maps key-for-key onto the module, and the stages
give the documented feature maps."""

import pytest
import torch

from models.backbones import efficientnet_lite0 as lite0


def test_every_checkpoint_key_maps_with_its_shape() -> None:
    reference = torch.load(lite0.weights_path(), map_location="cpu", weights_only=True)
    converted, report = lite0.convert_reference_state_dict(reference)
    assert report.missing == ()
    assert report.unexpected == ()
    own = lite0.EfficientNetLite0().state_dict()
    assert set(own) == set(converted)
    for key, value in converted.items():
        assert own[key].shape == value.shape, key


def test_a_foreign_checkpoint_is_refused(tmp_path) -> None:
    reference = torch.load(lite0.weights_path(), map_location="cpu", weights_only=True)
    del reference["_blocks.3._depthwise_conv.weight"]
    reference["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(reference, path)
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 checkpoint"):
        lite0.load_imagenet_state_dict(path)


@pytest.mark.parametrize("size", [128, 160, 224])
def test_stages_give_feature_maps_at_the_documented_strides(size: int) -> None:
    net = lite0.efficientnet_lite0(pretrained=False).eval()
    x = net.stem(torch.zeros(1, 3, size, size))
    shapes = []
    with torch.no_grad():
        for stage in net.blocks:
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
    expected = [
        (c, size // s, size // s)
        for c, s in zip(lite0.STAGE_CHANNELS, lite0.STAGE_STRIDES, strict=True)
    ]
    assert shapes == expected
    assert [lite0.STAGE_STRIDES[i] for i in lite0.FEATURE_STAGES] == [8, 16, 32]


def test_pretrained_weights_are_the_packaged_checkpoint_whatever_the_init() -> None:
    reference = torch.load(lite0.weights_path(), map_location="cpu", weights_only=True)
    packaged, _ = lite0.convert_reference_state_dict(reference)
    # the same seed before both builds: had the checkpoint not been loaded, they would be equal
    torch.manual_seed(0)
    fresh = lite0.efficientnet_lite0(pretrained=False).state_dict()
    torch.manual_seed(0)
    loaded = lite0.efficientnet_lite0(pretrained=True).state_dict()
    torch.manual_seed(1)  # another init: the loaded weights must not depend on it
    loaded_again = lite0.efficientnet_lite0(pretrained=True).state_dict()
    assert set(loaded) == set(packaged)
    for key, value in packaged.items():
        assert torch.equal(loaded[key], value), key
        assert torch.equal(loaded_again[key], value), key
    assert not torch.equal(fresh["stem.0.weight"], loaded["stem.0.weight"])
    # trained batch-norm statistics, not the init's ones
    assert float(fresh["head.1.running_var"].mean()) == 1.0
    assert float(loaded["head.1.running_var"].mean()) != 1.0
