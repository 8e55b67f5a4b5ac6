"""Appearance embeddings for visual similarity ("shop the look"): the projection head on the
attribute network's pooled features, its training on cached features, and retrieval figures."""
