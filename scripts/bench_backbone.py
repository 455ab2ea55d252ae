#!/usr/bin/env python3
"""Reference timings for `bpgg bench backbone` (run by it; usable on its own).

Usage:
    python3 scripts/bench_backbone.py --backbone {efficientnet-lite0,resnet18} \
        --weights FILE.safetensors --batch B --size S [--repeats R] [--warmup W] [--threads T] \
        [--runtimes torch,torch-channels-last,onnxruntime,openvino] [--device cpu|cuda:N]

Builds the network the way bpgg's feature extractor runs it, loads the given safetensors
(the same file bpgg uses), and times `forward` on a random batch of B RGB images of S x S
pixels in 0..255 after W warm-up passes, with T threads. The forward includes the input
normalisation and stops at the deepest default feature layer, as bpgg's does:

- efficientnet-lite0: `(x - 127) / 128`, stem and MBConv blocks 0..=10 (features of blocks 4
  and 10, strides 8 and 16), TensorFlow "SAME" padding, BatchNorm eps 1e-3, ReLU6; built
  here from the state dict (key names of `efficientnet_pytorch`), BatchNorm layers unfolded
  as in `efficientnet_pytorch`.
- resnet18: ImageNet mean/std normalisation, torchvision's `resnet18` up to `layer3`
  (features of layer2 and layer3).

Runtimes (each one skipped, with the reason, when its package is missing or it fails):
- `torch`: eager PyTorch, `torch.inference_mode()`, `torch.set_num_threads(T)`;
- `torch-channels-last`: the same with model and input in `torch.channels_last`;
- `onnxruntime`: the model exported to ONNX (opset 17, static shapes) and run by ONNX Runtime's
  CPU provider (`intra_op_num_threads = T`, all graph optimisations);
- `openvino`: the same ONNX file compiled by OpenVINO for "CPU" with
  `INFERENCE_PRECISION_HINT = f32` (its default on some CPUs is bf16/f16, which moves the
  features by about 1 in 30), `PERFORMANCE_HINT = LATENCY` and `INFERENCE_NUM_THREADS = T`.

With `--device cuda:N` (what `bpgg bench backbone --device cuda:N` passes) the network and the
input live on that GPU, the clock stops after `torch.cuda.synchronize`, and the CPU runtimes
(ONNX Runtime, OpenVINO) are skipped.

Before timing, each runtime's features on the timed input are compared with eager PyTorch's:
a runtime whose largest difference exceeds 1e-3 of the features' largest magnitude is
reported as failed, not timed.

Prints one JSON object on stdout:
    {"backbone": .., "batch": B, "size": S, "repeats": R, "threads": T, "torch": "<version>",
     "median_s_per_image": .., "min_s_per_image": .. (eager PyTorch), "timings_s": [..],
     "runtimes": {"<name>": {"median_s_per_image": .., "min_s_per_image": ..,
                             "max_rel_diff": .., "version": ..} or {"skipped": "<reason>"}}}

Requirements: python3 -m pip install torch torchvision safetensors
              (optional: onnx onnxscript onnxruntime openvino)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

# efficientnet-lite0 -------------------------------------------------------------------------
# (kernel, stride, expand ratio, repeats) of Lite0's stages (width = depth = 1.0).
LITE0_STAGES = [(3, 1, 1, 1), (3, 2, 6, 2), (5, 2, 6, 2), (3, 2, 6, 3), (5, 1, 6, 3),
                (5, 2, 6, 4), (3, 1, 6, 1)]
LITE0_FEATURE_BLOCKS = (4, 10)
LITE0_BN_EPS = 1e-3
LITE0_INPUT_OFFSET, LITE0_INPUT_SCALE = 127.0, 128.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME": output ceil(size / stride), extra padding at the end (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Module):
    """A bias-free convolution with TensorFlow "SAME" padding, then BatchNorm."""

    def __init__(self, sd: dict, conv_key: str, bn_key: str, stride: int, groups: int = 1):
        super().__init__()
        weight = sd[f"{conv_key}.weight"]
        out_c, in_per_group, k, _ = weight.shape
        self.conv = nn.Conv2d(in_per_group * groups, out_c, k, stride, 0, groups=groups,
                              bias=False)
        self.conv.weight.data.copy_(weight)
        self.bn = nn.BatchNorm2d(out_c, eps=LITE0_BN_EPS)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(self.bn, name).data.copy_(sd[f"{bn_key}.{name}"])
        self.kernel, self.stride = k, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel > 1 or self.stride > 1:
            top, bottom = same_padding(x.shape[2], self.kernel, self.stride)
            left, right = same_padding(x.shape[3], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        return self.bn(self.conv(x))


class MbConv(nn.Module):
    """Inverted residual block without squeeze-excite (Lite variants)."""

    def __init__(self, sd: dict, index: int, stride: int, expand: int):
        super().__init__()
        p = f"_blocks.{index}."
        self.expand = SameConv(sd, p + "_expand_conv", p + "_bn0", 1) if expand != 1 else None
        channels = sd[p + "_depthwise_conv.weight"].shape[0]
        self.depthwise = SameConv(sd, p + "_depthwise_conv", p + "_bn1", stride, channels)
        self.project = SameConv(sd, p + "_project_conv", p + "_bn2", 1)
        in_c = self.expand.conv.in_channels if self.expand else channels
        self.residual = stride == 1 and in_c == self.project.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(y)))
        return y + x if self.residual else y


class EfficientNetLite0Trunk(nn.Module):
    """Stem and blocks 0..=max(LITE0_FEATURE_BLOCKS); returns the feature blocks' outputs."""

    def __init__(self, sd: dict):
        super().__init__()
        self.stem = SameConv(sd, "_conv_stem", "_bn0", 2)
        blocks, index = [], 0
        for kernel, stride, expand, repeats in LITE0_STAGES:
            for r in range(repeats):
                if index <= max(LITE0_FEATURE_BLOCKS):
                    blocks.append(MbConv(sd, index, stride if r == 0 else 1, expand))
                index += 1
        self.blocks = nn.ModuleList(blocks)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.stem((images - LITE0_INPUT_OFFSET) / LITE0_INPUT_SCALE))
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in LITE0_FEATURE_BLOCKS:
                features.append(x)
        return features


