-- fashionstream schema v1: where images come from, one row per tagged image or frame, and one row
-- per detected person and garment. Written by sinks/postgres.py with idempotent upserts keyed by
-- (event_id, model_version) for images and (image_id, index) for people and garments, so a
-- redelivered Kafka record or a re-run feed adds no rows.
-- Applied once by infra/migrate.py inside a transaction; never edit it after release, add 0002_...

-- A catalogue feed or a camera.
CREATE TABLE sources (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('feed', 'camera')),
    source_id     text        NOT NULL CHECK (source_id <> ''),  -- feed name or camera id
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, source_id)
);

-- One product of a catalogue feed, with the feed's own attributes.
CREATE TABLE catalogue_items (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_pk   bigint      NOT NULL REFERENCES sources (id),
    item_id     text        NOT NULL CHECK (item_id <> ''),
    title       text,
    brand       text,
    price       numeric(14, 4) CHECK (price >= 0),
    currency    text,
    link        text,            -- the product page
    attributes  jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- every feed column as sent
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_pk, item_id)
);

-- One processed catalogue image or video frame, per model version.
CREATE TABLE images (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid        NOT NULL,  -- TaggedImage.event_id: stable across re-runs
    model_version text        NOT NULL CHECK (model_version <> ''),
    source_pk     bigint      NOT NULL REFERENCES sources (id),
    item_pk       bigint      REFERENCES catalogue_items (id),
    image_url     text,
    frame_number  bigint      CHECK (frame_number >= 0),
    captured_at   timestamptz NOT NULL,  -- capture (camera) or fetch (feed) time
    submitted_at  timestamptz NOT NULL,  -- when it entered Kafka
    width         integer     NOT NULL CHECK (width > 0),
    height        integer     NOT NULL CHECK (height > 0),
    timings       jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- stage -> seconds
    garment_count integer     NOT NULL CHECK (garment_count >= 0),
    person_count  integer     NOT NULL CHECK (person_count >= 0),
    written_at    timestamptz NOT NULL DEFAULT now(),  -- last (re)write by the sink
    UNIQUE (event_id, model_version),
    -- a camera frame has a number, a catalogue image has an item
    CHECK ((frame_number IS NULL) <> (item_pk IS NULL))
);
CREATE INDEX images_source_time ON images (source_pk, captured_at);
CREATE INDEX images_time ON images (captured_at);
CREATE INDEX images_item ON images (item_pk) WHERE item_pk IS NOT NULL;

-- One detected person. Box in pixels of the tagged image; mask as COCO compressed RLE.
CREATE TABLE people (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    image_id     bigint  NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    person_index integer NOT NULL CHECK (person_index >= 0),
    score        real    NOT NULL CHECK (score BETWEEN 0 AND 1),
    x1 real NOT NULL, y1 real NOT NULL, x2 real NOT NULL, y2 real NOT NULL,
    mask_height  integer NOT NULL CHECK (mask_height > 0),
    mask_width   integer NOT NULL CHECK (mask_width > 0),
    mask_rle     text    NOT NULL,
    -- denormalised from images so the common filters need no join
    source_pk    bigint      NOT NULL REFERENCES sources (id),
    captured_at  timestamptz NOT NULL,
    UNIQUE (image_id, person_index),
    CHECK (x2 >= x1 AND y2 >= y1)
);
CREATE INDEX people_source_time ON people (source_pk, captured_at);

-- One detected garment with what the attribute heads say about it.
CREATE TABLE garments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    image_id         bigint  NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    garment_index    integer NOT NULL CHECK (garment_index >= 0),
    person_index     integer,  -- the wearer, when one was detected
    category         text    NOT NULL CHECK (category <> ''),
    score            real    NOT NULL CHECK (score BETWEEN 0 AND 1),
    x1 real NOT NULL, y1 real NOT NULL, x2 real NOT NULL, y2 real NOT NULL,
    mask_height      integer NOT NULL CHECK (mask_height > 0),
    mask_width       integer NOT NULL CHECK (mask_width > 0),
    mask_rle         text    NOT NULL,
    -- the main attribute heads (catalogue vocabulary); NULL when a model has no such head
    gender           text,
    gender_prob      real CHECK (gender_prob BETWEEN 0 AND 1),
    master_category  text,
    master_category_prob real CHECK (master_category_prob BETWEEN 0 AND 1),
    sub_category     text,
    sub_category_prob real CHECK (sub_category_prob BETWEEN 0 AND 1),
    article_type     text,
    article_type_prob real CHECK (article_type_prob BETWEEN 0 AND 1),
    season           text,
    season_prob      real CHECK (season_prob BETWEEN 0 AND 1),
    base_colour      text,  -- the classifier's colour head
    base_colour_prob real CHECK (base_colour_prob BETWEEN 0 AND 1),
    attributes       jsonb   NOT NULL,  -- head -> {label, prob}: every head, typed ones included
    probabilities    jsonb   NOT NULL,  -- head -> label -> prob: every label of every head
    colour_name      text    NOT NULL,  -- measured from the pixels inside the mask
    colour_r         smallint NOT NULL CHECK (colour_r BETWEEN 0 AND 255),
    colour_g         smallint NOT NULL CHECK (colour_g BETWEEN 0 AND 255),
    colour_b         smallint NOT NULL CHECK (colour_b BETWEEN 0 AND 255),
    colour_share     real    NOT NULL CHECK (colour_share BETWEEN 0 AND 1),
    style            text    NOT NULL,
    style_prob       real    NOT NULL CHECK (style_prob BETWEEN 0 AND 1),
    source_pk        bigint      NOT NULL REFERENCES sources (id),
    captured_at      timestamptz NOT NULL,
    UNIQUE (image_id, garment_index),
    -- losing the wearer (a re-tag found fewer people) keeps the garment
    FOREIGN KEY (image_id, person_index) REFERENCES people (image_id, person_index)
        ON DELETE SET NULL (person_index),
    CHECK (x2 >= x1 AND y2 >= y1)
);
CREATE INDEX garments_source_time ON garments (source_pk, captured_at);
CREATE INDEX garments_category_time ON garments (category, captured_at);
CREATE INDEX garments_time ON garments (captured_at);
CREATE INDEX garments_person ON garments (image_id, person_index) WHERE person_index IS NOT NULL;
