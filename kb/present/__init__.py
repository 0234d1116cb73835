"""Hits -> what a reader sees: the answer view, exports, HTML rendering and interface strings."""
