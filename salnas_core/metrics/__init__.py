"""salnas_core.metrics."""
