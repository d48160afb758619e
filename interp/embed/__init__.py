"""Embedding: the Embedder protocol, model back-ends, pooled and per-token stores."""
