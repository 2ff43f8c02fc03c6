"""Kubeflow Pipelines components of the SalNAS steps, generated from the step registry
(salnas_core/steps/registry.py): a container form (`salnas <step> ...` over the project image) and a
lightweight form that kfp.local runs (the same CLI, in-process). See components/factory.py."""
from salnas_core.steps.registry import get_step, pipeline_steps  # noqa: F401

from .factory import DEFAULT_IMAGE, build_components, container_component, python_component  # noqa: F401

__all__ = ["DEFAULT_IMAGE", "build_components", "container_component", "get_step", "pipeline_steps",
           "python_component"]
