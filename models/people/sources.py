"""The public person-box datasets the person detector learns from, pinned to a commit of the
repository that holds them, and a reader of their YOLO-format labels straight out of a git
snapshot (a bare repository or a clone: `git cat-file`, no checkout needed)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PeopleDataset:
    """One Roboflow YOLO export committed in a public repository."""

    name: str
    repo: str  # owner/name on GitHub
    commit: str  # 40 hex digits: the exact tree the shipped weights were trained on
    folder: str  # the export's folder inside the repository ("" = the root)
    licence: str
    attribution: str
    person_classes: tuple[int, ...]  # YOLO class ids that are people
    copies_per_source: int  # augmented versions of each source photo in the export
    what: str  # what the images really are (looked at)


DATASETS: tuple[PeopleDataset, ...] = (
    PeopleDataset(
        name="capston2",
        repo="ahsanirfan961/Person-Tracker",
        commit="49473929cfd908d54becb8a0c8d9e9f7709f5aa1",
        folder="Capston2-11",
        licence="CC BY 4.0",
        attribution="Capston2 v11 by siwookim, Roboflow Universe "
        "(universe.roboflow.com/siwookim/capston2), CC BY 4.0",
        person_classes=(0,),
        copies_per_source=2,
        what="11,484 images, 640x640 stretched: COCO photos with people (numeric names), "
        "YouTube and phone video frames, indoor lobby/office CCTV; people of most sizes",
    ),
    PeopleDataset(
        name="clinical_cctv",
        repo="adiandrianto/YOLOv8-clinical-trial-subject-counter",
        commit="54da3b8280865c4fcaeddb661426a08db2bc4e53",
        folder="dataset",
        licence="CC BY 4.0",
        attribution="cctv v2 by ai-indonesia, Roboflow Universe "
        "(universe.roboflow.com/ai-indonesia/cctv-vh5b6), CC BY 4.0",
        # 0 = trial subject, 1 = other personnel: both are people
        person_classes=(0, 1),
        copies_per_source=2,
        what="560 images of a raised indoor CCTV view (1920x1080): seated and standing people, "
        "occluded by furniture and each other",
    ),
    PeopleDataset(
        name="tiny_people",
        repo="projectaeroaiml/human_rpi",
        commit="c30f2b4e00aa796678c7a996640c88de9bf526b8",
        folder="",
        licence="CC BY 4.0",
        attribution="Tiny people detection RPI v1 by resq, Roboflow Universe "
        "(universe.roboflow.com/resq/tiny-people-detection-rpi), CC BY 4.0",
        person_classes=(0,),
        copies_per_source=3,
        what="1,838 images, 640x640 stretched: small and tiny people on beaches, at sea and in "
        "fields, seen from drones and raised cameras",
    ),
)

_SPLITS = ("train", "valid", "test")
_ROBOFLOW_SUFFIX = re.compile(r"\.rf\.[0-9a-f]+$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class LabelledImage:
    """One export image: its encoded bytes and person boxes (n, 4) xyxy in [0, 1] of the width
    and height. `source` names the photo the export made it from (shared by its augmented
    copies); `group` the recording it came from, where the name shows one."""

    dataset: str
    path: str
    source: str
    group: str
    data: bytes
    boxes: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"LabelledImage.boxes: expected (n, 4), got {self.boxes.shape}")


def source_name(file_name: str) -> str:
    """The source photo of a Roboflow export file: `frame_12_jpg.rf.<hash>.jpg` is
    `frame_12_jpg`."""
    stem = Path(file_name).stem
    return _ROBOFLOW_SUFFIX.sub("", stem)


def group_name(source: str) -> str:
    """The recording a source photo belongs to when its name has letters and ends in a frame
    number (`bb_V0033_I0009840_jpg` -> `bb_V0033_I#`): frames of one video never straddle the
    train/validation split. Names of digits only (COCO ids, timestamps) are their own group."""
    stem = re.sub(r"_(jpe?g|png)$", "", source)
    match = re.search(r"^(.*\D)(\d+)(\D*)$", stem)
    if not match or not re.search(r"[A-Za-z]", match.group(1)):
        return stem
    return f"{match.group(1)}#{match.group(3)}"


def parse_yolo_labels(text: str, person_classes: tuple[int, ...]) -> np.ndarray:
    """YOLO label lines -> (n, 4) xyxy in [0, 1]. A line is `class cx cy w h` (a box) or
    `class x1 y1 x2 y2 ...` (a polygon: its enclosing box). Other classes are dropped; a
    malformed line is an error naming it."""
    boxes = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(parts[0])
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise ValueError(f"label line {number}: not numbers: {line[:80]!r}") from None
        if cls not in person_classes:
            continue
        if len(values) == 4:
            cx, cy, w, h = values
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            box = (min(xs), min(ys), max(xs), max(ys))
        else:
            raise ValueError(f"label line {number}: {len(values)} coordinates: {line[:80]!r}")
        boxes.append(box)
    out = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0.0, 1.0)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep]


class GitSnapshot:
    """Files of one commit of a git repository (bare or not), read with `git cat-file`."""

    def __init__(self, git_dir: Path, commit: str) -> None:
        self.git_dir = git_dir
        self.commit = commit
        probe = self._git("cat-file", "-t", commit, check=False)
        if probe.returncode != 0 or probe.stdout.strip() != b"commit":
            raise ValueError(
                f"{git_dir} has no commit {commit}: fetch the repository's snapshot first"
            )

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(  # noqa: S603 (fixed git sub-commands, no shell)
            ["git", "--git-dir", str(self.git_dir), *args],  # noqa: S607
            capture_output=True,
            check=check,
        )

    def list_files(self, folder: str) -> list[str]:
        args = ["ls-tree", "-r", "--name-only", self.commit]
        if folder:
            args.append(folder.rstrip("/") + "/")
        return self._git(*args).stdout.decode().splitlines()

    def read_many(self, paths: list[str]) -> Iterator[tuple[str, bytes | None]]:
        """(path, bytes) per path, None where the object is not in the snapshot (a large file
        the snapshot left out)."""
        proc = subprocess.Popen(  # noqa: S603
            ["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"],  # noqa: S607
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        if proc.stdin is None or proc.stdout is None:
            raise RuntimeError("git cat-file: no pipes")
        # requests go in chunks small enough for the pipe buffer, so git never blocks on a
        # full stdout while we are still writing its stdin
        out = proc.stdout
        for start in range(0, len(paths), 256):
            chunk = paths[start : start + 256]
            proc.stdin.write("".join(f"{self.commit}:{p}\n" for p in chunk).encode())
            proc.stdin.flush()
            for path in chunk:
                header = out.readline().decode().split()
                if len(header) == 2 and header[1] == "missing":
                    yield path, None
                    continue
                size = int(header[2])
                data = out.read(size)
                out.read(1)  # the newline after each object
                yield path, data
        proc.stdin.close()
        proc.wait()


def read_dataset(dataset: PeopleDataset, git_dir: Path) -> Iterator[LabelledImage]:
    """Every labelled image of `dataset` in its snapshot at `git_dir`, in path order."""
    snapshot = GitSnapshot(git_dir, dataset.commit)
    files = snapshot.list_files(dataset.folder)
    prefix = f"{dataset.folder}/" if dataset.folder else ""
    labels = {f for f in files if f.endswith(".txt") and "/labels/" in f}
    pairs: list[tuple[str, str]] = []
    for path in sorted(files):
        relative = path[len(prefix) :]
        if relative.split("/")[0] not in _SPLITS or "/images/" not in path:
            continue
        if not path.lower().endswith(_IMAGE_SUFFIXES):
            continue
        label = str(Path(path.replace("/images/", "/labels/")).with_suffix(".txt"))
        if label in labels:
            pairs.append((path, label))
    label_text = {p: d for p, d in snapshot.read_many([lab for _, lab in pairs])}
    images = snapshot.read_many([img for img, _ in pairs])
    for (image_path, label_path), (_, data) in zip(pairs, images, strict=True):
        text = label_text.get(label_path)
        if data is None or text is None:
            continue
        source = source_name(image_path)
        yield LabelledImage(
            dataset=dataset.name,
            path=image_path,
            source=source,
            group=group_name(source),
            data=data,
            boxes=parse_yolo_labels(text.decode(), dataset.person_classes),
        )
