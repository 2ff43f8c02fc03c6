"""Speed of the whole metric suite: batched torch (SaliencyMetrics) against pysaliency's
per-map functions (and our own per-map numpy functions), on the same maps, with the values.

    .venv/bin/python bench/metrics_speed.py [--n 100] [--size 480 640] [--fix 200] [--device cpu] [--threads 1] [--repeats 2] [--cpu-path numba|torch]

Suite: cc, kld, nss, sim, auc_judd, auc_borji, sauc, ig (Borji/sAUC: 100 splits, step 0.1).
pysaliency has no per-map Borji, sAUC or IG with the MIT sampling; its nearest per-map
functions stand in (documented in docs/metrics.md): Borji -> general_roc against all pixels,
sAUC -> general_roc against the other images' fixated pixels, IG -> log2 ratio of its
sum-normalised densities. Writes one row to bench/RESULTS.md (section "Metrics speed").
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _machine import machine  # noqa: E402
from _results import write_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TITLE = "## Metrics speed (bench/metrics_speed.py)"
HEADER = ("| date | machine | device | maps | size | fix/map | batched s | pysaliency s | ratio "
          "| our per-map numpy s | max abs diff batched vs functional | max abs diff vs pysaliency "
          "(cc, kld, nss*, auc_judd) | command |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
NAMES = ("cc", "kld", "nss", "sim", "auc_judd", "auc_borji", "sauc", "ig")




def make_data(n: int, size: tuple[int, int], n_fix: int, seed: int = 0):
    """Smooth random predictions, centre-biased fixations, densities (sigma = 1/25 of the width,
    ~24 px at 640), other fixations = union of 10 other images, baseline = mean density."""
    import torch
    import torch.nn.functional as F
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    H, W = size
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, H // 16, W // 16, generator=g, dtype=torch.float64)
    pred = F.interpolate(low, size=size, mode="bicubic", align_corners=False)[:, 0].numpy()
    pred = (pred - pred.min()) ** 2  # peaky, non-negative, no ties
    fix = np.zeros((n, H, W), np.float32)
    for i in range(n):
        r = np.clip(rng.normal(H / 2, H / 5, 4 * n_fix).round(), 0, H - 1).astype(int)
        c = np.clip(rng.normal(W / 2, W / 5, 4 * n_fix).round(), 0, W - 1).astype(int)
        flat = np.unique(r * W + c)[:n_fix]
        fix[i].flat[rng.permutation(flat)] = 1
    sigma = W / 25
    dens = np.stack([gaussian_filter(f.astype(np.float64), sigma) for f in fix])
    dens /= dens.sum((1, 2), keepdims=True)
    other = np.zeros_like(fix)
    for i in range(n):
        others = rng.permutation([j for j in range(n) if j != i])[:10]
        other[i] = fix[others].max(0)
    baseline = dens.mean(0)
    return pred.astype(np.float32), dens.astype(np.float32), fix, other, baseline.astype(np.float32)


def run_batched(pred, dens, fix, other, baseline, device: str, batch: int = 10,
                threads: int | None = 1) -> tuple[float, dict, dict]:
    import torch

    from salnas_core.metrics.batched import SaliencyMetrics, compute_batch

    m = SaliencyMetrics(names=NAMES, threads=threads).to(device)
    per_image = {k: [] for k in NAMES}
    b_t = torch.from_numpy(baseline).to(device)
    t0 = time.perf_counter()
    for s in range(0, len(pred), batch):
        sl = slice(s, s + batch)
        p, d, f, o = (torch.from_numpy(x[sl]).to(device)[:, None] for x in (pred, dens, fix, other))
        m.update(p, d, f, o, b_t)
    out = m.compute()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    # per-image values (untimed) for the comparisons
    for s in range(0, len(pred), batch):
        sl = slice(s, s + batch)
        p, d, f, o = (torch.from_numpy(x[sl]).to(device)[:, None] for x in (pred, dens, fix, other))
        for k in NAMES:
            per_image[k].extend(compute_batch(k, p, density=d, fixations=f, other_fixations=o,
                                              baseline=b_t).cpu().numpy().tolist())
    return elapsed, out, {k: np.array(v) for k, v in per_image.items()}


def run_functional(pred, dens, fix, other, baseline) -> tuple[float, dict]:
    from salnas_core.metrics import functional as M

    vals = {k: [] for k in NAMES}
    t0 = time.perf_counter()
    for p, d, f, o in zip(pred, dens, fix, other):
        vals["cc"].append(M.cc(p, d)); vals["kld"].append(M.kld(p, d))
        vals["nss"].append(M.nss(p, f)); vals["sim"].append(M.sim(p, d))
        vals["auc_judd"].append(M.auc_judd(p, f)); vals["auc_borji"].append(M.auc_borji(p, f))
        vals["sauc"].append(M.sauc(p, f, o)); vals["ig"].append(M.info_gain(p, f, baseline))
    return time.perf_counter() - t0, {k: np.array(v) for k, v in vals.items()}


def run_pysaliency(pred, dens, fix, other, baseline) -> tuple[float, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pysaliency.metrics as PM
        from pysaliency.roc import general_roc

    vals = {k: [] for k in NAMES}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.trapz deprecation inside pysaliency
        logb = np.log2(PM.convert_saliency_map_to_density(baseline.astype(np.float64)))
        for p, d, f, o in zip(pred, dens, fix, other):
            p = p.astype(np.float64); d = d.astype(np.float64)
            ys, xs = np.nonzero(f)
            fm = f > 0
            pos = p[fm]
            vals["cc"].append(PM.CC(p, d))
            vals["kld"].append(PM.MIT_KLDiv(p, d))
            vals["nss"].append(PM.NSS(p, xs, ys).mean())
            vals["sim"].append(PM.SIM(p, d))
            vals["auc_judd"].append(general_roc(pos, p[~fm], judd=1)[0])
            vals["auc_borji"].append(general_roc(pos, p.ravel(), judd=0)[0])
            vals["sauc"].append(general_roc(pos, p[o > 0], judd=0)[0])
            logp = np.log2(PM.convert_saliency_map_to_density(p))
            vals["ig"].append((logp[fm] - logb[fm]).mean())
    return time.perf_counter() - t0, {k: np.array(v) for k, v in vals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640))
    ap.add_argument("--fix", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads inside SaliencyMetrics (its default 1; 0: torch's setting)")
    ap.add_argument("--cpu-path", choices=("numba", "torch"), default="numba",
                    help="CPU code of SaliencyMetrics: fused numba kernels (default) or torch ops")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats; best time of each")
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import torch

    threads = args.threads or None
    from salnas_core.metrics import batched as Bm
    Bm.CPU_KERNELS = Bm.CPU_KERNELS and args.cpu_path == "numba"
    path = "numba kernels" if (Bm.CPU_KERNELS and args.device == "cpu") else "torch ops"
    size = tuple(args.size)
    pred, dens, fix, other, baseline = make_data(args.n, size, args.fix)
    # warm-ups, untimed: pysaliency's ROC is numba-compiled on first use (seconds)
    run_pysaliency(pred[:2], dens[:2], fix[:2], other[:2], baseline)
    run_batched(pred[:2], dens[:2], fix[:2], other[:2], baseline, args.device, threads=threads)
    # interleaved repeats, best of each: the shared machine's load changes from minute to minute
    t_b = t_p = t_f = float("inf")
    for _ in range(args.repeats):
        t, means, batched = run_batched(pred, dens, fix, other, baseline, args.device, threads=threads)
        t_b = min(t_b, t)
        t, pys = run_pysaliency(pred, dens, fix, other, baseline)
        t_p = min(t_p, t)
        t, func = run_functional(pred, dens, fix, other, baseline)
        t_f = min(t_f, t)

    n_pix = size[0] * size[1]
    diff_f = max(float(np.nanmax(np.abs(batched[k] - func[k]))) for k in NAMES)
    agree = {"cc": pys["cc"], "kld": pys["kld"], "auc_judd": pys["auc_judd"],
             # pysaliency's NSS uses the N std: rescale to MIT's N-1
             "nss": pys["nss"] * np.sqrt((n_pix - 1) / n_pix)}
    diff_p = max(float(np.nanmax(np.abs(batched[k] - v))) for k, v in agree.items())

    print(f"{'metric':10s} {'batched mean':>14s} {'functional':>14s} {'pysaliency':>14s}")
    for k in NAMES:
        print(f"{k:10s} {means[k]:14.6f} {np.nanmean(func[k]):14.6f} {np.nanmean(pys[k]):14.6f}")
    ratio = t_p / t_b
    print(f"batched {t_b:.2f} s, pysaliency {t_p:.2f} s (ratio {ratio:.1f}x), our per-map numpy {t_f:.2f} s")
    print(f"max |batched - functional| = {diff_f:.2e}; max |batched - pysaliency| (cc, kld, nss, auc_judd) = {diff_p:.2e}")

    if not args.no_write:
        dev = args.device if args.device == "cpu" else torch.cuda.get_device_name(0)
        cmd = f"`.venv/bin/python bench/metrics_speed.py --n {args.n} --size {size[0]} {size[1]} --fix {args.fix} --device {args.device} --threads {args.threads} --repeats {args.repeats} --cpu-path {args.cpu_path}`"
        row = (f"| {time.strftime('%Y-%m-%d %H:%M')} | {machine()} | {dev} (torch {torch.__version__}, "
               f"{threads or torch.get_num_threads()} threads, {path}) | {args.n} | {size[0]}x{size[1]} | {args.fix} | {t_b:.2f} | "
               f"{t_p:.2f} | {ratio:.1f}x | {t_f:.2f} | {diff_f:.1e} | {diff_p:.1e} | {cmd} |")
        write_rows(Path(args.results), TITLE, "Whole metric suite, batched vs per-map; ratio = "
                   "pysaliency s / batched s within one run.", HEADER, [row])
        print("row written to", args.results)


if __name__ == "__main__":
    main()
