"""The FAISS index folder: generations, manifest, chunk store, BM25 postings, vectors, quote index; the build
that writes it (build), the loader that opens it for search (loader) and the check against a corpus (verify).

Nothing is re-exported here, so a reader (loader) never imports the builder."""
