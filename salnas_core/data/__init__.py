"""salnas_core.data."""
