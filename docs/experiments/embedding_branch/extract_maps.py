"""Exploration: cache the attribute trunk's stage-5 input (112x10x10) and stage-6 input
(192x5x5) of every catalogue photo / CCP region, same crops as models.embedding.features."""

import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from models.attributes.classifier import AttributeClassifier
from models.attributes.data import DataLayout
from models.embedding import features as F

torch.set_num_threads(2)

logging.basicConfig(level=logging.INFO)
source = sys.argv[1]
out = Path(f"runs/branch/maps/{source}")
out.mkdir(parents=True, exist_ok=True)
clf = AttributeClassifier.from_weights(Path("weights"), with_embedding=False)
net = clf.network
layout = DataLayout(Path("../shared/data"))
items, chunk = [], []
t0 = time.monotonic()


def write(idx):
    p = out / f"part-{idx:04d}.npz"
    if not p.is_file():
        s5, s6, pooled = [], [], []
        for b in range(0, len(chunk), 64):
            x = clf.to_batch([m() for _, m in chunk[b : b + 64]])
            with torch.inference_mode():
                h = net.blocks[:5](net.stem(x))
                s5.append(h.half().numpy())
                h = net.blocks[5](h)
                s6.append(h.half().numpy())
                pooled.append(net.head(net.blocks[6](h)).mean((2, 3)).half().numpy())
        tmp = out / f".part-{idx:04d}.npz"
        with open(tmp, "wb") as f:
            np.savez(
                f,
                stage5=np.concatenate(s5),
                stage6=np.concatenate(s6),
                pooled=np.concatenate(pooled),
            )
        tmp.replace(p)
    print(f"{source}: {len(items)} items {len(items) / (time.monotonic() - t0):.1f}/s", flush=True)


for item, make in F._lazy_crops(layout, clf, (source,)):
    items.append(item)
    chunk.append((item, make))
    if len(chunk) == F.PART_SIZE:
        write(len(items) // F.PART_SIZE - 1)
        chunk = []
if chunk:
    write((len(items) - 1) // F.PART_SIZE)
(out / "items.json").write_text(json.dumps({"items": [asdict(i) for i in items]}))
print("done", len(items), time.monotonic() - t0)
