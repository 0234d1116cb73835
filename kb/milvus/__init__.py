"""The Milvus backend: collections' schema, connection, build and searcher behind kb.search.contract."""
