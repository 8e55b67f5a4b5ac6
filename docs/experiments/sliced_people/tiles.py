"""Sliced inference for small people, measured and not shipped (README.md beside this file): the
shipped person detector's runs (416 + 640) plus a grid of overlapping tiles, each fitted into a
square, every box through one NMS.

    python docs/experiments/sliced_people/tiles.py val_tiny_people val_clinical_cctv

reads data/people/<name>.json: subsets of `fashionstream data people`'s val.json by file name
(weights/people.md, "Measured")."""

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.onnx_models.detector import OnnxSpecDetector, nms
from models.people.boxes import PersonBoxes
from models.people.evaluate import evaluate_people

PEOPLE = Path("data/people")
SPEC = Path("weights/people-yolox_nano.spec.json")


class Tiled:
    """The shipped detector, and `grid` x `grid` tiles overlapping by `overlap`."""

    def __init__(self, base: OnnxSpecDetector, grid: int, size: int, overlap: float = 0.2):
        self.base, self.grid, self.overlap = base, grid, overlap
        self.fit = replace(base.spec.input, size=(size, size))

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonBoxes]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            found = self.base.detect([image])[0]
            boxes, scores = [found.boxes], [found.scores]
            span = self.grid - (self.grid - 1) * self.overlap
            tile_w, tile_h = w / span, h / span
            for gy in range(self.grid):
                for gx in range(self.grid):
                    x0 = int(gx * tile_w * (1 - self.overlap))
                    y0 = int(gy * tile_h * (1 - self.overlap))
                    x1, y1 = min(w, int(x0 + tile_w)), min(h, int(y0 + tile_h))
                    tile = np.ascontiguousarray(image[y0:y1, x0:x1])
                    for tile_boxes, tile_scores in self.base._run(tile, self.fit).values():
                        boxes.append(tile_boxes + np.array([x0, y0, x0, y0], np.float32))
                        scores.append(tile_scores)
            merged = np.concatenate(boxes).reshape(-1, 4).astype(np.float32)
            merged_scores = np.concatenate(scores).astype(np.float32)
            keep = nms(merged, merged_scores, self.base.spec.thresholds.nms_iou)
            out.append(PersonBoxes(boxes=merged[keep], scores=merged_scores[keep]))
        return out


def main() -> None:
    base = OnnxSpecDetector.from_spec_file(SPEC, threads=1, threshold=0.0)
    for name in sys.argv[1:]:
        found = evaluate_people(Tiled(base, 2, 416), PEOPLE / f"{name}.json", PEOPLE / "images")
        print(name, found.person_ap50, found.ap50_by_height, found.seconds_per_image, flush=True)


if __name__ == "__main__":
    main()
