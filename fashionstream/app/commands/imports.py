"""`fashionstream import detector`: a pretrained ONNX detector into weights/, from a pinned
source, with its model spec, licence text and manifest entry."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from fashionstream.app.commands import Commands
from fashionstream.app.extras import needs_training_stack
from fashionstream.core.settings import Settings

log = logging.getLogger("fashionstream.import")


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


@needs_training_stack("import detector")
def _import_detector(settings: Settings, args: argparse.Namespace) -> int:
    from models.onnx_models.importer import ImportFailed, import_detector
    from models.onnx_models.known_specs import KNOWN, known_template
    from models.onnx_models.spec import SpecError
    from models.people.sources import GitSnapshot

    try:
        if args.template in KNOWN:
            template = known_template(args.template)
        else:
            template = json.loads(Path(args.template).read_text())
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


def _portable_command(args: argparse.Namespace, template: dict[str, Any]) -> str:
    """The command as run, with this machine's snapshot path replaced by what it holds, so
    the manifest says how anyone reruns it."""
    argv = list(sys.argv[1:])
    if args.snapshot is not None and str(args.snapshot) in argv:
        repository = template.get("source", {}).get("repository", "the source repository")
        argv[argv.index(str(args.snapshot))] = f"<git dir of {repository}>"
    return "fashionstream " + shlex.join(argv)
