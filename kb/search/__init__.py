"""Query -> Hits: the backend contract, hits, fusion, and the FAISS searcher."""
