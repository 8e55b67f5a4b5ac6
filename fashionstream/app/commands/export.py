"""`fashionstream export graphs`: the ONNX graphs the runtime runs, exported from the trainable
weights in weights/ (the training stack), so the runtime install never needs torch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionstream.app.commands import Commands
from fashionstream.app.extras import needs_training_stack
from fashionstream.core.settings import Settings


def register(commands: Commands) -> None:
    """Adds `export graphs`."""
    group = commands.add_parser("export", help="export shipped weights for the runtime")
    exports = group.add_subparsers(dest="what", required=True, metavar="WHAT")
    g = exports.add_parser(
        "graphs",
        help="write the ONNX graph of every network trained here into weights/",
        description="Exports the garment detectors (detector, person_crops) and the attribute "
        "classifier with its embedding head from their trainable weights to ONNX (opset 17; "
        "exact float16 weights stored as float16), writes <entry file stem>.onnx beside them "
        "and records file, sha256 and the entries they came from in each manifest entry's "
        "`graph` block. Rerun it after retraining: the runtime refuses a graph whose source "
        "entry has changed.",
    )
    g.add_argument("--weights", type=Path, help="weights folder; default: settings")
    g.set_defaults(func=_export_graphs)


@needs_training_stack("export graphs")
def _export_graphs(settings: Settings, args: argparse.Namespace) -> int:
    from models.registry import default_registry
    from models.runtime.export import export_graphs

    weights_dir: Path = args.weights or settings.weights_dir
    for entry in export_graphs(weights_dir, default_registry()):
        size = (weights_dir / entry.graph["file"]).stat().st_size
        row = {"entry": entry.name, "bytes": size, **entry.graph}
        print(json.dumps(row))
    return 0
