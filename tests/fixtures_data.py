"""Dataset fixtures (owned by the data layer)."""
