-- fashionstream schema v3: appearance embeddings for visual similarity ("shop the look").
-- One vector per garment row (camera frame garments and catalogue products alike; a sighting's
-- best view is sighting_garments.best_event_id + best_garment_index -> that frame's garments
-- row -> its embedding, so it needs no vector of its own), written by sinks/postgres.py in the
-- same transaction as the garment. `model_version` is the embedding model's version: a search
-- compares only vectors of one version (sinks/similar.py), so a new model never mixes with old
-- vectors. pgvector: the `vector` extension of the pgserver wheel (0.6.2) or of the
-- pgvector/pgvector image of infra/docker-compose.yml.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE garment_embeddings (
    garment_id    bigint      PRIMARY KEY REFERENCES garments (id) ON DELETE CASCADE,
    model_version text        NOT NULL CHECK (model_version <> ''),
    -- the searchable side: a catalogue product (images.item_pk set), not a camera garment;
    -- category and gender denormalised from garments so a filtered search needs no join
    catalogue     boolean     NOT NULL,
    category      text        NOT NULL,
    gender        text,
    -- the shipped head's size (weights/embedding.md); another size is another migration
    embedding     vector(256) NOT NULL,
    written_at    timestamptz NOT NULL DEFAULT now()
);

-- Cosine-distance HNSW over the catalogue side only (camera garments are queries, never
-- answers), so the index holds what a search can return. pgvector 0.6 filters (version,
-- category, gender) after the index scan: sinks/similar.py widens ef_search and falls back to
-- an exact scan when a filter leaves fewer than k rows. No b-tree on (model_version, ...): with
-- one, the planner scanned every vector of the version exactly instead of using the HNSW index
-- (bench similar, 3,000 vectors).
CREATE INDEX garment_embeddings_catalogue_hnsw ON garment_embeddings
    USING hnsw (embedding vector_cosine_ops) WHERE catalogue;
