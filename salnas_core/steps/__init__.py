"""salnas_core.steps."""
