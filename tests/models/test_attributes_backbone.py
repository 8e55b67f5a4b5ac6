"""The ImageNet EfficientNet-Lite0 weights, loaded into our own module, recognise catalogue
photos of ImageNet classes: the check that the key mapping and preprocessing are right."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models._meta import _IMAGENET_CATEGORIES

from models.attributes.crop import prepare_crop
from models.attributes.data import read_rgb
from models.backbones.efficientnet_lite0 import INPUT_MEAN, INPUT_STD, efficientnet_lite0

pytestmark = pytest.mark.models

PRODUCTS = Path(__file__).resolve().parent.parent / "fixtures" / "attributes" / "products"

# fixture photo -> ImageNet classes that name it
EXPECTED = {
    "10235": {"digital watch", "analog clock", "stopwatch", "wall clock", "magnetic compass"},
    "16101": {"sunglass", "sunglasses"},
    "1547": {"running shoe", "Loafer", "clog", "cowboy boot"},
    "1587": {"running shoe", "Loafer", "clog"},
    "8223": {"backpack", "mailbag"},
    "2650": {"purse", "mailbag", "backpack"},
}
# photos named in the top 5, measured: all six with the ImageNet weights, none at random init
PRETRAINED_HITS = 6
RANDOM_HITS = 0


def test_imagenet_weights_name_imagenet_like_products() -> None:
    net = efficientnet_lite0(pretrained=True).eval()
    crops = [
        prepare_crop(read_rgb(PRODUCTS / "images" / f"{i}.jpg"), None, None, 224) for i in EXPECTED
    ]
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(INPUT_MEAN).view(1, 3, 1, 1)) / torch.tensor(INPUT_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        top5 = net(x).topk(5, dim=1).indices.tolist()
    hits = [
        bool({_IMAGENET_CATEGORIES[k] for k in top} & expected)
        for top, expected in zip(top5, EXPECTED.values(), strict=True)
    ]
    assert abs(sum(hits) - PRETRAINED_HITS) <= 1, [
        [_IMAGENET_CATEGORIES[k] for k in top] for top in top5
    ]


def test_random_weights_do_not_pass_the_same_check() -> None:
    """The check above can fail: an untrained network of the same shape does not pass it."""
    torch.manual_seed(0)
    net = efficientnet_lite0(pretrained=False).eval()
    crops = [
        prepare_crop(read_rgb(PRODUCTS / "images" / f"{i}.jpg"), None, None, 224) for i in EXPECTED
    ]
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.inference_mode():
        top5 = net(x).topk(5, dim=1).indices.tolist()
    hits = [
        bool({_IMAGENET_CATEGORIES[k] for k in top} & expected)
        for top, expected in zip(top5, EXPECTED.values(), strict=True)
    ]
    assert abs(sum(hits) - RANDOM_HITS) <= 1
