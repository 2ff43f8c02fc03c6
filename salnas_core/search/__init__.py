"""salnas_core.search."""
