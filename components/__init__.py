"""Kubeflow Pipelines components of the SalNAS steps, generated from one table (components/steps.py):
a container form (`salnas <step> ...` over the project image) and a lightweight form that kfp.local
runs (the same CLI, in-process). See components/factory.py."""
from .factory import DEFAULT_IMAGE, build_components, container_component, python_component  # noqa: F401
from .steps import STEPS, get_step  # noqa: F401

__all__ = ["DEFAULT_IMAGE", "STEPS", "build_components", "container_component", "get_step", "python_component"]
