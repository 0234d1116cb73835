"""Text utilities every stage may use: BM25 tokens (lexical) and folding for the quote check (fold)."""
