"""Dataset readers, one module per on-disk format, registered by format name (READERS)."""
from .base import DEFAULT_NAMES, READERS, Problem, ReadResult, Record, get_reader, register_reader

__all__ = ["READERS", "DEFAULT_NAMES", "Problem", "ReadResult", "Record", "get_reader", "register_reader"]


def _import_all() -> None:
    import importlib

    for mod in ("shared_json", "osie", "nus_scene", "salicon", "mit1003", "cat2000", "pascal_s", "dut_omron", "fiwi", "toronto"):
        importlib.import_module(f"{__name__}.{mod}")


_import_all()
_load_all = True
