"""Shared fixtures live in plugin modules, one per owner, so parallel work does not collide:
fixtures_data (datasets: osie_dir, scene_dir, tiny_ingested, ...) and
fixtures_services (real S3 and MLflow servers on loopback)."""
import os
import sys
import tempfile

# the ONNX files predict builds (serve.engines) go to one throwaway folder, never the checkout
os.environ.setdefault("SALNAS_ONNX_CACHE", tempfile.mkdtemp(prefix="salnas-onnx-test-"))

sys.path.insert(0, os.path.dirname(__file__))
pytest_plugins = ["fixtures_data", "fixtures_services"]
