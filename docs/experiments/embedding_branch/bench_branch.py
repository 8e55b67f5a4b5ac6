"""Median CPU ms per crop (batch 16, 160 px, 2 threads): today's forward (attributes + linear
head) vs the same forward with the retrieval branch forked at stage-6 (or stage-5) input."""

import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from models.attributes.classifier import AttributeClassifier

torch.set_num_threads(2)
clf = AttributeClassifier.from_weights(Path("weights"))
net = clf.network
today = clf.module.eval()
fork = int(sys.argv[1]) if len(sys.argv) > 1 else 6


class WithBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = net
        self.branch = nn.Sequential(
            *([copy.deepcopy(net.blocks[5])] if fork == 5 else []),
            copy.deepcopy(net.blocks[6]),
            copy.deepcopy(net.head),
        )
        self.proj = nn.Linear(1280, 256)

    def forward(self, x):
        h = self.net.stem(x)
        h = self.net.blocks[:fork](h)
        t = self.net.blocks[fork:](h)
        pooled = self.net.head(t).mean((2, 3))
        logits = tuple(self.net.classifiers[n](pooled) for n in self.net.head_names)
        e = nn.functional.normalize(self.proj(self.branch(h).mean((2, 3))), dim=1)
        return (*logits, e)


new = WithBranch().eval()
x = torch.randn(16, 3, 160, 160)


def bench(m, n=60):
    ts = []
    with torch.inference_mode():
        for _ in range(10):
            m(x)
        for _ in range(n):
            t = time.perf_counter()
            m(x)
            ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000 / 16


for r in range(2):
    a, b = bench(today), bench(new)
    print(
        f"round {r}: today {a:.3f} ms/crop, with branch(fork {fork}) {b:.3f} ms/crop, "
        f"extra {b - a:.3f} ms ({(b - a) / a * 100:.1f}%)",
        flush=True,
    )
