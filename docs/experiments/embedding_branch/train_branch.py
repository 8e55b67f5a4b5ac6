"""Exploration: a retrieval branch forked off the attribute trunk (trainable copy of the layers
after the fork, initialised from the attribute weights) trained on cached feature maps with the
embedding head's weak labels and losses; figures as `train embedding` reports them."""

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.attributes import data as D
from models.attributes.classifier import AttributeClassifier
from models.embedding.features import FeatureSet
from models.embedding.figures import held_out_figures
from models.embedding.head import load_head
from models.embedding.train import MIN_CLASS_ITEMS, TARGETS, _target, weak_label_loss

torch.set_num_threads(2)

ap = argparse.ArgumentParser()
ap.add_argument("--fork", type=int, default=6)  # 6: stage-6 input (192x5x5); 5: stage-5 input
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--trunk-lr", type=float, default=2e-4)
ap.add_argument("--scale", type=float, default=16.0)
ap.add_argument("--pool", default="avg")  # avg | gem
ap.add_argument("--bn", default="frozen")  # frozen | train
ap.add_argument("--flip", type=float, default=0.5)
ap.add_argument("--init-head", type=int, default=1)
ap.add_argument("--wd", type=float, default=1e-4)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--eval-every", type=int, default=0)
ap.add_argument("--save", default="")
args = ap.parse_args()
print(vars(args), flush=True)
torch.manual_seed(args.seed)

root = Path("runs/branch/maps")
key = f"stage{args.fork}"


def load(src):
    meta = json.loads((root / src / "items.json").read_text())
    items = [D.Item(**r) for r in meta["items"]]
    arrs = [np.load(p)[key] for p in sorted((root / src).glob("part-*.npz"))]
    x = np.concatenate(arrs)
    return FeatureSet(x.reshape(len(x), -1), items), x.shape[1:]


catalogue, shape = load("catalogue")
street, _ = load("ccp")
print("loaded", catalogue.features.shape, street.features.shape, shape, flush=True)

clf = AttributeClassifier.from_weights(Path("weights"), with_embedding=False)
net = clf.network


class GeM(nn.Module):
    def __init__(self, p=3.0):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(p))

    def forward(self, x):
        return x.clamp(min=1e-6).pow(self.p).mean((2, 3)).pow(1.0 / self.p)


class Branch(nn.Module):
    def __init__(self):
        super().__init__()
        layers = ([copy.deepcopy(net.blocks[5])] if args.fork == 5 else []) + [
            copy.deepcopy(net.blocks[6]),
            copy.deepcopy(net.head),
        ]
        self.trunk = nn.Sequential(*layers)
        self.pool = GeM() if args.pool == "gem" else None
        self.proj = nn.Linear(1280, 256)

    def forward(self, x):
        h = self.trunk(x)
        p = self.pool(h) if self.pool is not None else h.mean((2, 3))
        return nn.functional.normalize(self.proj(p), dim=1)


branch = Branch()
if args.init_head:
    head = load_head("weights/embedding_linear.pt", dim=256)
    branch.proj.load_state_dict(head.projection.state_dict())


def set_train():
    branch.train()
    if args.bn == "frozen":
        for m in branch.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()


def embed(flat):
    branch.eval()
    out = []
    with torch.inference_mode():
        for b in range(0, len(flat), 512):
            x = torch.from_numpy(np.asarray(flat[b : b + 512], np.float32)).view(-1, *shape)
            out.append(branch(x).numpy())
    return np.concatenate(out)


def figures():
    f = held_out_figures(catalogue, street, embed)
    return {
        "articleType": round(f["catalogue"]["articleType"], 4),
        "articleType_baseColour": round(f["catalogue"]["articleType_baseColour"], 4),
        "street": round(f["street"]["category"], 4),
        "common_types_articleType": round(f["catalogue_common_types"]["articleType"], 4),
    }


train = catalogue.where(lambda i: not i.held_out).joined(street.where(lambda i: not i.held_out))
x_all = torch.from_numpy(train.features)  # float16, cast per batch
targets = {}
for name in TARGETS:
    values = [_target(dict(i.labels), name) for i in train.items]
    counts = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    classes = sorted(c for c, n in counts.items() if n >= MIN_CLASS_ITEMS)
    ids = {c: i for i, c in enumerate(classes)}
    targets[name] = (
        torch.tensor([ids.get(v, -1) if v is not None else -1 for v in values]),
        len(classes),
    )
proxies = nn.ParameterDict(
    {n.replace("+", "_"): nn.Parameter(torch.randn(k, 256) * 0.01) for n, (_, k) in targets.items()}
)
if args.init_head:
    # proxies start at the class means of the current embedding (the head starts where it was)
    z0 = torch.from_numpy(embed(train.features))
    with torch.no_grad():
        for n, (y, k) in targets.items():
            P = proxies[n.replace("+", "_")]
            for c in range(k):
                sel = y == c
                if sel.any():
                    P[c] = nn.functional.normalize(z0[sel].mean(0), dim=0)
trunk_params = [p for n, p in branch.named_parameters() if n.startswith("trunk")]
other = [p for n, p in branch.named_parameters() if not n.startswith("trunk")]
opt = torch.optim.AdamW(
    [
        {"params": trunk_params, "lr": args.trunk_lr},
        {"params": other + list(proxies.parameters()), "lr": args.lr},
    ],
    weight_decay=args.wd,
)
steps = args.epochs * ((len(x_all) + args.batch - 1) // args.batch)
sched = torch.optim.lr_scheduler.OneCycleLR(
    opt, max_lr=[args.trunk_lr, args.lr], total_steps=steps, pct_start=0.1, anneal_strategy="cos"
)
print("init", figures(), flush=True)
g = torch.Generator().manual_seed(args.seed)
for epoch in range(args.epochs):
    set_train()
    t0 = time.monotonic()
    tot = 0.0
    nb = 0
    order = torch.randperm(len(x_all), generator=g)
    for b in range(0, len(x_all), args.batch):
        rows = order[b : b + args.batch]
        xb = x_all[rows].float().view(-1, *shape)
        if args.flip:
            f = torch.rand(len(xb), generator=g) < args.flip
            xb[f] = xb[f].flip(-1)
        loss = weak_label_loss(branch(xb), rows, targets, proxies, TARGETS, args.scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        tot += float(loss)
        nb += 1
    msg = f"epoch {epoch + 1}/{args.epochs} loss {tot / nb:.4f} ({time.monotonic() - t0:.0f} s)"
    if args.eval_every and ((epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs):
        msg += " " + json.dumps(figures())
    print(msg, flush=True)
final = figures()
print("final", json.dumps(final), flush=True)
if args.save:
    torch.save(branch.state_dict(), args.save)
