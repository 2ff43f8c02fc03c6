"""The models a bench names on its command line: `space:max|min` (that subnet with random weights,
seed 0: cost does not depend on weights) or a model.pt path."""
from __future__ import annotations

from pathlib import Path


def model_file(spec: str, tmp: Path) -> tuple[Path, str]:
    """(a model.pt for `spec`, its name in a results table); subnets are saved under `tmp`."""
    if spec.endswith(".pt"):
        return Path(spec), spec
    import torch

    from salnas_core.spaces import get_space
    from salnas_core.supernet import build_subnet, save_model

    space, which = spec.split(":")
    sp = get_space(space)
    torch.manual_seed(0)
    net = build_subnet(sp.max_config() if which == "max" else sp.min_config()).eval()
    return save_model(tmp / f"{space}-{which}.pt", net), f"`{space}` {which} subnet"


def add_timing_arguments(ap) -> None:
    """--models, --rounds, --threads, --batch: what every engine-timing bench takes."""
    ap.add_argument("--models", nargs="+", default=["salnas:max", "salnas:min", "lite:max", "lite:min"],
                    help="space:max|min, or a model.pt")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
