#!/usr/bin/env python3
"""Golden feature maps of torchvision ResNet-18, Wide-ResNet-50-2 and VGG-16 for bpgg's tests.

Reference only (never a dependency of bpgg). Needs `torch`, `torchvision`, `numpy`.

Each network is built with `weights=None` and loaded with deterministic synthetic weights
defined by a formula (the same one as crates/bpgg/src/backbone/synthetic_weights.rs), so no
weight file is shipped. It runs on a formula input and writes, per network, into
crates/bpgg/tests/fixtures/torchvision/:

- `<net>_shapes.json`: `[[key, [dims...]], ...]`, the state-dict entries the backbone reads
  (classifier and `num_batches_tracked` left out), in torchvision's order;
- `<net>_golden.json`: input description and, for each layer, its shape, stride, per-channel
  means over (batch, y, x), max |value| and values at fixed flat indices.

Run from the repository root:  python scripts/torchvision_golden.py
"""

import json
import math
from pathlib import Path

import numpy as np
import torch
import torchvision

OUT_DIR = Path(__file__).resolve().parent.parent / "crates/bpgg/tests/fixtures/torchvision"

# --- synthetic weights: keep in sync with synthetic_weights.rs -------------------------------
# value[i] = offset + amplitude * (2 u_i - 1), u_i = splitmix64(seed + (i + 1) * GAMMA) / 2^64
# with seed = fnv1a32(name): integer arithmetic, so Python and Rust agree bit for bit.
SPLITMIX_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX_MUL1 = 0xBF58476D1CE4E5B9
SPLITMIX_MUL2 = 0x94D049BB133111EB


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def offset_and_amplitude(name: str, shape) -> tuple:
    if name.endswith(".running_var"):
        return 1.0, 0.5
    if name.endswith(".running_mean"):
        return 0.0, 0.1
    if len(shape) == 4:
        fan_in = max(shape[1] * shape[2] * shape[3], 1)
        return 0.0, math.sqrt(6.0 / fan_in)
    if len(shape) == 1 and name.endswith(".weight"):
        return 1.0, 0.2
    if len(shape) == 1 and name.endswith(".bias"):
        return 0.0, 0.1
    fan_in = max(shape[-1] if shape else 1, 1)
    return 0.0, 1.0 / math.sqrt(fan_in)


def uniform_01(seed: int, n: int) -> np.ndarray:
    """u_i in [0, 1) with 53 random bits, exact in float64."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(SPLITMIX_GAMMA))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(SPLITMIX_MUL1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(SPLITMIX_MUL2)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 9007199254740992.0  # 2^53


def synthetic_values(name: str, shape) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    offset, amplitude = offset_and_amplitude(name, shape)
    u = uniform_01(fnv1a32(name.encode()), n)
    return (offset + amplitude * (2.0 * u - 1.0)).astype(np.float32).reshape(shape)


# --- input: keep in sync with crates/bpgg/tests/it/torchvision.rs -----------------------------
BATCH, HEIGHT, WIDTH = 2, 64, 96


def formula_input() -> np.ndarray:
    """RGB in 0..255: 127.5 * (1 + sin(0.31 x + 0.17 y + 1.3 c + 0.9 n + 0.013 x y)), f64 -> f32."""
    n, c, y, x = np.meshgrid(
        np.arange(BATCH), np.arange(3), np.arange(HEIGHT), np.arange(WIDTH), indexing="ij"
    )
    n, c, y, x = (a.astype(np.float64) for a in (n, c, y, x))
    v = 127.5 * (1.0 + np.sin(0.31 * x + 0.17 * y + 1.3 * c + 0.9 * n + 0.013 * x * y))
    return v.astype(np.float32)


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

SAMPLES = 256
SAMPLE_MULTIPLIER = 2654435761  # Knuth's multiplicative hash


def sample_indices(numel: int) -> list:
    return [(k * SAMPLE_MULTIPLIER) % numel for k in range(SAMPLES)]


def describe(name: str, stride: int, t: torch.Tensor) -> dict:
    a = t.detach().numpy()
    flat = a.reshape(-1)
    idx = sample_indices(flat.size)
    return {
        "name": name,
        "stride": stride,
        "shape": list(a.shape),
        "max_abs": float(np.abs(a).max()),
        "channel_means": [float(v) for v in a.astype(np.float64).mean(axis=(0, 2, 3))],
        "samples": [[int(i), float(flat[i])] for i in idx],
    }


def load_synthetic(model: torch.nn.Module, skip_prefixes) -> list:
    shapes = []
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") or key.startswith(skip_prefixes):
            continue
        shape = list(value.shape)
        shapes.append([key, shape])
        state[key] = torch.from_numpy(synthetic_values(key, shape))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith(skip_prefixes) or k.endswith("num_batches_tracked") for k in missing)
    model.eval()
    return shapes


def normalized_input() -> torch.Tensor:
    x = torch.from_numpy(formula_input())
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def resnet_layers(model) -> list:
    x = normalized_input()
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = []
    for k, stride in zip(range(1, 5), (4, 8, 16, 32)):
        x = getattr(model, f"layer{k}")(x)
        out.append(describe(f"layer{k}", stride, x))
    return out


# Requested VGG modules: every stage's ReLU output, a pre-ReLU conv output and the last pool.
VGG_GOLDEN_INDICES = [3, 5, 8, 15, 22, 29, 30]


def vgg_layers(model) -> list:
    x = normalized_input()
    out = []
    stride = 1
    for i, module in enumerate(model.features):
        x = module(x)
        if isinstance(module, torch.nn.MaxPool2d):
            stride *= 2
        if i in VGG_GOLDEN_INDICES:
            out.append(describe(f"features.{i}", stride, x))
    return out


def main() -> None:
    torch.set_num_threads(2)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    nets = [
        ("resnet18", torchvision.models.resnet18(weights=None), ("fc.",), resnet_layers),
        ("wide_resnet50_2", torchvision.models.wide_resnet50_2(weights=None), ("fc.",), resnet_layers),
        ("vgg16", torchvision.models.vgg16(weights=None), ("classifier.",), vgg_layers),
    ]
    for name, model, skip, run in nets:
        shapes = load_synthetic(model, skip)
        with torch.no_grad():
            layers = run(model)
        (OUT_DIR / f"{name}_shapes.json").write_text(
            "[\n" + ",\n".join(json.dumps(s) for s in shapes) + "\n]\n"
        )
        golden = {
            "generator": "scripts/torchvision_golden.py",
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "input": {"batch": BATCH, "height": HEIGHT, "width": WIDTH},
            "sample_multiplier": SAMPLE_MULTIPLIER,
            "layers": layers,
        }
        (OUT_DIR / f"{name}_golden.json").write_text(json.dumps(golden, separators=(",", ":")) + "\n")
        for layer in layers:
            print(f"{name} {layer['name']}: shape {layer['shape']} max|x| {layer['max_abs']:.4g}")


if __name__ == "__main__":
    main()
