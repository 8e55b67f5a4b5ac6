"""Training augmentation for the detector: scale jitter, flips, colour jitter, copy-paste of
whole people (with their garment instances) so a model trained on one-person street photos also
finds several and small people in camera frames, and camera person crops: a CCP photo cut the
way the tagger cuts a detected person, then degraded the way a small person of a camera frame
looks once scaled up (shrunk and brought back, blur, JPEG, noise, dim or back light, colour
casts, another person in front).

Every function takes and returns `InstanceSample`s and draws randomness only from the
`np.random.Generator` it is given, so a seed reproduces a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from models import camera_look
from models.detection import crops
from models.detection.samples import InstanceSample, boxes_from_masks
from models.taxonomy import DETECTOR_CLASSES, PERSON

PERSON_ID = DETECTOR_CLASSES.index(PERSON)
# Instances smaller than this (pixels, after augmentation) are dropped: too small to learn from.
MIN_INSTANCE_PIXELS = 24
# An occluded instance is dropped when less than this share of it remains visible.
MIN_VISIBLE_SHARE = 0.25


@dataclass(frozen=True)
class AugmentConfig:
    """How often and how strongly each augmentation applies."""

    scene_prob: float = 0.5  # compose a landscape multi-person scene instead of the photo itself
    scene_sizes: tuple[tuple[int, int], ...] = ((480, 640), (360, 640), (480, 480))  # (h, w)
    scene_people: tuple[int, int] = (1, 6)  # pasted people per scene, inclusive range
    plain_background_prob: float = 0.2  # scene background: blurred colours instead of a photo
    person_height: tuple[float, float] = (0.12, 0.75)  # pasted person height / scene height
    photo_paste_prob: float = 0.3  # on a plain photo, also paste 1-2 small people
    zoom: tuple[float, float] = (0.6, 1.2)  # photo scale jitter (1 = as is)
    flip_prob: float = 0.5
    colour_prob: float = 0.8
    # camera person crops (0 = none: the recipe of the first shipped detector)
    camera_crop_prob: float = 0.0
    crop_person_height: tuple[float, float] = (30.0, 150.0)  # px the person is shrunk to
    crop_jpeg_quality: tuple[int, int] = (20, 70)
    crop_occlusion_prob: float = 0.3  # another person stands in front


def resize_sample(sample: InstanceSample, width: int, height: int) -> InstanceSample:
    image = cv2.resize(sample.image, (width, height), interpolation=cv2.INTER_AREA)
    return _with(sample, image, resize_masks(sample.masks, width, height), sample.class_ids)


def resize_masks(masks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, H, W) bool -> (n, height, width) bool, nearest neighbour."""
    out = np.zeros((len(masks), height, width), bool)
    for i, mask in enumerate(masks):
        out[i] = (
            cv2.resize(mask.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        )
    return out


def hflip(sample: InstanceSample) -> InstanceSample:
    return _with(
        sample,
        np.ascontiguousarray(sample.image[:, ::-1]),
        np.ascontiguousarray(sample.masks[:, :, ::-1]),
        sample.class_ids,
    )


def jitter_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and a small hue shift, as camera and light vary."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
    hsv[..., 1] *= rng.uniform(0.6, 1.4)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.7, 1.3)
    return np.clip(out, 0, 255).astype(np.uint8)


def zoom_crop(sample: InstanceSample, scale: float, rng: np.random.Generator) -> InstanceSample:
    """Scale the photo by `scale`; zooming in crops a random window of the original size,
    zooming out places the photo on a blurred copy of itself."""
    h, w = sample.image.shape[:2]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    scaled = resize_sample(sample, nw, nh)
    if scale >= 1.0:
        y0 = int(rng.integers(0, nh - h + 1))
        x0 = int(rng.integers(0, nw - w + 1))
        return _drop_small(
            _with(
                sample,
                scaled.image[y0 : y0 + h, x0 : x0 + w].copy(),
                scaled.masks[:, y0 : y0 + h, x0 : x0 + w].copy(),
                sample.class_ids,
            )
        )
    canvas = cv2.GaussianBlur(sample.image, (0, 0), 12)
    y0 = int(rng.integers(0, h - nh + 1))
    x0 = int(rng.integers(0, w - nw + 1))
    canvas[y0 : y0 + nh, x0 : x0 + nw] = scaled.image
    masks = np.zeros((len(sample.masks), h, w), bool)
    masks[:, y0 : y0 + nh, x0 : x0 + nw] = scaled.masks
    return _drop_small(_with(sample, canvas, masks, sample.class_ids))


