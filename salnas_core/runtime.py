"""The deployed runtime's core, one home for search, evaluate and serve: a net's graph made
exportable (batch norms folded, TF-SAME padding frozen), exported to ONNX (dynamic batch, height,
width; in memory or to a file), an ONNX Runtime session with the project's options (all graph
optimisations, torch's intra-op thread count, CPU provider), its batch-1 latency,
post-training static int8 of an ONNX file, and a bfloat16 AOTInductor package (one static input
shape) for CPUs with native bf16.

It sits above nn/supernet and utils and below search, evaluate and serve (a contract in
pyproject.toml): the search's latency table calibrates on the same form `salnas predict` runs
(serve.engines), and the efficiency report times it. serve.export adds what a deployer needs on
top (normalisation inside the graph, metadata, parity checks, the CLI); serve.engines adds the
per-model ONNX cache.
"""
from __future__ import annotations

import copy
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

INPUT, OUTPUT = "image", "saliency"  # the exported graph's tensor names
OPSET = 17
# int8: not bit-parity but agreement: CC(int8 map, fp32 map) on the held-out calibration
# images must reach this (a map with CC 0.95 to its fp32 twin changes benchmark CC by ~0.01)
MIN_INT8_CC = 0.95
# "auto": ONNX Runtime fp32 on CPU, eager PyTorch on CUDA (no CUDA build of ONNX Runtime here).
# "bf16" (AOTInductor, bfloat16) is faster per call on CPUs with native bf16 (bench/inference_forms.py)
# but compiles ~40 s per model and input size on first use, so it is asked for, not the default
ENGINES = ("auto", "eager", "onnx", "int8", "bf16")
# bf16: agreement, as int8's: CC(bf16 map, fp32 map) on the parity inputs must reach this
MIN_BF16_CC = 0.99


