"""Records the person-crop detector's real inputs (prepared, padded float32 arrays) while the
shipped tagger (ONNX Runtime) tags 16 frames of the tram-stop and 16 of the street clip.

    PYTHONPATH=. python docs/experiments/int8_person_crops/collect.py OUT.npy
"""

import sys
from pathlib import Path

import numpy as np

from fashionstream.app.commands.tagger import load_frames
from fashionstream.core.settings import Settings
from models.detection.processing import prepare_input
from models.runtime.graphs import GraphDetector
from models.tagger import FashionTagger

seen = []
record = GraphDetector.raw


def raw(self, images):
    if self.sizing.min_size == 224:  # the person-crop detector's input size
        seen.extend(prepare_input(image, self.sizing, self.normalisation)[0] for image in images)
    return record(self, images)


GraphDetector.raw = raw
tagger = FashionTagger.from_settings(Settings(torch_threads=2))
for clip in ("tram_stop_cctv_640x480.mp4", "street_crossing_640x360.mp4"):
    frames, _ = load_frames(Path("../shared/data/videos") / clip, 16)
    for i in range(0, len(frames), 8):
        tagger.tag(frames[i : i + 8])
    print(clip, len(seen), "crops so far", flush=True)
np.save(sys.argv[1], np.stack([s for s in seen if s.shape == seen[0].shape]).astype(np.float32))
