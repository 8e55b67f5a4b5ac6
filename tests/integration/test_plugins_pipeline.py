"""A user's own classifiers in the pipeline (one imported from a Keras .h5), against the real
broker and Postgres: a worker started with FASHIONSTREAM_PLUGINS (and, like every worker of the
suite, without the training stack) writes each plug-in's head into the garments' attributes
and probabilities, and names the plug-ins in the rows' model version."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2.extensions

from fashionstream.app.local_run import start_group_at_end
from fashionstream.core.settings import Settings
from tests.support.pipeline import (
    ImageServer,
    catalogue_rows,
    running_worker,
    send_feed,
    unique,
    wait_for_images,
    worker_command,
)
from tests.support.plugin_models import (
    KERAS_LABELS,
    PATTERNS,
    gender_plugin,
    keras_plugin,
    pattern_plugin,
)

TIMEOUT_S = 300.0


def test_plugged_heads_reach_postgres(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    plugins = (gender_plugin(tmp_path), pattern_plugin(tmp_path), keras_plugin(tmp_path))
    group = unique("it-plugins")
    feed = unique("plugged-catalogue")
    start_group_at_end(local_stack, group)
    with (
        ImageServer() as images,
        running_worker(
            local_stack, group, tmp_path / "worker.log", worker_command(), plugins=plugins
        ) as worker,
    ):
        rows = catalogue_rows(images.base_url, prefix="")
        assert send_feed(local_stack, rows, feed) == len(rows)
        wait_for_images(db, feed, len(rows), TIMEOUT_S, worker)
    with db.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT i.model_version FROM images i JOIN sources s ON s.id = i.source_pk"
            " WHERE s.source_id = %s",
            (feed,),
        )
        (version,) = (row[0] for row in cur.fetchall())
        assert "+plugin:my_gender-" in version
        assert f"+plugin:pattern-{_sha8(plugins[1])}" in version
        assert version.endswith(f"+plugin:vgg_style-{_sha8(plugins[2])}")
        cur.execute(
            "SELECT g.attributes, g.probabilities FROM garments g"
            " JOIN images i ON i.id = g.image_id JOIN sources s ON s.id = i.source_pk"
            " WHERE s.source_id = %s",
            (feed,),
        )
        garments = cur.fetchall()
    assert len(garments) >= 20  # the sample catalogue's garments (55 found offline)
    for attributes, probabilities in garments:
        assert attributes["pattern"]["label"] in PATTERNS
        assert set(probabilities["pattern"]) == set(PATTERNS)
        assert attributes["usage_vgg"]["label"] in KERAS_LABELS
        # the replaced head keeps our labels (the spec's class_map)
        assert set(probabilities["gender"]) == {"Boys", "Girls", "Men", "Unisex", "Women"}


def _sha8(spec: Path) -> str:
    return str(json.loads(spec.read_text())["sha256"])[:8]