# resnet18 -----------------------------------------------------------------------------------
class ResNet18Trunk(nn.Module):
    """torchvision's resnet18 up to layer3; returns layer2 and layer3."""

    def __init__(self, sd: dict):
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        missing, unexpected = net.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"resnet18 weights do not fit: missing {missing}, "
                             f"unexpected {unexpected}")
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        x = (images / 255.0 - self.mean) / self.std
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        layer2 = n.layer2(n.layer1(x))
        return [layer2, n.layer3(layer2)]


BACKBONES = {"efficientnet-lite0": EfficientNetLite0Trunk, "resnet18": ResNet18Trunk}
RUNTIMES = ("torch", "torch-channels-last", "onnxruntime", "openvino")
ONNX_OPSET = 17
# Largest |runtime - torch| allowed, relative to the largest |torch| of the same feature map.
MAX_REL_DIFF = 1e-3


def time_calls(run, warmup: int, repeats: int, sync=lambda: None) -> list[float]:
    """`run()` `warmup` times untimed, then `repeats` timed calls (seconds each, each ended by
    `sync()`: the GPU's work is done)."""
    for _ in range(warmup):
        run()
    sync()
    timings = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        run()
        sync()
        timings.append(time.perf_counter() - start)
    return timings


def max_rel_diff(outputs, expected) -> float:
    """Largest |a - b| / max|b| over the feature maps."""
    worst = 0.0
    for a, b in zip(outputs, expected, strict=True):
        a, b = torch.as_tensor(a).cpu(), b.cpu()
        if a.shape != b.shape:
            raise RuntimeError(f"output shape {tuple(a.shape)} != torch's {tuple(b.shape)}")
        scale = float(b.abs().max()) or 1.0
        worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


