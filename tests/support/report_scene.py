"""A known scene for the report and the Grafana business panels, written through the real sinks:
people walking past two cameras over three days (each visit a short recording that the real
tracker turns into one sighting, with a drawn best-view thumbnail), and a catalogue feed of
tagged product photos with thumbnails. The expected counts are in `EXPECTED`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import numpy as np
from PIL import Image, ImageDraw
from prometheus_client import CollectorRegistry

from fashionstream.core.metrics import Metrics
from fashionstream.core.records import (
    SourceKind,
    TaggedImage,
    WireColour,
    WireGarment,
    WireLabel,
    WireMask,
    event_id_for_frame,
)
from fashionstream.core.settings import Settings
from models.tracking import STATE_FORMAT, CameraTracker, TrackingConfig, frame_detections
from sinks.postgres import PostgresSink
from sinks.sightings import CameraWrite, SightingSink
from stream_processors.thumbnails import jpeg_thumbnail
from tests.support.records import tagged_image

# the period the scene lies in: three UTC days
DAY0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
SINCE = DAY0
UNTIL = DAY0 + dt.timedelta(days=3)

# name -> (rgb, article type)
COLOURS = {
    "Black": (25, 25, 28),
    "Blue": (40, 80, 170),
    "Red": (190, 30, 40),
    "White": (240, 240, 236),
    "Beige": (214, 196, 160),
}
# (camera, day, top colour, top article, bottom colour) per visit: one person each
VISITS = [
    ("cam-entrance", 0, "Black", "Jackets", "Blue"),
    ("cam-entrance", 0, "Black", "Jackets", "Black"),
    ("cam-entrance", 1, "Red", "Tshirts", "Blue"),
    ("cam-entrance", 1, "Black", "Jackets", "Blue"),
    ("cam-entrance", 2, "White", "Shirts", "Beige"),
    ("cam-entrance", 2, "Black", "Jackets", "Blue"),
    ("cam-street", 0, "Blue", "Tshirts", "Blue"),
    ("cam-street", 1, "Black", "Jackets", "Black"),
    ("cam-street", 2, "White", "Shirts", "Blue"),
]
# one visit on the day before the period: the previous period's data for trends
PREVIOUS_VISITS = [("cam-entrance", -1, "Red", "Tshirts", "Black")]
# (item id, day, category, article type, colour) of the feed's products
PRODUCTS = [
    ("sku-jacket-1", 0, "outwear", "Jackets", "Black"),
    ("sku-jacket-2", 1, "outwear", "Jackets", "Black"),
    ("sku-tee-1", 1, "t-shirt", "Tshirts", "Red"),
    ("sku-shirt-1", 2, "shirt", "Shirts", "White"),
    ("sku-jeans-1", 2, "pants", "Jeans", "Blue"),
]
FEED = "feed-shop"
FRAMES_PER_VISIT = 6

EXPECTED = {
    "sightings": len(VISITS),
    "sightings_per_camera": {"cam-entrance": 6, "cam-street": 3},
    "people_per_day": {DAY0.date(): 3, (DAY0 + dt.timedelta(days=1)).date(): 3,
                       (DAY0 + dt.timedelta(days=2)).date(): 3},
    # street garments = two per person (top + trousers)
    "street_categories": {"top": 9, "trousers": 9},
    "street_colours": {"Black": 7, "Blue": 7, "Red": 1, "White": 2, "Beige": 1},
    "catalogue_images": len(PRODUCTS),
    "previous_sightings": 1,
}  # fmt: skip


def person_picture(top: str, bottom: str, seed: int) -> np.ndarray:
    """A drawn person (head, top, trousers) on a plain background, as a camera crop would be."""
    image = Image.new("RGB", (120, 300), (180 + seed % 40, 185, 190))
    draw = ImageDraw.Draw(image)
    draw.ellipse((42, 10, 78, 50), fill=(224, 180, 150))
    draw.rounded_rectangle((28, 52, 92, 160), 10, fill=COLOURS[top])
    draw.rectangle((34, 160, 86, 280), fill=COLOURS[bottom])
    draw.line((60, 190, 60, 280), fill=(200, 200, 200), width=3)
    return np.asarray(image)


def product_picture(colour: str) -> np.ndarray:
    image = Image.new("RGB", (200, 260), (248, 248, 248))
    ImageDraw.Draw(image).rounded_rectangle((40, 30, 160, 230), 14, fill=COLOURS[colour])
    return np.asarray(image)


def _garment(
    index: int, category: str, article: str, colour: str, style: str, person: int | None
) -> WireGarment:
    mask = WireMask(size=(480, 640), counts="PPYo1k0O2N1O1N2")
    return WireGarment(
        index=index,
        category=category,
        score=0.9,
        box=(30.0, 40.0 + index * 100, 180.0, 140.0 + index * 100),
        mask=mask,
        attributes={"articleType": WireLabel(article, 0.8), "gender": WireLabel("Women", 0.7)},
        probabilities={"articleType": {article: 0.8, "Other": 0.2}},
        colour=WireColour(colour, COLOURS[colour], 0.7),
        style=WireLabel(style, 0.75),
        person_index=person,
    )


def _visit_frames(
    n: int, visit: tuple[str, int, str, str, str], model_version: str
) -> list[TaggedImage]:
    camera, day, top, article, bottom = visit
    start = DAY0 + dt.timedelta(days=day, hours=9 + n % 8, minutes=7 * (n % 8))
    stream = f"visit-{n}.mp4"
    crop = jpeg_thumbnail(person_picture(top, bottom, n))
    style = "Casual" if article != "Shirts" else "Formal"
    frames = []
    for i in range(FRAMES_PER_VISIT):
        base = tagged_image(
            index=i, source_id=camera, people=1, garments=0, model_version=model_version
        )
        person = dataclasses.replace(base.people[0], score=0.8 + 0.02 * i, thumbnail=crop)
        garments = (
            _garment(0, "top", article, top, style, 0),
            _garment(1, "trousers", "Jeans" if bottom == "Blue" else "Trousers", bottom, style, 0),
        )
        captured = start.timestamp() + i / 2
        frames.append(
            dataclasses.replace(
                base,
                event_id=event_id_for_frame(camera, stream, i),
                people=(person,),
                garments=garments,
                captured_at=captured,
                submitted_at=captured,
                stream_ref=stream,
                end_of_stream=i == FRAMES_PER_VISIT - 1,
            )
        )
    return frames


def _product(n: int, product: tuple[str, int, str, str, str], model_version: str) -> TaggedImage:
    item_id, day, category, article, colour = product
    captured = (DAY0 + dt.timedelta(days=day, hours=8, minutes=n)).timestamp()
    base = tagged_image(
        index=n,
        source_kind=SourceKind.FEED,
        source_id=FEED,
        people=0,
        garments=0,
        model_version=model_version,
    )
    return dataclasses.replace(
        base,
        item_id=item_id,
        garments=(_garment(0, category, article, colour, "Casual", None),),
        captured_at=captured,
        submitted_at=captured,
        thumbnail=jpeg_thumbnail(product_picture(colour)),
        people=(),
    )


def write_scene(settings: Settings, model_version: str = "test-v1") -> None:
    """Write the scene through the real sinks and the real tracker (again with another
    `model_version`: the same frames and products tagged by a new model)."""
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    rows = PostgresSink.from_settings(settings, metrics)
    sightings = SightingSink.from_settings(settings, metrics)
    trackers: dict[str, CameraTracker] = {}
    versions: dict[str, int] = {}
    visits = [(-1 - n, v) for n, v in enumerate(PREVIOUS_VISITS)] + list(enumerate(VISITS))
    try:
        for n, visit in visits:
            camera = visit[0]
            frames = _visit_frames(abs(n) + 100 * (n < 0), visit, model_version)
            for record in frames:
                rows.add(record)
            rows.flush()
            if camera not in trackers:
                stored = sightings.load(camera)
                trackers[camera] = CameraTracker(camera, TrackingConfig(fps=2.0))
                versions[camera] = 0 if stored is None else stored.version
            tracker = trackers[camera]
            closed = []
            links = []
            for record in frames:
                result = tracker.update(frame_detections(record))
                closed.extend(result.sightings)
                links.extend(result.frames)
            if len(closed) != 1:
                raise RuntimeError(f"visit {n} gave {len(closed)} sightings, expected 1")
            sightings.add(
                CameraWrite(
                    camera=camera,
                    partition=0,
                    state=tracker.to_bytes(),
                    state_format=STATE_FORMAT,
                    stream_ref=tracker.stream_ref,
                    last_frame=tracker.last_frame,
                    open_tracks=tracker.open_tracks,
                    expected_version=versions[camera],
                    sightings=tuple(closed),
                    frames=tuple(links),
                )
            )
            sightings.flush()
            versions[camera] += 1
        for n, product in enumerate(PRODUCTS):
            rows.add(_product(n, product, model_version))
        rows.flush()
    finally:
        rows.close()
        sightings.close()


def png_bytes(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()
