"""Tracking layer: S3 storage (boto3), MLflow runs and model registry, local test services, Kubernetes.

Submodules are imported on use (`from salnas_core.tracking import storage`): mlflow and boto3 are heavy.
"""
