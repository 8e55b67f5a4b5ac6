-- fashionstream schema v2: sightings. One row per person tracked by a camera (from the frame the
-- track starts in to the frame it ends in), the garments voted over the track, the frames of each
-- sighting (the link to the per-frame `people` and `garments` rows), and each camera's tracker
-- state. Written by sinks/sightings.py: a camera's new tracker state, the sightings its tracks
-- closed and their frames commit in ONE transaction, so a worker killed at any point leaves the
-- state and the sightings consistent (see stream_processors/tracking.py).
-- Idempotency: sightings by `sighting_id` (derived from camera, stream, model version and the
-- track's first detection), garments by (sighting, index), frames by (sighting, event).

-- The tracker of one camera: ByteTrack's state and the open tracks, pickled
-- (models.tracking.CameraTracker.to_bytes). `version` grows by one per write; a write expecting
-- another version is refused (a worker that lost the camera's partition cannot overwrite it).
CREATE TABLE tracker_states (
    camera_pk       bigint      PRIMARY KEY REFERENCES sources (id) ON DELETE CASCADE,
    kafka_partition integer     CHECK (kafka_partition >= 0),  -- fashion.items.v1 partition
    stream_ref      text,        -- the stream being tracked (NULL before the first frame)
    last_frame      bigint,      -- its last frame number processed
    open_tracks     integer     NOT NULL CHECK (open_tracks >= 0),
    state_format    text        NOT NULL CHECK (state_format <> ''),
    state           bytea       NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracker_states_open ON tracker_states (kafka_partition) WHERE open_tracks > 0;

-- One sighting: a person seen by one camera, with the frame that shows them best.
CREATE TABLE sightings (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sighting_id       uuid        NOT NULL UNIQUE,
    source_pk         bigint      NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    stream_ref        text        NOT NULL CHECK (stream_ref <> ''),
    model_version     text        NOT NULL CHECK (model_version <> ''),
    stream_started_at timestamptz NOT NULL,  -- capture time of the stream's first frame
    first_seen_at     timestamptz NOT NULL,  -- capture times
    last_seen_at      timestamptz NOT NULL,
    first_frame       bigint      NOT NULL CHECK (first_frame >= 0),
    last_frame        bigint      NOT NULL,
    frames_seen       integer     NOT NULL CHECK (frames_seen > 0),
    score_mean        real        NOT NULL CHECK (score_mean BETWEEN 0 AND 1),
    score_max         real        NOT NULL CHECK (score_max BETWEEN 0 AND 1),
    -- the person's mean box over the track, in pixels of the tagged frames
    x1 real NOT NULL, y1 real NOT NULL, x2 real NOT NULL, y2 real NOT NULL,
    -- the best crop: this person (people.person_index) in this frame (images.event_id)
    best_event_id     uuid        NOT NULL,
    best_frame        bigint      NOT NULL CHECK (best_frame >= 0),
    best_person_index integer     NOT NULL CHECK (best_person_index >= 0),
    best_score        real        NOT NULL CHECK (best_score BETWEEN 0 AND 1),
    best_x1 real NOT NULL, best_y1 real NOT NULL, best_x2 real NOT NULL, best_y2 real NOT NULL,
    end_reason        text        NOT NULL
        CHECK (end_reason IN ('lost', 'max_duration', 'end_of_stream', 'stream_changed', 'idle')),
    written_at        timestamptz NOT NULL DEFAULT now(),  -- last (re)write
    CHECK (last_seen_at >= first_seen_at),
    CHECK (last_frame >= first_frame),
    CHECK (x2 >= x1 AND y2 >= y1)
);
CREATE INDEX sightings_source_time ON sightings (source_pk, first_seen_at);
CREATE INDEX sightings_time ON sightings (first_seen_at);

-- One garment a sighted person wore: category, attributes, colour and style voted over the
-- frames it was seen in, weighted by the detector's confidence.
CREATE TABLE sighting_garments (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sighting_pk        bigint      NOT NULL REFERENCES sightings (id) ON DELETE CASCADE,
    garment_index      integer     NOT NULL CHECK (garment_index >= 0),
    category           text        NOT NULL CHECK (category <> ''),
    category_share     real        NOT NULL CHECK (category_share BETWEEN 0 AND 1),
    frames_seen        integer     NOT NULL CHECK (frames_seen > 0),
    score_mean         real        NOT NULL CHECK (score_mean BETWEEN 0 AND 1),
    attributes         jsonb       NOT NULL,  -- head -> {label, prob}, voted
    colour_name        text        NOT NULL,
    colour_share       real        NOT NULL CHECK (colour_share BETWEEN 0 AND 1),
    colour_r           smallint    NOT NULL CHECK (colour_r BETWEEN 0 AND 255),
    colour_g           smallint    NOT NULL CHECK (colour_g BETWEEN 0 AND 255),
    colour_b           smallint    NOT NULL CHECK (colour_b BETWEEN 0 AND 255),
    style              text        NOT NULL,
    style_prob         real        NOT NULL CHECK (style_prob BETWEEN 0 AND 1),
    -- the frame where the detector was surest of it, and its garments.garment_index there
    best_event_id      uuid        NOT NULL,
    best_garment_index integer     NOT NULL CHECK (best_garment_index >= 0),
    -- denormalised from sightings so the common filters need no join
    source_pk          bigint      NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    first_seen_at      timestamptz NOT NULL,
    UNIQUE (sighting_pk, garment_index)
);
CREATE INDEX sighting_garments_category_time ON sighting_garments (category, first_seen_at);
CREATE INDEX sighting_garments_source_time ON sighting_garments (source_pk, first_seen_at);

-- The frames a sighting's person was seen in: joins a sighting to the per-frame rows
-- (images.event_id = event_id, then people.person_index / garments.person_index = person_index).
-- Written while the track is still open, so the sightings row may not exist yet: linked by the
-- sighting's uuid, not by a foreign key.
CREATE TABLE sighting_frames (
    sighting_id     uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    model_version   text        NOT NULL CHECK (model_version <> ''),
    source_pk       bigint      NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    frame_number    bigint      NOT NULL CHECK (frame_number >= 0),
    captured_at     timestamptz NOT NULL,
    person_index    integer     NOT NULL CHECK (person_index >= 0),
    score           real        NOT NULL CHECK (score BETWEEN 0 AND 1),
    x1 real NOT NULL, y1 real NOT NULL, x2 real NOT NULL, y2 real NOT NULL,
    garment_indexes integer[]   NOT NULL,  -- garments.garment_index of what they wore there
    PRIMARY KEY (sighting_id, event_id),
    CHECK (x2 >= x1 AND y2 >= y1)
);
CREATE INDEX sighting_frames_event ON sighting_frames (event_id, model_version);
CREATE INDEX sighting_frames_source_time ON sighting_frames (source_pk, captured_at);
