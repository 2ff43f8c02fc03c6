"""What int8 (or bf16) costs in accuracy: CC, KLD and NSS on the OSIE validation split (maps at the
original image size, ground truth from serve's loaders) for the same model served by ONNX Runtime
fp32 and by `--engine int8` (calibrated on the training split) or `--engine bf16` (AOTInductor
bfloat16), plus each map's CC to its fp32 twin.

Without --model, a short CPU fine-tune makes a real model first: the `lite` max subnet with its
ImageNet encoder (EfficientNet-Lite0), KLD loss, Adam, on the training split (a few minutes; far
from the main job's accuracy, but trained weights are what quantisation ranges depend on).

    .venv/bin/python bench/int8_accuracy.py --data data/ingested/osie --steps 80
    .venv/bin/python bench/int8_accuracy.py --data data/ingested/osie --model runs/distill/XL/model.pt --engine bf16
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine as _machine  # noqa: E402
from _results import write_rows  # noqa: E402


def fine_tune(data: Path, out: Path, steps: int, batch: int, space: str, seed: int = 0) -> Path:
    import torch

    from salnas_core.data.dataset import SaliencyDataset
    from salnas_core.metrics.losses import kld_per_image
    from salnas_core.spaces import get_space
    from salnas_core.supernet import build_subnet, save_model

    torch.manual_seed(seed)
    sp = get_space(space)
    net = build_subnet(sp.max_config(), pretrained=True).train()
    ds = SaliencyDataset(data, "train", normalization=sp.normalization, augment=True, seed=seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    step, t0 = 0, time.time()
    while step < steps:
        for b in loader:
            loss = kld_per_image(net(b["image"]), b["density"]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 10 == 0:
                print(f"step {step}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
            if step >= steps:
                break
    return save_model(out, net.eval(), meta={"variant": f"{space}-max fine-tuned {steps} steps (bench/int8_accuracy.py)"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="ingested OSIE folder (manifest.json)")
    ap.add_argument("--model", default=None, help="a model.pt; default: fine-tune one (--steps)")
    ap.add_argument("--space", default="lite")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--val-images", type=int, default=0, help="0: the whole validation split")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", choices=("int8", "bf16"), default="int8", help="the form compared with ONNX fp32")
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()

    import os

    import numpy as np
    import onnxruntime as ort
    import torch

    from salnas_core.data.dataset import load_manifest, load_original_ground_truth
    from salnas_core.metrics import cc, kld, nss
    from salnas_core.serve import engines
    from salnas_core.serve.images import load_image
    from salnas_core.serve.predict import Predictor

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    tmp = Path(tempfile.mkdtemp(prefix="int8-accuracy-"))
    os.environ[engines.CACHE_ENV] = str(tmp / "cache")
    model = Path(args.model) if args.model else fine_tune(data, tmp / "model.pt", args.steps, args.batch, args.space)
    if not args.model:
        print(f"fine-tuned model: {model}")
    items = [it for it in load_manifest(data)["items"] if it["split"] == "val"]
    items = items[:args.val_images] if args.val_images else items
    preds = {e: Predictor(str(model), device="cpu", engine=e, calibration=str(data) if e == "int8" else None)
             for e in ("onnx", args.engine)}
    scores = {e: {"cc": [], "kld": [], "nss": [], "cc_to_fp32": []} for e in preds}
    for it in items:
        fix, dens = load_original_ground_truth(data, it)
        rgb = load_image(data / it["image"])
        maps = {}
        for e, p in preds.items():
            m = torch.from_numpy(p.predict_arrays([rgb])[0])[None, None]
            maps[e] = torch.nn.functional.interpolate(m, size=fix.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
        for e, m in maps.items():
            scores[e]["cc"].append(cc(m, dens))
            scores[e]["kld"].append(kld(m, dens))
            scores[e]["nss"].append(nss(m, fix))
            scores[e]["cc_to_fp32"].append(cc(m, maps["onnx"]))
    mean = {e: {k: float(np.mean(v)) for k, v in s.items()} for e, s in scores.items()}
    q = args.engine
    d = {k: mean[q][k] - mean["onnx"][k] for k in ("cc", "kld", "nss")}
    print(mean, d)
    cmd = "`.venv/bin/python bench/int8_accuracy.py " + " ".join(sys.argv[1:]) + "`"
    name = args.model or f"`{args.space}` max, ImageNet encoder, fine-tuned {args.steps} steps x {args.batch} on OSIE train"
    header = (f"| date | machine | versions | model | val images | fp32 CC | {q} CC | ΔCC | fp32 KLD | {q} KLD | ΔKLD "
              f"| fp32 NSS | {q} NSS | ΔNSS | {q} map CC to fp32 (mean / min) | command |\n|" + "---|" * 16)
    row = (f"| {time.strftime('%Y-%m-%d %H:%M')} | {_machine()} | torch {torch.__version__}, onnxruntime {ort.__version__} "
           f"| {name} | {len(items)} | {mean['onnx']['cc']:.4f} | {mean[q]['cc']:.4f} | {d['cc']:+.4f} "
           f"| {mean['onnx']['kld']:.4f} | {mean[q]['kld']:.4f} | {d['kld']:+.4f} | {mean['onnx']['nss']:.4f} "
           f"| {mean[q]['nss']:.4f} | {d['nss']:+.4f} | {mean[q]['cc_to_fp32']:.4f} / "
           f"{min(scores[q]['cc_to_fp32']):.4f} | {cmd} |")
    print(header)
    print(row)
    if q == "int8":
        write_rows(Path(args.results), "## int8 accuracy (bench/int8_accuracy.py)",
                   "OSIE validation split, maps at the original image size; fp32 = ONNX Runtime fp32 (the default "
                   "engine, = eager within 1e-4), int8 = `--engine int8` calibrated on the training split.", header, [row])
    else:
        write_rows(Path(args.results), "## bf16 accuracy (bench/int8_accuracy.py --engine bf16)",
                   "OSIE validation split, maps at the original image size; fp32 = ONNX Runtime fp32 (the default "
                   "engine), bf16 = `--engine bf16` (AOTInductor, bfloat16 weights and activations).", header, [row])


if __name__ == "__main__":
    main()
