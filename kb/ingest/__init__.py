"""File -> Document: decoding and format conversion, PDF text with pages, the LawRefBook importer."""
