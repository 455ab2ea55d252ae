#!/usr/bin/env python3
"""Reference only: one BPGG meta-training step in PyTorch, timed (`bpgg bench train` runs it).

The same work as bpgg's step (crates/bpgg/src/train/loss.rs): a residual head of 1x1 convs on
unit-length features, prototypes by masked average pooling (normal prototype = half defect-free
pixels of the defect supports, half the normal images), cosine logits x tau, class-balanced
binary cross-entropy on the queries, the reverse term (each defect query's soft prediction pools
query prototypes that segment the supports back), backward, one AdamW update.

`--device cuda:N` runs it on that GPU (what `bpgg bench train --device cuda:N` passes); the
clock stops after `torch.cuda.synchronize`.

Prints one JSON line: {"median_s": ..., "min_s": ..., "torch": "<version>", "threads": n,
"device": "cpu"}.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

EPS = 1e-5


def l2n(x, dim):
    return x / x.norm(dim=dim, keepdim=True).clamp_min(1e-12)


def bce(z, t):
    pos = (t * F.softplus(-z)).sum() / (t.sum() + EPS)
    neg = ((1 - t) * F.softplus(z)).sum() / ((1 - t).sum() + EPS)
    return 0.5 * (pos + neg)


def margin(feats, defect, normal, tau):
    q = l2n(feats, 1)
    d = torch.einsum("bchw,c->bhw", q, l2n(defect, 0))
    n = torch.einsum("bchw,c->bhw", q, l2n(normal, 0))
    return (tau * (d - n)).unsqueeze(1)


def pool(f, m):
    return (f * m).sum((0, 2, 3)) / (m.sum() + EPS)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=152)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--grid", type=int, default=32)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--normal-shots", type=int, default=5)
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--normal-queries", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    c, h, k, n = a.channels, a.grid, a.shots, a.normal_shots
    q = a.queries + a.normal_queries
    feats = l2n(torch.randn(k + n + q, c, h, h), 1).to(dev)
    mask = torch.zeros(1, 1, h, h)
    mask[..., h // 4 : h // 2, h // 4 : h // 2] = 1.0
    mask = mask.to(dev)
    sm = mask.repeat(k, 1, 1, 1)
    qm = torch.cat([mask.repeat(a.queries, 1, 1, 1),
                    torch.zeros(a.normal_queries, 1, h, h, device=dev)])
    w1 = (torch.randn(a.hidden, c, 1, 1) * (2.0 / c) ** 0.5).to(dev).requires_grad_()
    b1 = torch.zeros(a.hidden, device=dev).requires_grad_()
    w2 = torch.zeros(c, a.hidden, 1, 1, device=dev).requires_grad_()
    b2 = torch.zeros(c, device=dev).requires_grad_()
    opt = torch.optim.AdamW([w1, b1, w2, b2], lr=1e-3, weight_decay=1e-4)
    tau = 20.0

    def step():
        x = feats
        y = l2n(x + F.conv2d(F.relu(F.conv2d(x, w1, b1)), w2, b2), 1)
        s, nf, qf = y[:k], y[k : k + n], y[k + n :]
        defect = pool(s, sm)
        normal = 0.5 * pool(s, 1 - sm) + 0.5 * nf.mean((0, 2, 3))
        z = margin(qf, defect, normal, tau)
        loss = bce(z, qm)
        prob = torch.sigmoid(z)
        targets = torch.cat([s, nf])
        tmask = torch.cat([sm, torch.zeros(n, 1, h, h, device=dev)])
        terms = []
        for i in range(a.queries):
            p = prob[i : i + 1]
            qd, qn = pool(qf[i : i + 1], p), pool(qf[i : i + 1], 1 - p)
            terms.append(bce(margin(targets, qd, qn, tau), tmask))
        loss = loss + torch.stack(terms).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    sync()
    samples = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        step()
        sync()
        samples.append(time.perf_counter() - t)
    samples.sort()
    m = len(samples)
    median = samples[m // 2] if m % 2 else 0.5 * (samples[m // 2 - 1] + samples[m // 2])
    print(json.dumps({"median_s": median, "min_s": samples[0], "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "device": str(dev)}))


if __name__ == "__main__":
    main()
