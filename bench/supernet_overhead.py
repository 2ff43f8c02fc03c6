"""Dynamic overhead of the supernet: forward time of the supernet in its max configuration vs the
extracted static max subnet (same weights), batch 1 at 288x384, channels_last, fp32, CPU.
Goal: dynamic / static <= 1.2. Writes one row per space to bench/RESULTS.md.

    .venv/bin/python bench/supernet_overhead.py [--spaces lite salnas] [--repeats 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from _machine import machine  # noqa: E402
from _results import write_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TITLE = "## Supernet dynamic overhead (bench/supernet_overhead.py)"
HEADER = ("| date | machine | torch threads | space | input | supernet max ms | static max ms | ratio | "
          "max abs diff | command |\n|---|---|---|---|---|---|---|---|---|---|")




def time_pair(a, b, x, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Median ms of a(x) and b(x), interleaved so machine noise hits both alike."""
    import torch

    ta, tb = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            a(x), b(x)
        for _ in range(repeats):
            for f, acc in ((a, ta), (b, tb)):
                t = time.perf_counter()
                f(x)
                acc.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    import torch

    from salnas_core.supernet import create_supernet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=["lite", "salnas"])
    ap.add_argument("--size", type=int, nargs=2, default=[288, 384])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cmd = "python bench/supernet_overhead.py " + " ".join(sys.argv[1:])
    for name in args.spaces:
        net = create_supernet(name, pretrained=False).eval()
        net.sample_max_subnet()
        static = net.get_active_subnet().eval()
        net = net.to(memory_format=torch.channels_last)
        static = static.to(memory_format=torch.channels_last)
        x = torch.randn(1, 3, *args.size).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            diff = (net(x) - static(x)).abs().max().item()
        dyn_ms, st_ms = time_pair(net, static, x, args.repeats)
        ratio = dyn_ms / st_ms
        print(f"{name}: supernet max {dyn_ms:.1f} ms, static max {st_ms:.1f} ms, ratio {ratio:.3f}, diff {diff:.1e}")
        row = (f"| {time.strftime('%Y-%m-%d %H:%M')} | {machine()} | {torch.get_num_threads()} | {name} | "
               f"1x3x{args.size[0]}x{args.size[1]} channels_last | {dyn_ms:.1f} | {st_ms:.1f} | {ratio:.3f} | "
               f"{diff:.1e} | `{cmd.strip()}` |")
        write_rows(Path(args.results), TITLE, "Median of interleaved runs, torch "
                   f"{torch.__version__} CPU fp32, batch 1; ratio = supernet / static (goal <= 1.2).", HEADER, [row])


if __name__ == "__main__":
    main()
