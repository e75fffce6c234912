#!/usr/bin/env python3
"""Serving calls from Python (docs/decode.md): a kernel compiled with ``page_size``
reads k and v from a paged cache through ``page_table`` with each batch entry's
``kv_lens``, and a kernel compiled with ``q_lens`` takes each entry's number of
queries (rows past them stay unwritten), and one compiled with
``cu_seqlens_q``/``cu_seqlens_kv`` takes packed sequences; checked against a float64 numpy decode
(bottom-right causal with a window, GQA) on fresh random inputs (seed printed);
bad lengths raise. Exits 77 (SKIPPED) without numpy."""

import unittest

import heed_testing
from heed_testing import HeedTestCase, make_rng, np, randn

heed_testing.require(__name__)

import heed  # noqa: E402  (after the environment is set up)

WINDOW = """variant decode_window {
  mask = causal_bottom_right() && q + (Skv - Sq) - kv < 40
}"""


def reference(q, keys, values, lens, scale, q_lens=None):
    """float64 out [B, Sq, Hq, D] of bshd q and per-entry contiguous keys; with
    q_lens, entry i's first q_lens[i] queries (Sq = q_lens[i]), NaN past them."""
    b, capacity, hq, d = q.shape
    out = np.full((b, capacity, hq, values[0].shape[-1]), np.nan)
    for i in range(b):
        skv = lens[i]
        sq = capacity if q_lens is None else q_lens[i]
        k, v = keys[i].astype(np.float64), values[i].astype(np.float64)  # [Skv, Hkv, D]
        group = hq // k.shape[1]
        for h in range(hq):
            s = scale * q[i, :sq, h, :].astype(np.float64) @ k[:, h // group, :].T  # [Sq, Skv]
            pos = np.arange(sq)[:, None] + (skv - sq)
            kv = np.arange(skv)[None, :]
            visible = (pos >= kv) & (pos - kv < 40)
            s = np.where(visible, s, -np.inf)
            m = s.max(axis=1, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            p = np.where(visible, np.exp(s - m), 0)
            den = p.sum(axis=1, keepdims=True)
            out[i, :sq, h, :] = np.where(den > 0, p @ v[:, h // group, :] / np.where(den > 0, den, 1), 0)
    return out


class ServingTest(HeedTestCase):

    def test_paged_decode_matches_float64(self):
        rng = make_rng(self)
        b, hq, hkv, sq, d, page = 3, 8, 2, 2, 32, 16
        lens = np.array([100, 1, 37], dtype=np.int32)
        max_pages = 7
        kernel = heed.compile(WINDOW, head_dim=d, layout="bshd", page_size=page)
        self.assertEqual(kernel.page_size, page)
        self.assertTrue(kernel.has_kv_lens)
        q = randn(rng, (b, sq, hq, d))
        keys = [randn(rng, (n, hkv, d)) for n in lens]
        values = [randn(rng, (n, hkv, d)) for n in lens]
        # The entries' pages from one pool, in a random order.
        pool = sum((n + page - 1) // page for n in lens)
        order = rng.permutation(pool)
        k_cache = np.full((pool, page, hkv, d), np.nan, np.float32)
        v_cache = np.full((pool, page, hkv, d), np.nan, np.float32)
        table = np.full((b, max_pages), -1, np.int32)
        used = 0
        for i, n in enumerate(lens):
            for p in range((n + page - 1) // page):
                table[i, p] = order[used]
                rows = slice(p * page, min(n, (p + 1) * page))
                k_cache[order[used], :rows.stop - rows.start] = keys[i][rows]
                v_cache[order[used], :rows.stop - rows.start] = values[i][rows]
                used += 1
        out = np.full((b, sq, hq, d), np.nan, np.float32)
        kernel(q, k_cache, v_cache, out=out, kv_lens=lens, page_table=table)
        want = reference(q, keys, values, lens, d ** -0.5)
        err = np.abs(out - want).max() / np.abs(want).max()
        self.assertLess(err, 1e-5)

        bad = lens.copy()
        bad[1] = max_pages * page + 1
        with self.assertRaises(heed.InvalidArgumentError) as e:
            kernel(q, k_cache, v_cache, kv_lens=bad, page_table=table)
        self.assertIn("kv_lens[1] = 113 is outside [0, 112]", str(e.exception))

    def test_ragged_queries_match_float64(self):
        rng = make_rng(self)
        b, hq, hkv, capacity, skv, d = 4, 4, 2, 6, 50, 32
        lens = np.array([50, 3, 20, 41], dtype=np.int32)
        q_lens = np.array([6, 1, 0, 4], dtype=np.int32)
        kernel = heed.compile(WINDOW, head_dim=d, layout="bshd", kv_lens=True, q_lens=True)
        self.assertTrue(kernel.has_q_lens)
        q = randn(rng, (b, capacity, hq, d))
        k = randn(rng, (b, skv, hkv, d))
        v = randn(rng, (b, skv, hkv, d))
        out = np.full((b, capacity, hq, d), np.nan, np.float32)
        kernel(q, k, v, out=out, kv_lens=lens, q_lens=q_lens)
        want = reference(q, [k[i, :n] for i, n in enumerate(lens)],
                         [v[i, :n] for i, n in enumerate(lens)], lens, d ** -0.5, q_lens)
        written = ~np.isnan(want)
        self.assertTrue(np.array_equal(~np.isnan(out), written),
                        "rows past q_lens were written, or rows within were not")
        err = np.abs(out[written] - want[written]).max() / np.abs(want[written]).max()
        self.assertLess(err, 1e-5)

        bad = q_lens.copy()
        bad[3] = capacity + 1
        with self.assertRaises(heed.InvalidArgumentError) as e:
            kernel(q, k, v, kv_lens=lens, q_lens=bad)
        self.assertIn("q_lens[3] = 7 is outside [0, 6]", str(e.exception))

    def test_packed_sequences_match_float64(self):
        # FlashAttention's varlen layout: every entry's queries and keys end to
        # end, entry i at rows cu[i]:cu[i+1]; two slack rows after them stay
        # unread (NaN in q, k, v) and unwritten (NaN in out).
        rng = make_rng(self)
        hq, hkv, d = 4, 2, 32
        q_lens = np.array([6, 1, 0, 4], dtype=np.int32)
        lens = np.array([50, 3, 20, 41], dtype=np.int32)
        cu_q = np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int32)
        cu_kv = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        kernel = heed.compile(WINDOW, head_dim=d, layout="bshd", lse=True,
                              cu_seqlens_q=True, cu_seqlens_kv=True)
        self.assertTrue(kernel.has_cu_seqlens_q and kernel.has_cu_seqlens_kv)
        self.assertFalse(kernel.has_q_lens or kernel.has_kv_lens)
        nan = lambda n, h: np.full((1, n + 2, h, d), np.nan, np.float32)
        q, k, v = nan(cu_q[-1], hq), nan(cu_kv[-1], hkv), nan(cu_kv[-1], hkv)
        q[:, :cu_q[-1]] = randn(rng, (1, cu_q[-1], hq, d))
        k[:, :cu_kv[-1]] = randn(rng, (1, cu_kv[-1], hkv, d))
        v[:, :cu_kv[-1]] = randn(rng, (1, cu_kv[-1], hkv, d))
        out = nan(cu_q[-1], hq)
        out, lse = kernel(q, k, v, out=out, cu_seqlens_q=cu_q, cu_seqlens_kv=cu_kv)
        self.assertEqual(lse.shape, (1, hq, cu_q[-1] + 2))
        # The reference on the padded batch.
        capacity = int(q_lens.max())
        padded = np.zeros((len(q_lens), capacity, hq, d), np.float32)
        for i in range(len(q_lens)):
            padded[i, :q_lens[i]] = q[0, cu_q[i]:cu_q[i + 1]]
        want = reference(padded, [k[0, cu_kv[i]:cu_kv[i + 1]] for i in range(len(lens))],
                         [v[0, cu_kv[i]:cu_kv[i + 1]] for i in range(len(lens))], lens,
                         d ** -0.5, q_lens)
        got = out[0, :cu_q[-1]]
        want = np.concatenate([want[i, :q_lens[i]] for i in range(len(q_lens))])
        err = np.abs(got - want).max() / np.abs(want).max()
        self.assertLess(err, 1e-5)
        self.assertTrue(np.isnan(out[0, cu_q[-1]:]).all(), "slack rows were written")

        bad = cu_q.copy()
        bad[2] = bad[3] + 1
        with self.assertRaises(heed.InvalidArgumentError) as e:
            kernel(q, k, v, cu_seqlens_q=bad, cu_seqlens_kv=cu_kv)
        self.assertIn("cu_seqlens_q must not decrease", str(e.exception))


if __name__ == "__main__":
    unittest.main()
