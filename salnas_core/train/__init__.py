"""salnas_core.train."""