def export_onnx(model: nn.Module, images: torch.Tensor, path: str) -> None:
    """The model as ONNX with static shapes; the TorchScript exporter where torch has it."""
    kwargs = dict(opset_version=ONNX_OPSET, input_names=["images"])
    try:
        torch.onnx.export(model, (images,), path, dynamo=False, **kwargs)
    except TypeError:  # a torch without the `dynamo` switch
        torch.onnx.export(model, (images,), path, **kwargs)


def runtime_runner(name: str, model: nn.Module, images: torch.Tensor, threads: int,
                   onnx_path: str):
    """(a callable returning the feature maps, the runtime's version) for runtime `name`."""
    if name == "torch-channels-last":
        cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        cl_images = images.contiguous(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode():
                return cl_model(cl_images)
        return run, torch.__version__
    if images.device.type != "cpu":
        raise RuntimeError(f"a CPU runtime, and this run times {images.device}")
    if not os.path.exists(onnx_path):
        export_onnx(model, images, onnx_path)
    array = images.numpy()
    if name == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        return (lambda: session.run(None, {input_name: array})), ort.__version__
    if name == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(onnx_path), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
        })
        request = compiled.create_infer_request()
        outputs = compiled.outputs

        def run():
            request.infer({0: array})
            return [request.get_tensor(o).data.copy() for o in outputs]
        return run, ov.__version__
    raise ValueError(f"unknown runtime {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=sorted(BACKBONES), required=True)
    parser.add_argument("--weights", required=True, help="safetensors with the network's keys")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help=f"comma-separated subset of {','.join(RUNTIMES)}")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise SystemExit(f"unknown runtimes {unknown}; choose from {RUNTIMES}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = BACKBONES[args.backbone](load_file(args.weights)).eval().to(device)
    images = (torch.rand(args.batch, 3, args.size, args.size) * 255.0).to(device)
    with torch.inference_mode():
        expected = model(images)
    timings = time_calls(lambda: _eager(model, images),
                         args.warmup, args.repeats, sync)
    results = {"torch": summary(timings, args.batch, 0.0, torch.__version__)}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "backbone.onnx")
        for name in runtimes:
            if name == "torch":
                continue
            try:
                run, version = runtime_runner(name, model, images, args.threads, onnx_path)
                diff = max_rel_diff(run(), expected)
                if not diff <= MAX_REL_DIFF:
                    results[name] = {"skipped": f"features differ from PyTorch's by {diff:.2e} "
                                                f"of their largest value (limit {MAX_REL_DIFF})"}
                    continue
                results[name] = summary(time_calls(run, args.warmup, args.repeats, sync),
                                        args.batch, diff, version)
            except Exception as e:  # a missing package or a failing export: say which
                reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                results[name] = {"skipped": reason}
    if "torch" not in runtimes:
        del results["torch"]
    print(json.dumps({
        "backbone": args.backbone, "batch": args.batch, "size": args.size,
        "repeats": len(timings), "threads": torch.get_num_threads(), "device": str(device),
        "torch": torch.__version__,
        "median_s_per_image": statistics.median(timings) / args.batch,
        "min_s_per_image": min(timings) / args.batch,
        "timings_s": timings,
        "runtimes": results,
    }))


def _eager(model: nn.Module, images: torch.Tensor):
    with torch.inference_mode():
        return model(images)


def summary(timings: list[float], batch: int, diff: float, version: str) -> dict:
    return {"median_s_per_image": statistics.median(timings) / batch,
            "min_s_per_image": min(timings) / batch, "max_rel_diff": diff,
            "version": version}


if __name__ == "__main__":
    main()
