"""Golden values for the prototype/guidance unit tests (crates/bpgg/src/backbone/resize.rs,
crates/bpgg/src/rng.rs). Pure Python, no dependency: run `python3 scripts/proto_golden.py`.

- bilinear: PyTorch F.interpolate(mode="bilinear", align_corners=False) source-index rule
  (aten/src/ATen/native/UpSample.h area_pixel_compute_source_index), separable.
- splitmix64: the C reference by S. Vigna (prng.di.unimi.it/splitmix64.c).
"""


def bilinear_1d(n_in, n_out):
    scale = n_in / n_out
    rows = []
    for dst in range(n_out):
        src = max((dst + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        f = src - i0
        row = [0.0] * n_in
        row[i0] += 1 - f
        row[i1] += f
        rows.append(row)
    return rows


def resize(x, h, w):
    rh, rw = bilinear_1d(len(x), h), bilinear_1d(len(x[0]), w)
    tmp = [[sum(r[j] * row[j] for j in range(len(row))) for r in rw] for row in x]
    return [[sum(rh[i][k] * tmp[k][j] for k in range(len(tmp))) for j in range(w)] for i in range(h)]


def splitmix64(seed, n):
    m = 2**64
    out = []
    for _ in range(n):
        seed = (seed + 0x9E3779B97F4A7C15) % m
        z = seed
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % m
        out.append(z ^ (z >> 31))
    return out


if __name__ == "__main__":
    x = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    print("bilinear 2x3 -> 3x5:", [[round(v, 6) for v in r] for r in resize(x, 3, 5)])
    print("bilinear 1x4 -> 1x2:", resize([[0.0, 1.0, 2.0, 3.0]], 1, 2))
    print("splitmix64(1234567):", splitmix64(1234567, 2))
