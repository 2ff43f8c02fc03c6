"""salnas_core.nn."""
