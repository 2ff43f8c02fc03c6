"""Parameters and MACs of max, min and a few random subnets of every registered space, for a
288x384 input (the network resizes it to the config's working resolution). MACs from
torch.utils.flop_counter (FLOPs / 2, convolutions and matmuls). For `salnas` also the count the
paper reports, which includes AttentiveNAS's unused shortcut convs. Writes rows to bench/RESULTS.md.

    .venv/bin/python bench/model_costs.py [--random 3] [--seed 0]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _machine import machine  # noqa: E402
from _results import write_rows  # noqa: E402

TITLE = "## Subnet params and MACs (bench/model_costs.py)"
HEADER = ("| date | space | subnet | resolution | params M | GMACs (FlopCounterMode) | paper-style params M | "
          "config | command |\n|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    import torch

    from salnas_core.spaces import list_spaces
    from salnas_core.spaces.salnas import attentivenas_unused_shortcut_params
    from salnas_core.supernet import count_macs, count_params, create_supernet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=list_spaces())
    ap.add_argument("--random", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, nargs=2, default=[288, 384])
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    cmd = "python bench/model_costs.py " + " ".join(sys.argv[1:])
    for name in args.spaces:
        net = create_supernet(name, pretrained=False).eval()
        rng = random.Random(f"{args.seed}-{name}")  # per space: rows do not depend on the space list
        todo = [("max", net.space.max_config()), ("min", net.space.min_config())]
        todo += [(f"random {i}", net.space.sample_config(rng)) for i in range(args.random)]
        for label, cfg in todo:
            sub = net.build_from_config(cfg)
            params, macs = count_params(sub), count_macs(sub, tuple(args.size))
            paper = f"{(params + attentivenas_unused_shortcut_params(cfg)) / 1e6:.2f}" if name == "salnas" else "-"
            short = {k: v for k, v in cfg.items() if k != "space"}
            print(f"{name:7s} {label:9s} params {params / 1e6:6.2f} M  {macs / 1e9:5.2f} GMACs  paper-style {paper}")
            row = (f"| {time.strftime('%Y-%m-%d %H:%M')} | {name} | {label} | {cfg['resolution'][0]} | "
                   f"{params / 1e6:.2f} | {macs / 1e9:.2f} | {paper} | `{short}` | `{cmd.strip()}` |")
            write_rows(Path(args.results), TITLE,
                       f"Input 1x3x{args.size[0]}x{args.size[1]}; torch {torch.__version__}; machine {machine()}. "
                       "Paper (ptflops, AttentiveNAS static model): salnas max 20.98 M / 3.89 GMACs "
                       "(FlopCounterMode 3.80), min 6.35 M / 0.55-0.56.", HEADER, [row])


if __name__ == "__main__":
    main()
