-- fashionstream schema: one appearance vector per catalogue image, its whole product ("shop the
-- look" matches products, not what a model in the photo also wears). The tagger embeds a
-- catalogue photo's product crop (the catalogue fallback's crop: product mask, box and mask) as
-- one more crop of the classifier call it already makes (weights/embedding.md); the sink writes
-- it in the image's transaction. A garment-level catalogue match found a shirt product for a
-- trousers query because its model wore trousers; sinks/similar.py now searches this table.
-- `model_version` is the embedding model's version: a search compares one version only.
-- Camera frames have no row here (their garments are queries, in garment_embeddings).
CREATE TABLE image_embeddings (
    image_id      bigint      PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    model_version text        NOT NULL CHECK (model_version <> ''),
    -- the classifier's category and gender heads on the product crop (the filters of a search)
    category      text        NOT NULL,
    gender        text,
    -- the shipped head's size (weights/embedding.md); another size is another migration
    embedding     vector(256) NOT NULL,
    written_at    timestamptz NOT NULL DEFAULT now()
);

-- Every row is searchable (catalogue only), so the HNSW index covers the table. As for
-- garment_embeddings, no b-tree on (model_version, ...): it would turn the planner to exact
-- scans; pgvector 0.6 filters after the index scan (sinks/similar.py widens ef_search).
CREATE INDEX image_embeddings_hnsw ON image_embeddings USING hnsw (embedding vector_cosine_ops);
