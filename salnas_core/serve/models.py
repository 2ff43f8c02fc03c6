"""Finding the model a user means: a registry URI, a file, a run folder or a variant name.

Everything resolves to a static subnet saved by `salnas_core.supernet.save_model` (one `.pt`
holding config, weights and meta) plus what inference needs to feed it: the normalisation its
space was trained with and its working size.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_WORKING_SIZE = (288, 384)  # H, W: the paper's input size, params.yaml ingest.working_size
DEFAULT_MODEL_NAME = "salnas"


class ModelNotFoundError(FileNotFoundError):
    """No model behind a --model value; the message lists what was tried."""


@dataclass
class LoadedModel:
    """A static saliency net in eval mode plus how to feed it."""

    net: Any  # torch.nn.Module
    normalization: str
    working_size: tuple[int, int]
    source: str
    config: dict | None = None
    meta: dict = field(default_factory=dict)

    @property
    def resolution(self) -> int | None:
        """The long side the net works at (config `resolution`), if it declares one."""
        r = (self.config or {}).get("resolution")
        if isinstance(r, (list, tuple)):
            r = r[0] if r else None
        return int(r) if r else None


def _space_normalization(space_name: str | None) -> str | None:
    if not space_name:
        return None
    try:
        from salnas_core import spaces
    except ImportError:
        return None
    for getter in ("get_space", "get"):
        fn = getattr(spaces, getter, None)
        if callable(fn):
            try:
                return getattr(fn(space_name), "normalization", None)
            except (KeyError, ValueError, TypeError):
                return None
    registry = getattr(spaces, "SPACES", None) or getattr(spaces, "REGISTRY", None)
    if isinstance(registry, dict) and space_name in registry:
        return getattr(registry[space_name], "normalization", None)
    return None


def describe(net: Any, source: str, working_size: tuple[int, int] | None = None,
             normalization: str | None = None) -> LoadedModel:
    """Wrap a static net: normalisation and working size from its meta, config or space."""
    meta = dict(getattr(net, "meta", None) or {})
    config = getattr(net, "config", None)
    config = dict(config) if isinstance(config, dict) else None
    norm = (normalization or meta.get("normalization") or getattr(net, "normalization", None)
            or _space_normalization((config or {}).get("space") or meta.get("space")))
    if not norm:
        raise UserError(f"{source}: cannot tell which input normalisation the model expects "
                         "(no 'normalization' in its meta and no known 'space' in its config)")
    size = working_size or meta.get("working_size") or meta.get("input_size")
    res = (config or {}).get("resolution")
    res = res[0] if isinstance(res, (list, tuple)) and res else res
    space = getattr(net, "space", None)
    if size is None and res and hasattr(space, "working_size"):
        size = (3, 4)  # a 4:3 landscape, like the training data
    size = size or DEFAULT_WORKING_SIZE
    if res and hasattr(space, "working_size"):
        # THE working size: the size the network itself resizes an input of this aspect to (long side
        # = its resolution, short side a multiple of 32). A recorded training size such as distill's
        # 144x192 only gives the aspect: it is not a size the encoder-decoder accepts (144 / 32 = 4.5).
        size = space.working_size(int(size[0]), int(size[1]), int(res))
    size = (int(size[0]), int(size[1]))
    net.eval()
    return LoadedModel(net=net, normalization=str(norm), working_size=size, source=source,
                       config=config, meta=meta)


def load_model_file(path: str | os.PathLike, source: str | None = None) -> LoadedModel:
    """A `.pt` written by `salnas_core.supernet.save_model`."""
    from salnas_core.supernet import load_model

    path = Path(path)
    try:
        net = load_model(path)
    except FileNotFoundError:
        raise ModelNotFoundError(f"{path}: model file not found") from None
    except Exception as e:  # pickle/zip/key errors: say which file and why
        raise UserError(f"{path}: not a SalNAS model file ({type(e).__name__}: {e})") from e
    if isinstance(net, tuple):  # load_model may return (model, meta)
        net, meta = net[0], (net[1] if len(net) > 1 else {})
        if isinstance(meta, dict) and not getattr(net, "meta", None):
            net.meta = meta
    return describe(net, source or str(path))


def _model_file_in(folder: Path) -> Path | None:
    """The one model.pt in a folder (salnas_core.utils.models), as a ModelNotFoundError when ambiguous."""
    from salnas_core.utils.models import AmbiguousModelError, model_file_in

    try:
        return model_file_in(folder)
    except AmbiguousModelError as e:
        raise ModelNotFoundError(str(e)) from None


def tracking_uri() -> str:
    """The registry the champion is read from: salnas_core.tracking.mlflow_utils.tracking_uri."""
    from salnas_core.tracking import mlflow_utils

    return mlflow_utils.tracking_uri()


def load_registry_model(uri: str) -> LoadedModel:
    """`models:/name@alias`, `models:/name/version` or `runs:/id/path`: download, find model.pt."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(tracking_uri())
    with tempfile.TemporaryDirectory(prefix="salnas-model-") as dest:  # weights end up in memory
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dest))
        except Exception as e:  # mlflow raises its own exception types for missing names/aliases
            raise ModelNotFoundError(f"{uri}: not found in the registry at {tracking_uri()} "
                                     f"({type(e).__name__}: {e})") from None
        path = local if local.is_file() else _model_file_in(local)
        if path is None:
            pts = sorted(local.rglob("*.pt"))
            if len(pts) != 1:
                raise ModelNotFoundError(f"{uri}: the registered artifacts hold no single model .pt file "
                                         f"(found {[p.name for p in pts]})")
            path = pts[0]
        return load_model_file(path, source=uri)


