"""The quote check: is this text in the documents, verbatim, after normalisation, with omissions, or altered."""
