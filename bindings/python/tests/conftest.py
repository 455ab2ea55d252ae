"""Shared fixtures: synthetic textures with defects (made here, written to temp folders as PNG),
the `bpgg` command-line binary for equality checks, and the real data set when present."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pytest

import bpgg

REPO = Path(__file__).resolve().parents[3]
#: The model's working size in the synthetic tests (small, so that the suite stays fast).
SIZE = 64


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Writes a uint8 (H, W) gray or (H, W, 3) RGB array as an 8-bit PNG (no PIL needed)."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError("write_png takes uint8 (H, W) or (H, W, 3)")
    h, w = pixels.shape[:2]
    color = 0 if pixels.ndim == 2 else 2
    rows = pixels.reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def texture(rng: np.random.Generator, h: int, w: int, gray: bool = False) -> np.ndarray:
    """A defect-free surface: a periodic weave with noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 2)
    base = 128 + 35 * np.sin(x / 2.5 + phase[0]) * np.cos(y / 3.0 + phase[1])
    base = base + rng.normal(0, 6, (h, w))
    if gray:
        return np.clip(base, 0, 255).astype(np.uint8)
    tint = np.array([1.0, 0.95, 0.9])
    return np.clip(base[..., None] * tint, 0, 255).astype(np.uint8)


def add_defect(
    rng: np.random.Generator, image: np.ndarray, side: int = 12
) -> Tuple[np.ndarray, np.ndarray]:
    """The image with a dark scratch-like patch, and its bool mask."""
    h, w = image.shape[:2]
    y0 = int(rng.integers(4, h - side - 4))
    x0 = int(rng.integers(4, w - side - 4))
    out = image.copy()
    mask = np.zeros((h, w), dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side // 2] = True
    out[mask] = (out[mask] * 0.25).astype(np.uint8)
    return out, mask


@dataclass
class Supports:
    defects: List[np.ndarray]
    masks: List[np.ndarray]
    normals: List[np.ndarray]
    #: Images to predict: defective and normal ones, of several sizes.
    queries: List[np.ndarray]
    #: The queries' masks (all-normal for normal queries).
    query_masks: List[np.ndarray]


def make_supports(seed: int = 0, gray: bool = False) -> Supports:
    rng = np.random.default_rng(seed)
    defects, masks = zip(*(add_defect(rng, texture(rng, 64, 64, gray)) for _ in range(2)))
    normals = [texture(rng, 64, 64, gray) for _ in range(3)]
    queries, query_masks = [], []
    for h, w in [(64, 64), (80, 56), (48, 96)]:
        image, mask = add_defect(rng, texture(rng, h, w, gray))
        queries.append(image)
        query_masks.append(mask)
        queries.append(texture(rng, h, w, gray))
        query_masks.append(np.zeros((h, w), dtype=bool))
    return Supports(list(defects), list(masks), normals, queries, query_masks)


@pytest.fixture(scope="session")
def supports() -> Supports:
    return make_supports()


@pytest.fixture(scope="session")
def model(supports: Supports) -> bpgg.Model:
    """A hybrid model (two defect images with masks, three normal images) at 64 px."""
    return bpgg.Model.fit(supports.defects, supports.masks, supports.normals, size=SIZE)


#: Largest map difference between a model and the same model written and read back: loading
#: normalises the stored (already unit) memory-bank rows once more, which moves maps by float
#: rounding (about 1.5e-7 here) at every round trip.
RELOAD_TOLERANCE = 1e-6


def assert_same_model(
    a: bpgg.Model, b: bpgg.Model, images: List[np.ndarray], atol: float = 0.0
) -> None:
    """Same configuration, threshold and maps (to `atol`). Model files are compared this way,
    not by their bytes: the order of the keys of a safetensors header's metadata is not fixed."""
    assert a.config == b.config
    assert (a.threshold, a.threshold_rule) == (b.threshold, b.threshold_rule)
    assert a.image_threshold == b.image_threshold
    for x, y in zip(a.predict(images), b.predict(images)):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)


def cli_binary() -> Optional[Path]:
    """The `bpgg` binary: $BPGG_CLI (which must then exist), else target/debug or release."""
    explicit = os.environ.get("BPGG_CLI")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"BPGG_CLI={explicit} does not exist")
        return path
    for profile in ("debug", "release"):
        path = REPO / "target" / profile / "bpgg"
        if path.is_file():
            return path
    return None


@pytest.fixture(scope="session")
def cli() -> Path:
    path = cli_binary()
    if path is None:
        pytest.skip("no bpgg binary: build it (cargo build) or set BPGG_CLI")
    return path


def run_cli(cli: Path, *args: object) -> str:
    done = subprocess.run(
        [str(cli), *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise AssertionError(f"bpgg {args} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def cli_predict(cli: Path, model_path: Path, inputs: Path, out: Path) -> dict:
    """Runs `bpgg predict` and returns its result records by image path."""
    run_cli(cli, "--quiet", "predict", "--model", model_path, "--output", out, inputs)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {r["image"]: r for r in records}


def data_root() -> Path:
    return Path(os.environ.get("BPGG_DATA", REPO.parent / "shared" / "data"))
