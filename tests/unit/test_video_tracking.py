"""`fashionstream track` / `annotate` for one recording, without Kafka, on the committed clips
with the deterministic fake tagger (the real detector's counts are in tests/models): the frames
are the producer's, the tracker closes the recording's sightings at its last frame, the same
file gives the same sightings, and the annotated video and key frames are written."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import pytest

from fashionstream.app.cli import main
from fashionstream.app.video_annotation import annotate_recording
from fashionstream.app.video_tracking import TrackingRun, track_recording
from fashionstream.core.settings import REPO_ROOT, Settings
from models.tracking import EndReason, TrackingConfig
from producers.decoding import VideoOptions
from tests.support.fake_tagger import FakeTagger

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "video"
SHORT = FIXTURES / "person_4s.mp4"  # 4 s: 8 frames at 2 fps
PEOPLE = FIXTURES / "people_3.mp4"  # 40 s: 80 frames at 2 fps


def settings() -> Settings:
    return Settings.from_env(environ={})


def track(path: Path) -> TrackingRun:
    s = settings()
    return track_recording(
        path,
        FakeTagger(),
        camera="cam-1",
        config=TrackingConfig.from_settings(s),
        options=VideoOptions.from_settings(s),
        batch_size=4,
    )


def test_a_recording_is_tracked_to_its_end_and_reported_in_the_documented_shape() -> None:
    run = track(PEOPLE)
    assert run.frames == 80
    assert run.decode_errors == 0
    # the fake sees one person filling every frame: one sighting, closed by the last frame
    (sighting,) = run.sightings
    assert (sighting.first_frame, sighting.frames) == (0, 80)
    assert sighting.end_reason is EndReason.END_OF_STREAM
    # offline tracking cuts the people's crops as the pipeline does: the best view carries one
    assert sighting.best.thumbnail is not None
    assert sighting.best.thumbnail.startswith(b"\xff\xd8\xff")
    report = json.loads(json.dumps(run.to_json()))
    assert report["frames"] == 80
    (j,) = report["sightings"]
    assert j["first_seen_s"] == 0.0
    assert j["last_seen_s"] == pytest.approx(39.5)
    assert j["frames"] == 80
    (top,) = j["garments"]
    assert top["category"] == "top"
    assert set(top["attributes"]) == {"gender"}


def test_the_same_file_gives_the_same_sightings() -> None:
    assert track(SHORT).sightings == track(SHORT).sightings


def test_annotate_writes_every_sampled_frame_and_one_key_frame_per_sighting(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.mp4"
    keys = tmp_path / "keys"
    report = annotate_recording(
        settings(), SHORT, out, camera="cam-1", tagger=FakeTagger(), key_frames=keys
    )
    assert report["frames"] == 8
    assert len(report["sightings"]) == 1
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 8
    assert frames[0].shape == (382, 640, 3)  # 640x360 frame + the legend strip
    (key,) = report["key_frames"]
    image = cv2.imread(key)
    assert image is not None
    assert image.shape == (382, 640, 3)
    assert sorted(p.name for p in keys.iterdir()) == [Path(key).name]


def test_the_cli_tracks_with_the_shipped_models_or_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["track", str(tmp_path / "missing.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["annotate", str(SHORT), "-o", str(tmp_path / "out.png")]) == 2
    assert ".mp4" in capsys.readouterr().err