def resolve_engine(engine: str, device: str = "cpu") -> str:
    """The concrete form `engine` names on `device`: "auto" -> "onnx" on CPU, "eager" elsewhere."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "auto":
        return "onnx" if str(device).startswith("cpu") else "eager"
    return engine


def fold_batchnorm(model: Any, example: Any) -> tuple[Any, int]:
    """A copy of `model` (eval mode) with every BatchNorm that directly follows a Conv2d folded
    into that convolution's weights and bias; returns (copy, number folded).

    Pairs are found by running `example` through the copy with hooks (a BN whose input tensor is
    a convolution's output), so any control flow in forward is fine. Modules called more than
    once are left alone. The caller checks the result against the original (export does).
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    names = {m: n for n, m in model.named_modules()}
    conv_out: dict[int, tuple[Any, Any]] = {}  # id(output tensor) -> (conv, tensor kept alive)
    calls: dict[Any, int] = {}
    pairs: dict[Any, Any] = {}  # bn -> conv

    def on_conv(mod, _inp, out):
        calls[mod] = calls.get(mod, 0) + 1
        conv_out[id(out)] = (mod, out)

    def on_bn(mod, inp):
        calls[mod] = calls.get(mod, 0) + 1
        hit = conv_out.get(id(inp[0]))
        if hit is not None and hit[1] is inp[0]:
            pairs[mod] = hit[0]

    hooks = []
    for m in model.modules():
        if type(m) is torch.nn.Conv2d or (isinstance(m, torch.nn.Conv2d) and not list(m.children())):
            hooks.append(m.register_forward_hook(on_conv))
        elif isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None:
            hooks.append(m.register_forward_pre_hook(on_bn))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        conv_out.clear()

    folded = 0
    for bn, conv in pairs.items():
        if calls.get(bn) != 1 or calls.get(conv) != 1 or list(pairs.values()).count(conv) != 1:
            continue
        fused = fuse_conv_bn_eval(conv, bn)
        _set_module(model, names[conv], fused)
        _set_module(model, names[bn], torch.nn.Identity())
        folded += 1
    return model, folded


def freeze_same_padding(model: Any) -> int:
    """Replace TF-'SAME' convolutions whose padding is computed from the input size in Python
    (Conv2dPad with `_dynamic_pad`) by a constant ZeroPad2d + plain Conv2d; returns the count.

    A trace freezes half of that arithmetic (math.ceil of a size) and keeps the other half, so
    the exported graph would resize every input to the traced size. For inputs whose size is a
    multiple of the stride (the net only takes multiples of 32) SAME padding is the constant
    (k - s) split (floor, ceil), so the replacement is exact there."""
    import torch

    names = [(n, m) for n, m in model.named_modules() if getattr(m, "_dynamic_pad", False)]
    for name, m in names:
        pads = []
        for k, st in zip(m.kernel_size, m.stride):
            total = max(k - st, 0)
            pads.append((total // 2, total - total // 2))
        conv = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, padding=0,
                               dilation=m.dilation, groups=m.groups, bias=m.bias is not None)
        conv.load_state_dict(m.state_dict())
        pad = torch.nn.ZeroPad2d((pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
        _set_module(model, name, torch.nn.Sequential(pad, conv).eval())
    return len(names)


def _set_module(root: Any, name: str, new: Any) -> None:
    parent, _, leaf = name.rpartition(".")
    owner = root.get_submodule(parent) if parent else root
    if leaf.isdigit() and hasattr(owner, "__setitem__"):  # Sequential / ModuleList
        owner[int(leaf)] = new
    else:
        setattr(owner, leaf, new)



def export_onnx(module: Any, example: Any, path: str | os.PathLike | None = None,
                metadata: dict[str, str] | None = None) -> bytes | Path:
    """ONNX of an export-ready `module` (see prepare): traced on `example`, dynamic batch, height
    and width, checked (and no BatchNormalization left); written to `path` (returned) or returned
    as bytes when `path` is None."""
    import onnx
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy exporter deprecation + tracer notes on shapes
        # the TorchScript-based exporter: no onnxscript dependency, and dynamic H/W via dynamic_axes
        torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT], output_names=[OUTPUT], do_constant_folding=True,
                          dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"},
                                        OUTPUT: {0: "batch", 2: "height", 3: "width"}})
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    where = path or "exported graph"
    if any(n.op_type == "BatchNormalization" for n in proto.graph.node):
        raise RuntimeError(f"{where}: BatchNormalization left in the exported graph (folding incomplete)")
    for k, v in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    if path is None:
        return proto.SerializeToString()
    onnx.save(proto, str(path))
    return Path(path)


def core_module(net: Any) -> Any:
    """The part of a net the deployed form runs: a SalNAS net's fully convolutional `_core` (its
    forward's resize to the working size is Python arithmetic on shapes, done outside the graph by
    the caller), else the net; a tuple output is reduced to its first map."""
    import torch

    class Core(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.net = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.net._core(x) if hasattr(self.net, "_core") else self.net(x)
            return y[0] if isinstance(y, (tuple, list)) else y

    return Core(net).eval()


def working_size(net: Any, input_size: Sequence[int]) -> tuple[int, int]:
    """The (H, W) the deployed form feeds a SalNAS net for an `input_size` image (its space's
    rule at the config's resolution, what serve.predict resizes to); other nets: `input_size`."""
    h, w = int(input_size[0]), int(input_size[1])
    cfg, space = getattr(net, "config", None), getattr(net, "space", None)
    if isinstance(cfg, dict) and cfg.get("resolution") and space is not None:
        return tuple(space.working_size(h, w, int(cfg["resolution"][0])))
    return h, w


def prepare(module: Any, example: Any) -> Any:
    """An export-ready copy of `module`: batch norms folded, SAME padding frozen (module untouched)."""
    folded, _ = fold_batchnorm(module, example)
    freeze_same_padding(folded)
    return folded


def session(model: bytes | str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session on a file or serialized graph: all graph optimisations,
    `threads` intra-op threads (default: as many as torch uses), one inter-op thread."""
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def run(sess: Any, x: Any) -> np.ndarray:
    """The saliency map of a session for images `x` (a torch tensor or array, float32 NCHW)."""
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else x
    return sess.run([OUTPUT], {INPUT: np.ascontiguousarray(a, dtype=np.float32)})[0]


def onnx_latency_ms(net: Any, input_size: Sequence[int] = (288, 384), batch: int = 1, warmup: int = 2,
                    repeats: int = 5, threads: int | None = None) -> float:
    """Median time (ms) of the deployed ONNX Runtime fp32 form of `net` (serve.engines' "onnx":
    BN folded, all graph optimisations, torch's thread count) on a random batch of an
    `input_size` image at the net's working size. The net is exported in memory (no file)."""
    import torch

    from salnas_core.utils.timing import time_call

    net = copy.deepcopy(net).cpu().eval()
    h, w = working_size(net, input_size)
    return module_latency_ms(core_module(net), (batch, 3, h, w), warmup, repeats, threads)


def module_latency_ms(module: Any, shape: Sequence[int], warmup: int = 2, repeats: int = 5,
                      threads: int | None = None) -> float:
    """Median time (ms) of any one-tensor-in, one-tensor-out `module` exported as the deployed
    form is (BN folded, all of ORT's fusions) on a random input of `shape`: the search's latency
    table times its blocks this way, so their fused costs add up to the whole graph's."""
    import torch

    from salnas_core.utils.timing import time_call

    x = torch.rand(*(int(s) for s in shape))
    sess = session(export_onnx(prepare(copy.deepcopy(module).cpu().eval(), x), x), threads)
    a = np.ascontiguousarray(x.numpy())
    return time_call(lambda: sess.run([OUTPUT], {INPUT: a}), "cpu", warmup, repeats)


def quantize_onnx(fp32: Path, path: Path, images: Sequence[np.ndarray], min_cc: float = MIN_INT8_CC) -> float:
    """Post-training static int8 of an fp32 ONNX file into `path` (QDQ, per-channel weights,
    min-max activation ranges over all but the last quarter of `images`); returns the lowest CC
    of the int8 map to the fp32 map over the held-out quarter, and raises under `min_cc`.

    Only convolutions are quantised: in these swish/SE nets, quantising every op put 2x more
    Quantize/Dequantize pairs than it saved and lowered CC to the fp32 map (0.964 vs 0.999,
    random weights). The stem and the last FP32_TAIL convolutions (the decoder's refine and
    output) stay fp32: on a trained `lite` max subnet that raised the int8 map's mean CC to fp32
    from 0.979 to 0.995 (OSIE val). Speed of each form: bench/RESULTS.md."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    images = list(images)
    held = images[-max(1, len(images) // 4):] if len(images) > 1 else images
    calib = images[:len(images) - len(held)] or images

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(calib)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {INPUT: x}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger().disabled, before = True, logging.getLogger().disabled  # the quantiser logs on root
        try:
            quantize_static(str(fp32), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv"], nodes_to_exclude=_fp32_convs(fp32))
        finally:
            logging.getLogger().disabled = before
    a, b = session(fp32), session(path)
    worst = 1.0
    for x in held:
        ya, yb = (run(s, x).ravel().astype(np.float64) for s in (a, b))
        cc = float(np.corrcoef(ya, yb)[0, 1]) if ya.std() > 0 and yb.std() > 0 else float(np.allclose(ya, yb))
        worst = min(worst, cc)
    if not worst >= min_cc:
        raise RuntimeError(f"{path}: int8 map agrees with fp32 at CC {worst:.3f} < {min_cc}; not written")
    return worst


FP32_TAIL = 3


def _fp32_convs(path: Path) -> list[str]:
    """The convolutions int8 leaves in fp32: the first (raw pixels in) and the last FP32_TAIL (the map out)."""
    import onnx

    convs = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    return convs[:1] + convs[-FP32_TAIL:] if len(convs) > FP32_TAIL + 1 else []




def bf16_supported() -> bool:
    """Does this CPU run bfloat16 convolutions natively (oneDNN with AVX512-BF16 or AMX)?"""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cxx_compiler() -> str | None:
    """The C++ compiler AOTInductor would build with ($CXX, else c++, g++ or clang++ on PATH), or None."""
    import shutil

    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def compile_bf16(module: Any, example: Any, path: str | os.PathLike, fp32_modules: Sequence[str] = ()) -> Path:
    """An AOTInductor package (`.pt2`) of an export-ready `module` (see prepare) in bfloat16,
    channels_last, for the one input shape of `example` (static shapes run ~1.4x faster than
    dynamic ones here; callers keep one package per shape). Inputs and outputs stay float32: the
    casts are part of the graph. The submodules named in `fp32_modules` (those present) run in
    float32 on float32 inputs: a map's last layer, whose output bf16's 8-bit mantissa would round.
    Written atomically to `path`."""
    import torch
    import torch._inductor.config as inductor_config

    from salnas_core.utils.io import atomic_path

    class Fp32(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner.float()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.float())

    class Bf16(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner.to(torch.bfloat16).to(memory_format=torch.channels_last)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            return self.inner(x).float()

    net = Bf16(copy.deepcopy(module).cpu().eval()).eval()
    for name in fp32_modules:
        sub = getattr(net.inner.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2], None)
        if isinstance(sub, torch.nn.Module):
            _set_module(net.inner, name, Fp32(sub))
    with torch.no_grad(), inductor_config.patch(freezing=True):  # weights as constants: conv + activation fusion
        program = torch.export.export(net, (example.float().cpu(),))
        with atomic_path(path) as tmp:
            tmp_pt2 = Path(f"{tmp}.pt2")  # the packager insists on the suffix
            try:
                torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_pt2))
                os.replace(tmp_pt2, tmp)
            finally:
                tmp_pt2.unlink(missing_ok=True)
    return Path(path)


def load_bf16(path: str | os.PathLike) -> Any:
    """The callable of a compile_bf16 package (float32 NCHW in, float32 map out)."""
    import torch

    return torch._inductor.aoti_load_package(str(path))
