-- fashionstream schema: thumbnails for the popular-items report. A small JPEG (at most 96x144
-- pixels, quality 70: a few KB) of each sighting's best view, and of each tagged catalogue image.
-- Cut at tagging time, where the pixels exist (stream_processors/thumbnails.py); written by the
-- same transaction as their sighting (sinks/sightings.py) or image (sinks/postgres.py).
-- Why in Postgres and not files or an object store beside it: they are small and written with
-- their rows, so one transaction keeps a sighting and its picture together (no orphan files, no
-- missing pictures after a crash), one backup holds both, and a deployment runs no second system.
-- Kept in their own tables so the wide scans of sightings and images never read the bytes.

CREATE TABLE sighting_thumbnails (
    sighting_pk bigint  PRIMARY KEY REFERENCES sightings (id) ON DELETE CASCADE,
    jpeg        bytea   NOT NULL CHECK (octet_length(jpeg) BETWEEN 4 AND 65536),
    width       integer NOT NULL CHECK (width > 0),
    height      integer NOT NULL CHECK (height > 0)
);

CREATE TABLE image_thumbnails (
    image_id bigint  PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    jpeg     bytea   NOT NULL CHECK (octet_length(jpeg) BETWEEN 4 AND 65536),
    width    integer NOT NULL CHECK (width > 0),
    height   integer NOT NULL CHECK (height > 0)
);
