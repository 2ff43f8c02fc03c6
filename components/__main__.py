"""`python -m components [--form container|python] [--image IMAGE] [STEP ...]`: print the generated
Kubeflow components as readable source (both forms come from salnas_core/steps/registry.py)."""
import argparse

from .factory import FORMS, component_sources

parser = argparse.ArgumentParser(prog="python -m components", description=__doc__.splitlines()[0])
parser.add_argument("--form", choices=FORMS, default="container")
parser.add_argument("--image", default=None)
parser.add_argument("steps", nargs="*", help="step names (default: every pipeline step)")
args = parser.parse_args()
print(component_sources(args.form, args.image, args.steps or None))
