#!/usr/bin/env python3
"""Tests of heed.pictures: block classes from the compiled classifier (checked against a
brute-force evaluation of the mask on every block: EMPTY blocks have no visible pair, FULL
blocks no hidden one), the text view, the PNG (matplotlib where installed, else the
ImportError naming it), BlockMask.sparsity() and print(block_mask). Exit 77 without numpy.
"""

import importlib.util
import os
import sys
import tempfile
import unittest

import heed_testing
from heed_testing import HeedTestCase, make_rng, np

heed_testing.require(__name__)

import heed  # noqa: E402
from heed import pictures  # noqa: E402

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def brute_classes(mask_fn, B, H, Sq, Skv, bq, bk):
    """Exact classes per block, from the mask evaluated on every (q, kv) pair."""
    b = np.arange(B).reshape(B, 1, 1, 1)
    h = np.arange(H).reshape(1, H, 1, 1)
    q = np.arange(Sq).reshape(1, 1, Sq, 1)
    kv = np.arange(Skv).reshape(1, 1, 1, Skv)
    m = np.broadcast_to(mask_fn(b, h, q, kv), (B, H, Sq, Skv))
    nq, nk = -(-Sq // bq), -(-Skv // bk)
    out = np.zeros((B, H, nq, nk), np.uint8)
    for i in range(nq):
        for j in range(nk):
            blk = m[:, :, i * bq:(i + 1) * bq, j * bk:(j + 1) * bk]
            anyv = blk.any(axis=(2, 3))
            allv = blk.all(axis=(2, 3))
            out[:, :, i, j] = np.where(~anyv, pictures.EMPTY,
                                       np.where(allv, pictures.FULL, pictures.PARTIAL))
    return out


class CensusTest(HeedTestCase):

    def check(self, mask_mod, ref_fn, B=1, H=1, S=300, block=64, exact=True):
        bm = heed.create_block_mask(mask_mod, B, H, S, S, BLOCK_SIZE=block)
        census = bm.census()
        want = brute_classes(ref_fn, B, H, S, S, block, block)
        got = census.classes
        self.assertEqual(got.shape, want.shape)
        # Sound: never EMPTY with a visible pair, never FULL with a hidden one.
        self.assertFalse(((got == pictures.EMPTY) & (want != pictures.EMPTY)).any())
        self.assertFalse(((got == pictures.FULL) & (want != pictures.FULL)).any())
        loose = int(((got == pictures.PARTIAL) & (want != pictures.PARTIAL)).sum())
        print("  %s: %r, %d probes, %d blocks PARTIAL that are not" % (
            getattr(mask_mod, "__name__", "?"), census, census.tile_probes, loose))
        if exact:
            np.testing.assert_array_equal(got, want)
        return bm, census

    def test_causal(self):
        bm, census = self.check(lambda b, h, q, kv: q >= kv, lambda b, h, q, kv: q >= kv,
                                S=512, block=64)
        self.assertAlmostEqual(bm.sparsity(), 100.0 * 28 / 64)
        self.assertEqual(census.count("partial"), 8)

    def test_sliding_window_odd_length(self):
        self.check(lambda b, h, q, kv: (q >= kv) & (q - kv < 100),
                   lambda b, h, q, kv: (q >= kv) & (q - kv < 100), S=333, block=32)

    def test_document(self):
        rng = make_rng(self)
        S = 400
        doc = np.sort(rng.integers(0, 5, size=S)).astype(np.int32)

        def document(b, h, q_idx, kv_idx):
            return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)
        self.check(document, lambda b, h, q, kv: (doc[q] == doc[kv]) & (q >= kv), S=S,
                   block=32, exact=False)

    def test_per_head_windows(self):
        windows = np.array([16, 64, 200], np.int64)

        def per_head(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < windows[h])
        bm, census = self.check(per_head, lambda b, h, q, kv: (q >= kv) & (q - kv < windows[h]),
                                H=3, S=256, block=32, exact=False)
        # The heads differ: fewer blocks are visited with a narrower window.
        visited = (census.classes[0] != pictures.EMPTY).sum(axis=(1, 2))
        self.assertLess(visited[0], visited[1])
        self.assertLess(visited[1], visited[2])

    def test_batch_and_head_independent_masks_probe_once(self):
        bm = heed.create_block_mask(lambda b, h, q, kv: q >= kv, 2, 4, 128, 128, BLOCK_SIZE=32)
        census = bm.census()
        self.assertEqual(census.classes.shape, (2, 4, 4, 4))
        self.assertEqual(census.tile_probes, 16)
        self.assertTrue((census.classes == census.classes[0, 0]).all())


class ViewTest(HeedTestCase):

    def test_text(self):
        bm = heed.create_block_mask(lambda b, h, q, kv: q >= kv, 1, 1, 256, 256,
                                    BLOCK_SIZE=64)
        text = pictures.block_text(bm, unicode=False)
        print("\n" + text)
        lines = text.splitlines()
        self.assertIn("empty 37.5%", lines[0])
        self.assertEqual(lines[2:], ["+----+", "|+...|", "|#+..|", "|##+.|", "|###+|",
                                     "+----+"])
        self.assertIn("\u2588", str(bm))  # print(block_mask): unicode blocks

    def test_downsampled_text(self):
        bm = heed.create_block_mask(lambda b, h, q, kv: q >= kv, 1, 1, 1024, 1024,
                                    BLOCK_SIZE=16)
        text = pictures.block_text(bm, max_rows=8, max_cols=8, unicode=False)
        self.assertIn("a cell is 8x8 blocks", text)
        self.assertIn("|##+.....|", text.splitlines())

    def test_show_blocks_text(self):
        bm = heed.create_block_mask(lambda b, h, q, kv: kv < 40, 1, 1, 128, 128,
                                    BLOCK_SIZE=32)
        text = heed.show_blocks(bm, unicode=False)
        self.assertIn("|#+..|", text.splitlines())

    @unittest.skipUnless(HAVE_MPL, "matplotlib not installed")
    def test_png(self):
        bm = heed.create_block_mask(lambda b, h, q, kv: (q >= kv) & (q - kv < 64), None, 2,
                                    512, 512, BLOCK_SIZE=32)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "blocks.png")
            self.assertEqual(heed.show_blocks(bm, path), path)
            with open(path, "rb") as f:
                data = f.read()
            self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
            self.assertGreater(len(data), 1000)
            print("\n  PNG: %d bytes" % len(data))

    def test_png_without_matplotlib(self):
        bm = heed.create_block_mask(lambda b, h, q, kv: q >= kv, 1, 1, 64, 64, BLOCK_SIZE=32)
        saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "matplotlib"}
        for k in saved:
            del sys.modules[k]
        sys.modules["matplotlib"] = None  # import matplotlib now raises ImportError
        try:
            with self.assertRaises(ImportError) as cm:
                heed.show_blocks(bm, "never-written.png")
            self.assertIn("matplotlib", str(cm.exception))
            self.assertFalse(os.path.exists("never-written.png"))
        finally:
            del sys.modules["matplotlib"]
            sys.modules.update(saved)


if __name__ == "__main__":
    unittest.main()
