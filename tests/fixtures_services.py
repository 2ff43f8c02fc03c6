"""Service fixtures: real S3 (SeaweedFS) and MLflow servers on loopback."""