def resolve_model(spec: Any = None, *, runs_dir: str | os.PathLike | None = None,
                  model_name: str | None = None) -> LoadedModel:
    """A LoadedModel from what a user typed (or an nn.Module / LoadedModel as is).

    spec: None -> the `champion` alias of `model_name` (default $SALNAS_MODEL_NAME, else
    `salnas`) in the registry; `models:/...` or `runs:/...`; a path to a model file or a run
    folder holding `model.pt`; a variant name (`S`) looked up as `<runs>/distill/<name>/model.pt`,
    runs = `runs_dir`, else <working root>/runs ($SALNAS_ROOT, else the current folder).
    serve reads no params.yaml: whoever knows another registered name passes it.
    """
    if isinstance(spec, LoadedModel):
        return spec
    if spec is not None and hasattr(spec, "forward") and callable(spec):
        return describe(spec, source=type(spec).__name__)
    if spec is None:
        return load_registry_model(f"models:/{registered_name(model_name)}@champion")
    text = os.fspath(spec)
    if text.startswith(("models:/", "runs:/")):
        return load_registry_model(text)
    path = Path(text).expanduser()
    if path.is_file():
        return load_model_file(path)
    if path.is_dir():
        found = _model_file_in(path)
        if found is None:
            raise ModelNotFoundError(f"{path}: folder holds no model.pt")
        return load_model_file(found)
    tried = [str(path)]
    if "/" not in text and "\\" not in text:  # a variant name
        from salnas_core.utils.models import named_variant
        from salnas_core.utils.root import work_root

        cand = named_variant(Path(runs_dir) if runs_dir else work_root() / "runs", text)
        tried.append(str(cand))
        if cand.is_file():
            return load_model_file(cand, source=f"{text} ({cand})")
    raise ModelNotFoundError(f"model {text!r} not found; tried: {', '.join(tried)} "
                             "(give a models:/ URI, a model.pt, a run folder or a variant name)")


def registered_name(name: str | None = None) -> str:
    """The registered model name: `name`, else $SALNAS_MODEL_NAME, else `salnas`."""
    return str(name or os.environ.get("SALNAS_MODEL_NAME") or DEFAULT_MODEL_NAME)