@dataclass(frozen=True)
class PersonCutout:
    """One person cut out of a photo: their box crop, the person mask (alpha) and the garment
    instances inside it, in the crop's coordinates. Garments inside one person do not overlap,
    so they are kept as an instance map (0 = none, i = garment i - 1): a tenth of the memory of
    a mask stack, which matters when every training photo is kept as a donor."""

    image: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) bool
    instance_map: np.ndarray  # (h, w) uint8
    class_ids: np.ndarray  # (n,)

    @property
    def masks(self) -> np.ndarray:
        """(n, h, w) bool garment masks."""
        return self.instance_map[None] == np.arange(1, len(self.class_ids) + 1)[:, None, None]


def cut_out_person(sample: InstanceSample, max_height: int = 400) -> PersonCutout | None:
    """The photo's first person and the garments it contains, scaled down to at most
    `max_height` (people are pasted smaller than that); None when it has no person."""
    people = np.flatnonzero(sample.class_ids == PERSON_ID)
    if not len(people):
        return None
    alpha = sample.masks[people[0]]
    x1, y1, x2, y2 = (int(v) for v in boxes_from_masks(alpha[None])[0])
    if x2 - x1 < 8 or y2 - y1 < 16:
        return None
    garments = [
        i for i in np.flatnonzero(sample.class_ids != PERSON_ID) if (sample.masks[i] & alpha).any()
    ][:255]
    alpha = alpha[y1:y2, x1:x2]
    image = sample.image[y1:y2, x1:x2]
    instance_map = np.zeros(alpha.shape, np.uint8)
    for n, i in enumerate(garments, start=1):
        instance_map[sample.masks[i, y1:y2, x1:x2] & alpha] = n
    scale = min(1.0, max_height / alpha.shape[0])
    if scale < 1.0:
        size = (max(1, round(alpha.shape[1] * scale)), max(1, round(alpha.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha.view(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        instance_map = cv2.resize(instance_map, size, interpolation=cv2.INTER_NEAREST)
    return PersonCutout(
        image=np.ascontiguousarray(image),
        alpha=np.ascontiguousarray(alpha),
        instance_map=instance_map,
        class_ids=sample.class_ids[garments].copy(),
    )


def paste_person(
    sample: InstanceSample, cutout: PersonCutout, x: int, y: int, height: int
) -> InstanceSample:
    """Paste `cutout` scaled to `height` pixels with its top-left corner at (x, y) (it may run
    over the edges); what it covers is removed from the instances underneath."""
    ch, cw = cutout.alpha.shape
    width = max(1, round(cw * height / ch))
    alpha = resize_masks(cutout.alpha[None], width, height)[0]
    image = cv2.resize(cutout.image, (width, height), interpolation=cv2.INTER_AREA)
    masks = resize_masks(cutout.masks, width, height)
    h, w = sample.image.shape[:2]
    # the visible window of the pasted crop on the canvas
    cx1, cy1, cx2, cy2 = max(x, 0), max(y, 0), min(x + width, w), min(y + height, h)
    if cx2 <= cx1 or cy2 <= cy1:
        return sample
    px1, py1 = cx1 - x, cy1 - y
    px2, py2 = px1 + (cx2 - cx1), py1 + (cy2 - cy1)
    placed = np.zeros((h, w), bool)
    placed[cy1:cy2, cx1:cx2] = alpha[py1:py2, px1:px2]
    # soften the cut edge a little so the network cannot learn "a hard edge means a person"
    soft = cv2.GaussianBlur(placed.astype(np.float32), (3, 3), 0)[..., None]
    canvas = sample.image.astype(np.float32)
    pasted = np.zeros_like(canvas)
    pasted[cy1:cy2, cx1:cx2] = image[py1:py2, px1:px2]
    out_image = (canvas * (1 - soft) + pasted * soft).astype(np.uint8)
    before = sample.masks.sum(axis=(1, 2))
    under = sample.masks & ~placed
    visible = under.sum(axis=(1, 2)) >= np.maximum(MIN_VISIBLE_SHARE * before, MIN_INSTANCE_PIXELS)
    new_masks = np.zeros((len(masks) + 1, h, w), bool)
    new_masks[0] = placed
    new_masks[1:, cy1:cy2, cx1:cx2] = masks[:, py1:py2, px1:px2]
    new_ids = np.concatenate([[PERSON_ID], cutout.class_ids]).astype(np.int64)
    return _drop_small(
        _with(
            sample,
            out_image,
            np.concatenate([under[visible], new_masks]),
            np.concatenate([sample.class_ids[visible], new_ids]),
        )
    )


def compose_scene(
    tiles: Sequence[InstanceSample],
    donors: Sequence[PersonCutout],
    size: tuple[int, int],
    config: AugmentConfig,
    rng: np.random.Generator,
) -> InstanceSample:
    """A (h, w) camera-like scene: `tiles` (labelled photos) side by side at about the scene's
    height, or a blurred colour field, then `donors` pasted at random sizes, further (higher)
    people first so nearer ones occlude them."""
    h, w = size
    scene = InstanceSample(
        "scene", np.zeros((h, w, 3), np.uint8), np.zeros((0, h, w), bool), np.zeros(0, np.int64)
    )
    if not tiles or rng.random() < config.plain_background_prob:
        small = rng.integers(0, 256, (3, 4, 3)).astype(np.uint8)
        background = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        noise = rng.normal(0, 6, background.shape)
        scene = _with(
            scene,
            np.clip(background + noise, 0, 255).astype(np.uint8),
            scene.masks,
            scene.class_ids,
        )
    else:
        scene = _tile(scene, tiles, rng)
    placements = []
    for donor in donors:
        height = round(h * rng.uniform(*config.person_height))
        width = round(donor.alpha.shape[1] * height / donor.alpha.shape[0])
        feet = rng.uniform(0.35, 1.1) * h  # where the feet are: low in the frame = near
        x = int(rng.integers(-width // 3, max(1, w - 2 * width // 3)))
        placements.append((feet, donor, x, int(feet - height), height))
    for _, donor, x, y, height in sorted(placements, key=lambda p: p[0]):
        scene = paste_person(scene, donor, x, y, height)
    return scene


def _tile(
    scene: InstanceSample, tiles: Sequence[InstanceSample], rng: np.random.Generator
) -> InstanceSample:
    """Fill `scene` left to right with `tiles` scaled to 1-1.3x its height (cropped at a
    random height), reusing them mirrored when they run out."""
    h, w = scene.image.shape[:2]
    image = scene.image.copy()
    masks: list[np.ndarray] = []
    class_ids: list[np.ndarray] = []
    x = -int(rng.integers(0, w // 4 + 1))
    index = 0
    while x < w:
        tile = tiles[index % len(tiles)]
        if index >= len(tiles):
            tile = hflip(tile)
        index += 1
        th, tw = tile.image.shape[:2]
        scale = h * rng.uniform(1.0, 1.3) / th
        nh, nw = max(h, round(th * scale)), max(1, round(tw * scale))
        scaled = resize_sample(tile, nw, nh)
        y0 = int(rng.integers(0, nh - h + 1))
        x1, x2 = max(x, 0), min(x + nw, w)
        image[:, x1:x2] = scaled.image[y0 : y0 + h, x1 - x : x2 - x]
        placed = np.zeros((len(scaled.masks), h, w), bool)
        placed[:, :, x1:x2] = scaled.masks[:, y0 : y0 + h, x1 - x : x2 - x]
        masks.append(placed)
        class_ids.append(scaled.class_ids)
        x += nw
    return _drop_small(_with(scene, image, np.concatenate(masks), np.concatenate(class_ids)))


def augment_photo(
    sample: InstanceSample,
    donors: Sequence[PersonCutout],
    config: AugmentConfig,
    rng: np.random.Generator,
) -> InstanceSample:
    """The photo itself, zoomed in or out, sometimes with one or two small people pasted."""
    out = zoom_crop(sample, float(rng.uniform(*config.zoom)), rng)
    if donors and rng.random() < config.photo_paste_prob:
        h, w = out.image.shape[:2]
        for _ in range(int(rng.integers(1, 3))):
            donor = donors[int(rng.integers(len(donors)))]
            height = round(h * rng.uniform(0.15, 0.4))
            out = paste_person(
                out, donor, int(rng.integers(-height // 6, w)), int(rng.integers(0, h)), height
            )
    return out


def camera_crop_view(
    sample: InstanceSample,
    donors: Sequence[PersonCutout],
    config: AugmentConfig,
    rng: np.random.Generator,
) -> InstanceSample | None:
    """The photo's person cut like the tagger cuts a detected one (window jittered as a
    detector's box is), maybe half hidden by another person, then degraded to look like a
    30-150 px camera person scaled up to the crop. None when the photo has no person."""
    people = np.flatnonzero(sample.class_ids == PERSON_ID)
    if not len(people):
        return None
    x0, y0, x1, y1 = (float(v) for v in boxes_from_masks(sample.masks[people[0]][None])[0])
    box = (x0, y0, x1, y1)
    if donors and rng.random() < config.crop_occlusion_prob:
        donor = donors[int(rng.integers(len(donors)))]
        height = round((y1 - y0) * rng.uniform(0.8, 1.2))
        width = round(donor.alpha.shape[1] * height / donor.alpha.shape[0])
        # in front, to one side: covers 15-50% of the person's width
        cover = rng.uniform(0.15, 0.5) * (x1 - x0)
        x = round(x0 + cover - width) if rng.random() < 0.5 else round(x1 - cover)
        sample = paste_person(sample, donor, x, round(y1 - height), height)
    window = crops.crop_window(
        box,
        margin=float(rng.uniform(0.02, 0.2)),
        shift=(float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.05, 0.05))),
    )
    image = crops.cut(sample.image, window)
    masks = crops.cut_masks(sample.masks, window)
    person_height = (y1 - y0) * crops.crop_scale(window)
    image = degrade_like_camera(image, person_height, config, rng)
    return _drop_small(_with(sample, image, masks, sample.class_ids))


def degrade_like_camera(
    image: np.ndarray, person_height: float, config: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """A sharp crop whose person is `person_height` px tall -> as if that person had been
    30-150 px tall in a compressed camera frame and scaled up to this size."""
    return camera_look.degrade(
        image, person_height, rng, heights=config.crop_person_height, jpeg=config.crop_jpeg_quality
    )


def finish(
    sample: InstanceSample, config: AugmentConfig, rng: np.random.Generator
) -> InstanceSample:
    """The last, photometric and mirror, steps every training view gets."""
    out = sample
    if rng.random() < config.flip_prob:
        out = hflip(out)
    if rng.random() < config.colour_prob:
        out = _with(out, jitter_colour(out.image, rng), out.masks, out.class_ids)
    return out


def _with(
    sample: InstanceSample, image: np.ndarray, masks: np.ndarray, class_ids: np.ndarray
) -> InstanceSample:
    return InstanceSample(sample.image_id, image, masks, class_ids)


def _drop_small(sample: InstanceSample) -> InstanceSample:
    keep = sample.masks.sum(axis=(1, 2)) >= MIN_INSTANCE_PIXELS
    if keep.all():
        return sample
    return _with(sample, sample.image, sample.masks[keep], sample.class_ids[keep])
