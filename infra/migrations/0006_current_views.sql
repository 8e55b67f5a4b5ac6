-- fashionstream schema: what counts once. A video or a catalogue tagged again by a new model keeps
-- the old model's rows (images are keyed by event id and model version, sightings carry theirs),
-- so every count -- the popular-items report (sinks/report_queries.py) and the Grafana business
-- panels (infra/grafana) -- reads these views, one definition of "the latest", instead of each
-- repeating it (the panels did not, and counted a re-tagged clip twice).
-- A view's `*` is expanded when it is created: a later migration that adds a column to the
-- table and needs it here re-creates the view.

-- a sighting of the model that last processed its camera's stream
CREATE VIEW current_sightings AS
SELECT x.*
FROM sightings x
WHERE NOT EXISTS (
    SELECT 1 FROM sightings n
    WHERE n.source_pk = x.source_pk AND n.stream_ref = x.stream_ref
      AND n.model_version <> x.model_version AND n.written_at > x.written_at
);

-- the latest tagging of an image
CREATE VIEW current_images AS
SELECT i.*
FROM images i
WHERE NOT EXISTS (
    SELECT 1 FROM images n WHERE n.event_id = i.event_id AND n.written_at > i.written_at
);
