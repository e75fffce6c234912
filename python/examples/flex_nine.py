#!/usr/bin/env python3
"""The nine benchmark variants (docs/benchmarks.md) as a FlexAttention user writes them,
run through heed: the one line that differs from a torch script is the import below.

    python3 python/examples/flex_nine.py                 # heed on the CPU (numpy, or torch CPU tensors)
    python3 python/examples/flex_nine.py --flex torch    # torch's own flex_attention, for comparison
    python3 python/examples/flex_nine.py --seq 1024 --heads 8 --dim 64

The mask_mod / score_mod functions use operators and tensor methods only (``.clamp``,
``.tanh``), so they run unchanged on torch tensors, on heed's traced values, and their
captured tensors may be numpy arrays or torch tensors. python/tests/test_flex.py checks
every variant against a float64 reference; python/tests/test_torch.py against torch's
flex_attention too.
"""

import argparse
import os
import sys
import time

import numpy as np

try:
    import torch
except ImportError:
    torch = None

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from heed import create_block_mask, flex_attention  # noqa: E402  (torch: from torch.nn.attention.flex_attention import ...)

VARIANTS = ["full", "causal", "sliding_window", "document", "prefix_lm", "neighborhood_2d",
            "block_sparse", "alibi_causal", "softcap_causal"]


# ---- masks and score modifiers, FlexAttention style -------------------------------------


def causal_mask(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def sliding_window_mask(window):
    def sliding_window(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window)
    return sliding_window


def document_mask(doc_ids):
    def document(b, h, q_idx, kv_idx):
        return (doc_ids[q_idx] == doc_ids[kv_idx]) & (q_idx >= kv_idx)
    return document


def prefix_lm_mask(prefix):
    def prefix_lm(b, h, q_idx, kv_idx):
        return (kv_idx < prefix) | (q_idx >= kv_idx)
    return prefix_lm


def neighborhood_2d_mask(rows, cols, k):
    def axis(i, j, n):
        # NATTEN: the window of k centred on i, shifted inward at the borders.
        start = (i - k // 2).clamp(0, max(n - k, 0))
        return (j >= start) & (j < start + k)

    def neighborhood_2d(b, h, q_idx, kv_idx):
        return (axis(q_idx // cols, kv_idx // cols, rows)
                & axis(q_idx % cols, kv_idx % cols, cols))
    return neighborhood_2d


def block_sparse_mask(layout, block):
    def block_sparse(b, h, q_idx, kv_idx):
        return layout[h, q_idx // block, kv_idx // block] != 0
    return block_sparse


def alibi_score(slopes):
    def alibi(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (kv_idx - q_idx)
    return alibi


def softcap_score(cap):
    def softcap(score, b, h, q_idx, kv_idx):
        return cap * (score / cap).tanh()
    return softcap


class Variant:
    def __init__(self, name, mask_mod=None, score_mod=None, **info):
        self.name, self.mask_mod, self.score_mod, self.info = name, mask_mod, score_mod, info


def make_variants(S, H, seed, tensor=np.asarray, names=VARIANTS):
    """The variants for sequence length S and H heads, their captured tensors made by
    `tensor` (np.asarray, or torch.as_tensor for torch tensors). Sizes follow
    docs/benchmarks.md at S = 8192 and scale with S."""
    rng = np.random.default_rng(seed)
    scale = S / 8192.0
    window = max(16, int(1024 * scale))
    prefix = max(16, int(2048 * scale))
    doc_lo, doc_hi = max(8, int(256 * scale)), max(16, int(2048 * scale))
    cols = 128 if S >= 4096 else 32
    rows = S // cols
    block = 128 if S >= 1024 else 32
    out = []
    for name in names:
        if name == "full":
            out.append(Variant(name))
        elif name == "causal":
            out.append(Variant(name, causal_mask))
        elif name == "sliding_window":
            out.append(Variant(name, sliding_window_mask(window), window=window))
        elif name == "document":
            lengths = []
            while sum(lengths) < S:
                lengths.append(min(int(rng.integers(doc_lo, doc_hi + 1)), S - sum(lengths)))
            doc = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
            out.append(Variant(name, document_mask(tensor(doc)), doc_ids=doc))
        elif name == "prefix_lm":
            out.append(Variant(name, prefix_lm_mask(prefix), prefix=prefix))
        elif name == "neighborhood_2d":
            out.append(Variant(name, neighborhood_2d_mask(rows, cols, 17), rows=rows,
                               cols=cols, k=17))
        elif name == "block_sparse":
            nb = S // block
            layout = np.zeros((H, nb, nb), dtype=np.int8)
            for h in range(H):
                for i in range(nb):
                    others = [j for j in rng.permutation(nb) if j != i]
                    layout[h, i, [i] + others[:max(nb // 4 - 1, 0)]] = 1
            out.append(Variant(name, block_sparse_mask(tensor(layout), block), layout=layout,
                               block=block))
        elif name == "alibi_causal":
            slopes = np.array([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)], np.float32)
            out.append(Variant(name, causal_mask, alibi_score(tensor(slopes)), slopes=slopes))
        elif name == "softcap_causal":
            out.append(Variant(name, causal_mask, softcap_score(20.0), cap=20.0))
        else:
            raise ValueError("unknown variant %r (known: %s)" % (name, ", ".join(VARIANTS)))
    return out


def run(variant, q, k, v, flex=flex_attention, block_mask_fn=create_block_mask,
        return_lse=False):
    """One flex_attention call of `variant` (its block mask made for q's and k's lengths)."""
    H, S = q.shape[1], q.shape[2]
    block_mask = None
    if variant.mask_mod is not None:
        block_mask = block_mask_fn(variant.mask_mod, None, H, S, k.shape[2], device="cpu")
    return flex(q, k, v, score_mod=variant.score_mod, block_mask=block_mask,
                return_lse=return_lse)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--flex", choices=["heed", "torch"], default="heed",
                   help="whose flex_attention to run (torch: torch's, on the CPU)")
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    print("seed=%d S=%d H=%d D=%d flex=%s tensors=%s" % (seed, a.seq, a.heads, a.dim, a.flex,
                                                         "torch" if torch else "numpy"))
    flex, make_mask = flex_attention, create_block_mask
    tensor = np.asarray
    if torch is not None:
        tensor = torch.as_tensor
    if a.flex == "torch":
        if torch is None:
            print("SKIPPED: --flex torch needs torch")
            return 77
        from torch.nn.attention.flex_attention import create_block_mask as make_mask
        from torch.nn.attention.flex_attention import flex_attention as flex
    rng = np.random.default_rng(seed)
    q, k, v = (tensor(rng.standard_normal((1, a.heads, a.seq, a.dim)).astype(np.float32))
               for _ in range(3))
    print("%-16s %10s %10s" % ("variant", "first ms", "again ms"))
    for variant in make_variants(a.seq, a.heads, seed, tensor, a.variants.split(",")):
        t = time.perf_counter()
        out = run(variant, q, k, v, flex, make_mask)
        first = time.perf_counter() - t
        t = time.perf_counter()
        out = run(variant, q, k, v, flex, make_mask)
        again = time.perf_counter() - t
        assert not np.isnan(np.asarray(out, dtype=np.float32)).any()
        print("%-16s %10.1f %10.1f" % (variant.name, first * 1e3, again * 1e3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
