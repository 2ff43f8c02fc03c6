"""salnas_core.spaces."""
