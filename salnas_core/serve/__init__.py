"""salnas_core.serve."""
