#!/usr/bin/env python3
"""Tests of heed's FlexAttention front door (python/heed/flex.py, python/heed/_trace.py).

The attention-gym examples (causal, sliding window, prefix-LM, document, ALiBi, softcap,
T5 relative bias, 2-D neighborhood) and the nine benchmark variants of
python/examples/flex_nine.py, written as FlexAttention code, traced by heed and run on
numpy arrays on the CPU, against float64 references written here (fresh random inputs,
seed printed, outputs NaN-poisoned); the spec each traces to; errors for what cannot be
traced; create_block_mask's cost; the kernel cache. Exit 77 without numpy.
"""

import math
import os
import sys
import time
import unittest
import warnings

import heed_testing
from heed_testing import HeedTestCase, REPO, make_rng, nans, np, randn, reference

heed_testing.require(__name__)

import heed  # noqa: E402
from heed import and_masks, create_block_mask, flex_attention, or_masks  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "python", "examples"))
import flex_nine  # noqa: E402


def run_flex(q, k, v, score_mod=None, mask_mod=None, **kw):
    """flex_attention into NaN-poisoned outputs; (out, lse) with return_lse."""
    B, Hq, Sq = q.shape[:3]
    bm = create_block_mask(mask_mod, None, None, Sq, k.shape[2], device="cpu") \
        if mask_mod is not None else None
    out = nans((B, Hq, Sq, v.shape[3]), q.dtype)
    lse = nans((B, Hq, Sq)) if kw.get("return_lse") else None
    result = flex_attention(q, k, v, score_mod=score_mod, block_mask=bm, out=out, lse=lse, **kw)
    if kw.get("return_lse"):
        assert result[0] is out and result[1] is lse
        return out, lse
    assert result is out
    return out


def inputs(test, B=2, H=4, S=None, D=32, Hkv=None, Skv=None, dtype=np.float32):
    rng = make_rng(test)
    S = S or int(rng.integers(90, 200))
    Skv = Skv or S
    Hkv = Hkv or H
    q = randn(rng, (B, H, S, D), dtype)
    k, v = randn(rng, (B, Hkv, Skv, D), dtype), randn(rng, (B, Hkv, Skv, D), dtype)
    return rng, q, k, v


# ---- attention-gym style masks and modifiers (as FlexAttention users write them) -------


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def generate_sliding_window(window_size):
    def sliding_window(b, h, q_idx, kv_idx):
        return q_idx - kv_idx <= window_size
    return and_masks(causal, sliding_window)


def generate_prefix_lm_mask(prefix_length):
    def prefix_mask(b, h, q_idx, kv_idx):
        return kv_idx <= prefix_length
    return or_masks(prefix_mask, causal)


def generate_doc_mask_mod(mask_mod, offsets):
    counts = offsets[1:] - offsets[:-1]
    document_id = np.repeat(np.arange(len(counts)), counts)

    def doc_mask_mod(b, h, q_idx, kv_idx):
        same_doc = document_id[q_idx] == document_id[kv_idx]
        q_logical = q_idx - offsets[document_id[q_idx]]
        kv_logical = kv_idx - offsets[document_id[kv_idx]]
        inner_mask = mask_mod(b, h, q_logical, kv_logical)
        return same_doc & inner_mask
    return doc_mask_mod


def generate_alibi_bias(H):
    alibi_bias = np.exp2(-((np.arange(H) + 1) * 8.0 / H))

    def alibi_mod(score, b, h, q_idx, kv_idx):
        bias = alibi_bias[h] * (kv_idx - q_idx)
        return score + bias
    return alibi_mod


def generate_tanh_softcap(soft_cap):
    def tanh_softcap(score, b, h, q_idx, kv_idx):
        return soft_cap * np.tanh(score / soft_cap)
    return tanh_softcap


