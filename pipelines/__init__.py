"""The SalNAS Kubeflow pipeline (pipelines/salnas_pipeline.py); `salnas pipeline` drives it."""
