"""The document table of an index: when each text is in force, metadata filters and facets, cross-references
resolved to chunks. Shared by both backends; nothing here reads files."""