def t5_buckets(S, num_buckets=32, max_distance=128):
    """T5's bidirectional relative-position buckets of kv - q, for kv - q + S - 1 in
    [0, 2S - 2] (computed on the host, as T5 implementations do)."""
    rel = np.arange(-(S - 1), S)
    half = num_buckets // 2
    buckets = (rel > 0).astype(np.int64) * half
    rel = np.abs(rel)
    max_exact = half // 2
    large = max_exact + (np.log(np.maximum(rel, 1) / max_exact) / math.log(max_distance / max_exact)
                         * (half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return (buckets + np.where(rel < max_exact, rel, large)).astype(np.int32)


def generate_t5_bias(bias_table, S):
    bucket = t5_buckets(S, bias_table.shape[1])

    def t5_bias(score, b, h, q_idx, kv_idx):
        return score + bias_table[h, bucket[kv_idx - q_idx + S - 1]]
    return t5_bias


def generate_natten(canvas_w, canvas_h, kernel_w, kernel_h):
    def get_x_y(idx):
        return idx // canvas_w, idx % canvas_w

    def natten_mask_mod(b, h, q_idx, kv_idx):
        q_y, q_x = get_x_y(q_idx)
        kv_y, kv_x = get_x_y(kv_idx)
        # the kernel is centred on the query, clamped a half kernel from the canvas edge
        kernel_x = q_x.clamp(kernel_w // 2, (canvas_w - 1) - kernel_w // 2)
        kernel_y = q_y.clamp(kernel_h // 2, (canvas_h - 1) - kernel_h // 2)
        hori_mask = (kernel_x - kv_x).abs() <= kernel_w // 2
        vert_mask = (kernel_y - kv_y).abs() <= kernel_h // 2
        return hori_mask & vert_mask
    return natten_mask_mod


# ---- float64 references of the same, on broadcast index grids ----------------------------


def ref_causal(b, h, q, kv):
    return q >= kv


class GymTest(HeedTestCase):

    def test_causal(self):
        _, q, k, v = inputs(self)
        out = run_flex(q, k, v, mask_mod=causal)
        self.assertClose(out, reference(q, k, v, ref_causal)[0])

    def test_sink_logits(self):
        # gpt-oss's learned sinks: one logit per query head in the denominator only.
        rng, q, k, v = inputs(self, H=4, Hkv=2)
        sinks = (randn(rng, (4,)) * 2).astype(np.float32)
        out, lse = run_flex(q, k, v, mask_mod=causal, enable_gqa=True, return_lse=True,
                            sinks=sinks)
        q64, k64, v64 = (np.repeat(np.asarray(t, np.float64), r, axis=1)
                         for t, r in ((q, 1), (k, 2), (v, 2)))
        s = np.einsum("bhqd,bhkd->bhqk", q64, k64) / math.sqrt(q.shape[3])
        S = s.shape[2]
        s = np.where(np.tril(np.ones((S, S), bool)), s, -np.inf)
        x = sinks.astype(np.float64).reshape(1, 4, 1, 1)
        m = np.maximum(s.max(axis=-1, keepdims=True), x)
        p = np.exp(s - m)
        l = p.sum(axis=-1, keepdims=True) + np.exp(x - m)
        self.assertClose(out, (p @ v64) / l)
        self.assertClose(lse, (m + np.log(l))[..., 0], what="lse")
        with self.assertRaises(heed.HeedError):
            run_flex(q, k, v, mask_mod=causal, enable_gqa=True, sinks=sinks[:3])

    def test_sliding_window(self):
        rng, q, k, v = inputs(self)
        w = int(rng.integers(3, 40))
        out = run_flex(q, k, v, mask_mod=generate_sliding_window(w))
        want, _ = reference(q, k, v, lambda b, h, i, j: (i >= j) & (i - j <= w))
        self.assertClose(out, want)

    def test_prefix_lm(self):
        rng, q, k, v = inputs(self)
        n = int(rng.integers(1, q.shape[2]))
        out = run_flex(q, k, v, mask_mod=generate_prefix_lm_mask(n))
        self.assertClose(out, reference(q, k, v, lambda b, h, i, j: (j <= n) | (i >= j))[0])

    def test_prefix_lm_per_batch(self):
        # A per-sequence prefix length: a captured tensor read at b (a run-time buffer).
        rng, q, k, v = inputs(self, B=3)
        lengths = rng.integers(0, q.shape[2], size=3).astype(np.int64)

        def prefix(b, h, q_idx, kv_idx):
            return (kv_idx < lengths[b]) | (q_idx >= kv_idx)
        out = run_flex(q, k, v, mask_mod=prefix)
        want, _ = reference(q, k, v, lambda b, h, i, j: (j < lengths[b]) | (i >= j))
        self.assertClose(out, want)
        self.assertIn("buffer lengths: i64[3]", heed.explain(mask_mod=prefix))

    def test_document(self):
        rng, q, k, v = inputs(self)
        S = q.shape[2]
        cuts = np.sort(rng.choice(np.arange(1, S), size=int(rng.integers(1, 6)), replace=False))
        offsets = np.concatenate([[0], cuts, [S]]).astype(np.int64)
        doc_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        out = run_flex(q, k, v, mask_mod=generate_doc_mask_mod(causal, offsets))
        want, _ = reference(q, k, v, lambda b, h, i, j: (doc_of[i] == doc_of[j]) & (i >= j))
        self.assertClose(out, want)
        spec = heed.explain(mask_mod=generate_doc_mask_mod(causal, offsets))
        self.assertIn("buffer document_id: i64[%d]" % S, spec)
        self.assertIn("buffer offsets: i64[%d]" % len(offsets), spec)

    def test_alibi(self):
        _, q, k, v = inputs(self, H=8)
        out = run_flex(q, k, v, score_mod=generate_alibi_bias(8), mask_mod=causal)
        slopes = np.exp2(-((np.arange(8) + 1) * 8.0 / 8)).astype(np.float32).astype(np.float64)
        want, _ = reference(q, k, v, ref_causal,
                            score_fn=lambda s, b, h, i, j: s + slopes[h] * (j - i))
        self.assertClose(out, want)

    def test_softcap(self):
        _, q, k, v = inputs(self)
        q *= 4  # scores large enough for the cap to matter
        cap = 2.5
        out, lse = run_flex(q, k, v, score_mod=generate_tanh_softcap(cap), return_lse=True)
        want, want_lse = reference(q, k, v, score_fn=lambda s, b, h, i, j: cap * np.tanh(s / cap))
        self.assertClose(out, want)
        self.assertLse(lse, want_lse)
        self.assertIn("tanh((score / 2.5))", heed.explain(generate_tanh_softcap(cap)))

    def test_t5_relative_bias(self):
        rng, q, k, v = inputs(self)
        S, H = q.shape[2], q.shape[1]
        table = rng.standard_normal((H, 32)).astype(np.float32)
        out = run_flex(q, k, v, score_mod=generate_t5_bias(table, S))
        bucket = t5_buckets(S, 32)
        want, _ = reference(q, k, v, score_fn=lambda s, b, h, i, j:
                            s + table.astype(np.float64)[h, bucket[j - i + S - 1]])
        self.assertClose(out, want)

    def test_neighborhood_2d(self):
        rng, q, k, v = inputs(self, S=12 * 16)
        kw, kh = 5, 3
        out = run_flex(q, k, v, mask_mod=generate_natten(16, 12, kw, kh))

        def ref(b, h, i, j):
            qy, qx, ky, kx = i // 16, i % 16, j // 16, j % 16
            cx = np.clip(qx, kw // 2, 15 - kw // 2)
            cy = np.clip(qy, kh // 2, 11 - kh // 2)
            return (np.abs(cx - kx) <= kw // 2) & (np.abs(cy - ky) <= kh // 2)
        self.assertClose(out, reference(q, k, v, ref)[0])

    def test_gqa_scale_lse_and_where(self):
        rng, q, k, v = inputs(self, H=6, Hkv=2)
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            flex_attention(q, k, v)
        self.assertIn("enable_gqa", str(cm.exception))

        def score(score, b, h, q_idx, kv_idx):
            return heed.where(q_idx - kv_idx > 7, score - 1.5, score * 0.5)
        out, lse = run_flex(q, k, v, score_mod=score, mask_mod=causal, enable_gqa=True,
                            scale=0.3, return_lse=True)
        want, want_lse = reference(q, k, v, ref_causal, scale=0.3, score_fn=lambda s, b, h, i, j:
                                   np.where(i - j > 7, s - 1.5, s * 0.5))
        self.assertClose(out, want)
        self.assertLse(lse, want_lse)

    def test_float16_and_return_aux(self):
        _, q, k, v = inputs(self, dtype=np.float16)

        class AuxRequest:
            lse = True
        bm = create_block_mask(causal, 1, 1, q.shape[2], k.shape[2])
        out, aux = flex_attention(q, k, v, block_mask=bm, return_aux=AuxRequest())
        self.assertEqual(out.dtype, np.float16)
        want, want_lse = reference(q, k, v, ref_causal)
        self.assertClose(out, want, atol=3e-3, rtol=3e-3)
        self.assertLse(aux.lse, want_lse)

    def test_noop_and_full(self):
        _, q, k, v = inputs(self, B=1, H=2)
        self.assertClose(run_flex(q, k, v, mask_mod=heed.noop_mask), reference(q, k, v)[0])
        self.assertClose(run_flex(q, k, v), reference(q, k, v)[0])
        self.assertEqual(heed.explain().splitlines()[-2:], ["variant flex {", "}"])


class NineTest(HeedTestCase):
    """python/examples/flex_nine.py's variants, against references written here."""

    def reference_mask(self, v):
        i = v.info
        if v.name == "full":
            return None
        if v.name in ("causal", "alibi_causal", "softcap_causal"):
            return ref_causal
        if v.name == "sliding_window":
            return lambda b, h, q, kv: (q >= kv) & (q - kv < i["window"])
        if v.name == "document":
            d = i["doc_ids"]
            return lambda b, h, q, kv: (d[q] == d[kv]) & (q >= kv)
        if v.name == "prefix_lm":
            return lambda b, h, q, kv: (kv < i["prefix"]) | (q >= kv)
        if v.name == "neighborhood_2d":
            rows, cols, n = i["rows"], i["cols"], i["k"]

            def axis(a, c, length):
                start = np.clip(a - n // 2, 0, max(length - n, 0))
                return (c >= start) & (c < start + n)
            return lambda b, h, q, kv: axis(q // cols, kv // cols, rows) & axis(q % cols, kv % cols,
                                                                                 cols)
        if v.name == "block_sparse":
            lay, blk = i["layout"], i["block"]
            return lambda b, h, q, kv: lay[h, q // blk, kv // blk] != 0
        raise AssertionError(v.name)

    def reference_score(self, v):
        if v.name == "alibi_causal":
            s = v.info["slopes"].astype(np.float64)
            return lambda x, b, h, q, kv: x + s[h] * (kv - q)
        if v.name == "softcap_causal":
            c = v.info["cap"]
            return lambda x, b, h, q, kv: c * np.tanh(x / c)
        return None

    def test_nine_variants(self):
        rng = make_rng(self)
        S, H, D = 256, 4, 64
        q, k, v = (randn(rng, (1, H, S, D)) for _ in range(3))
        q *= 2
        seed = int(rng.integers(1 << 31))
        variants = flex_nine.make_variants(S, H, seed)
        self.assertEqual([x.name for x in variants], flex_nine.VARIANTS)
        for variant in variants:
            with self.subTest(variant=variant.name):
                out = flex_nine.run(variant, q, k, v)
                want, _ = reference(q, k, v, self.reference_mask(variant),
                                    score_fn=self.reference_score(variant))
                self.assertClose(out, want, what=variant.name)
                print("  %-16s max |error| %.2g" % (variant.name,
                                                    float(np.abs(out - want).max())))

    def test_script_runs(self):
        self.assertEqual(flex_nine.main(["--seq", "128", "--heads", "2", "--dim", "32",
                                         "--variants", "causal,document,softcap_causal"]), 0)


class TraceTest(HeedTestCase):

    def spec_lines(self, score_mod=None, mask_mod=None):
        text = heed.explain(score_mod, mask_mod=mask_mod)
        return [ln.strip() for ln in text.splitlines() if ln.startswith("  ")]

    def test_spec_text(self):
        self.assertEqual(self.spec_lines(mask_mod=causal), ["mask = (q >= kv)"])
        self.assertEqual(self.spec_lines(mask_mod=generate_sliding_window(8)),
                         ["mask = ((q >= kv) && ((q - kv) <= 8))"])
        self.assertEqual(self.spec_lines(lambda s, b, h, q, kv: s * 2 - (q // 3) % 5),
                         ["score = ((score * 2) - ((q / 3) % 5))"])
        # True division of integers is f32 division, as in torch.
        self.assertEqual(self.spec_lines(lambda s, b, h, q, kv: s + q / 4),
                         ["score = (score + (f32(q) / 4.0))"])
        self.assertEqual(self.spec_lines(mask_mod=lambda b, h, q, kv: ~(q < kv) | (h == 1)),
                         ["mask = ((!(q < kv)) || (h == 1))"])
        # A shared subexpression becomes a let.

        def rows_apart(b, h, q_idx, kv_idx):
            d = (q_idx // 16 - kv_idx // 16).abs()
            return (d <= 2) | (d == 5)
        self.assertEqual(self.spec_lines(mask_mod=rows_apart),
                         ["let t0 = abs(((q / 16) - (kv / 16)))",
                          "mask = ((t0 <= 2) || (t0 == 5))"])

    def test_numpy_and_heed_functions_trace_alike(self):
        a = self.spec_lines(lambda s, b, h, q, kv: np.exp(np.minimum(s, 0.0)) + np.abs(q - kv))
        b = self.spec_lines(lambda s, b, h, q, kv: heed.exp(heed.minimum(s, 0.0)) + abs(q - kv))
        self.assertEqual(a, b)
        self.assertEqual(a, ["score = (exp(min(score, 0.0)) + abs((q - kv)))"])
        self.assertEqual(heed.tanh(0.5), np.tanh(0.5))  # plain numbers: numpy computes

    def assertTraceError(self, fn, *words, score=False):
        with self.assertRaises(heed.TraceError) as cm:
            if score:
                heed.explain(fn)
            else:
                heed.create_block_mask(fn, 1, 1, 16, 16)
        text = str(cm.exception)
        for w in words:
            self.assertIn(w, text)
        self.assertIn(os.path.basename(__file__), text)  # the user's line
        print("  %s" % text.splitlines()[0][:140])

    def test_untraceable(self):
        def python_if(b, h, q_idx, kv_idx):
            if q_idx >= kv_idx:
                return True
            return False
        self.assertTraceError(python_if, "control flow", "`if`")
        self.assertTraceError(lambda b, h, q, kv: q >= kv and kv >= 0, "control flow")
        self.assertTraceError(lambda b, h, q, kv: 0 <= kv <= q, "chained comparison")
        self.assertTraceError(lambda b, h, q, kv: np.sin(q) > 0, "numpy.sin")
        self.assertTraceError(lambda b, h, q, kv: (q & 3) == 0, "`&`", "bitwise")
        self.assertTraceError(lambda b, h, q, kv: (q << 1) > kv, "`<<`")
        self.assertTraceError(lambda s, b, h, q, kv: s % 2.0, "`%` on floats", score=True)
        self.assertTraceError(lambda s, b, h, q, kv: s ** q, "`**`", score=True)

        class Holder:
            pass
        holder = Holder()
        holder.table = np.arange(16)
        self.assertTraceError(lambda b, h, q, kv: holder.table[q] > kv, "could not see",
                              "closure")
        table = np.arange(16)
        self.assertTraceError(lambda b, h, q, kv: table[q:] > kv, "slicing")
        grid = np.zeros((4, 4), np.int32)
        self.assertTraceError(lambda b, h, q, kv: grid[q] > 0, "partly indexed")
        self.assertTraceError(lambda b, h, q, kv: table[q * 0.5] > 0, "float index")
        with self.assertRaises(heed.TraceError) as cm:
            heed.create_block_mask(lambda b, h, q, kv: q - kv, 1, 1, 8, 8)
        self.assertIn("not a bool", str(cm.exception))
        with self.assertRaises(heed.TraceError):
            heed.explain(lambda s, b, h, q, kv: q > kv)
        with self.assertRaises(heed.TraceError):  # a mask_mod with the wrong arity
            heed.create_block_mask(lambda b, q: q, 1, 1, 8, 8)

    def test_block_mask_is_free(self):
        # No O(S^2) work: a mask over a million tokens is a trace and nothing else.
        t = time.perf_counter()
        bm = create_block_mask(causal, None, None, 1 << 20, 1 << 20, device="cuda")
        elapsed = time.perf_counter() - t
        print("\n  create_block_mask(causal, S=2^20): %.2f ms" % (elapsed * 1e3))
        self.assertLess(elapsed, 0.5)
        self.assertEqual(bm.shape, (1, 1, 1 << 20, 1 << 20))
        self.assertIn("mask_mod=causal", repr(bm))
        with self.assertRaises(heed.InvalidArgumentError):
            create_block_mask(causal, 1, 1, 0, 8)
        rng, q, k, v = inputs(self, B=1, H=1, S=64)
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            flex_attention(q, k, v, block_mask=create_block_mask(causal, 1, 1, 32, 64))
        self.assertIn("Q_LEN=32", str(cm.exception))

    def test_analysis_skips_blocks_of_traced_masks(self):
        # The traced mask is plain spec text: heed's analysis classifies its blocks.
        rng = make_rng(self)
        S, D = 512, 32
        q, k, v = (randn(rng, (1, 1, S, D)) for _ in range(3))
        spec = heed.explain(mask_mod=generate_sliding_window(100))
        kernel = heed.compile(spec, head_dim=D)
        kernel(q, k, v)
        st = kernel.last_stats
        print("\n  sliding window 100 at S=512: %s" % st)
        # Causal alone visits about half the blocks; the band of 100 keys
        # (plus a tile's width: 32 x 16 tiles give 9 key tiles per query
        # tile) about a quarter.
        self.assertLess(st["visited_blocks"], st["total_blocks"] * 3 // 10)
        self.assertGreater(st["full_blocks"], 0)

    def test_cache_by_traced_text(self):
        _, q, k, v = inputs(self, B=1, H=2, S=40)
        # Windows no other test of this process compiles (test_sliding_window
        # draws from [3, 40)): their kernels are new to the memory cache.
        mask = generate_sliding_window(45)
        flex_attention(q, k, v, block_mask=create_block_mask(mask, 1, 1, 40, 40))
        before = heed.cache_stats()
        # A new block mask and a fresh closure with the same text: nothing is compiled.
        flex_attention(q, k, v, block_mask=create_block_mask(generate_sliding_window(45), 1, 1,
                                                             40, 40))
        after = heed.cache_stats()
        self.assertEqual(after["compiles"], before["compiles"])
        self.assertEqual(after["memory_hits"], before["memory_hits"])  # the Python-side cache
        self.assertEqual(after["disk_hits"], before["disk_hits"])
        flex_attention(q, k, v, block_mask=create_block_mask(generate_sliding_window(46), 1, 1,
                                                             40, 40))
        # New text: a kernel from the compiler or, when another test process
        # sharing the disk cache made it first, from disk.
        last = heed.cache_stats()
        self.assertEqual(last["compiles"] + last["disk_hits"],
                         before["compiles"] + before["disk_hits"] + 1)

    def test_captured_tensor_changes_values_not_text(self):
        # A buffer's contents are read at run time: new values, same kernel.
        rng, q, k, v = inputs(self, B=1, H=4, S=50)
        table = rng.standard_normal(4).astype(np.float32)

        def bias(score, b, h, q_idx, kv_idx):
            return score + table[h]
        first = heed.explain(bias)
        out1 = run_flex(q, k, v, score_mod=bias)
        table[:] = rng.standard_normal(4)
        out2 = run_flex(q, k, v, score_mod=bias)
        self.assertEqual(first, heed.explain(bias))
        self.assertClose(out2, reference(q, k, v, score_fn=lambda s, b, h, i, j:
                                         s + table.astype(np.float64)[h])[0])
        self.assertFalse(np.allclose(out1, out2))

    def test_kernel_options(self):
        _, q, k, v = inputs(self, B=1, H=1, S=20)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            flex_attention(q, k, v, kernel_options={"BLOCK_M": 64, "num_warps": 4,
                                                    "num_threads": 1})
            self.assertEqual(caught, [])
            flex_attention(q, k, v, kernel_options={"NOT_AN_OPTION": 1})
            self.assertEqual(len(caught), 1)
            self.assertIn("NOT_AN_OPTION", str(caught[0].message))


if __name__ == "__main__":
    unittest.main()
