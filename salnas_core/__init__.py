"""SalNAS: weight-sharing NAS for small, fast saliency-prediction networks.

Top-level names are re-exported lazily so that `import salnas_core` stays cheap
(the CLI imports it before knowing which step runs).
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "create_supernet": "salnas_core.supernet",
    "build_subnet": "salnas_core.supernet",
    "recalibrate_bn": "salnas_core.supernet",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'salnas_core' has no attribute {name!r}")
