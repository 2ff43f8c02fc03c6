"""salnas_core.evaluate."""
