#!/usr/bin/env python3
"""Tests of heed's Python binding (python/heed) against a float64 numpy reference.

Run with ``python3 -m unittest discover -s python/tests`` or as a script
``python3 python/tests/test_heed.py -v``. The library is found as the package
finds it ($HEED_LIBRARY, then build/lib/libheed.so). Every numerical test draws
fresh inputs from a random seed that it prints; set HEED_TEST_SEED to replay
one. Without numpy the script prints "SKIPPED: numpy not installed" and exits
with 77.
"""

import math
import os
import re
import shutil
import sys
import tempfile
import types
import unittest

import heed_testing
from heed_testing import (CACHE_DIR as _CACHE_DIR, EXAMPLES, HeedTestCase, make_rng, nans, np,
                          randn, reference)

heed_testing.require(__name__)

import heed  # noqa: E402  (after the environment is set up)

CAUSAL = """
# Causal attention, written inline.
variant causal {
  mask = causal()
}
"""
FULL = "variant full { mask = true }"


# ---- helpers -------------------------------------------------------------------


def causal_mask(b, h, qi, kv):
    return qi >= kv


class DLPackOnly:
    """A tensor seen only through __dlpack__ (like a torch CPU tensor)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, stream=None):
        return self._array.__dlpack__()

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


class BF16Array:
    """A bfloat16 array as ml_dtypes shows one: typestr '<V2', dtype.name
    'bfloat16'; the bits live in a uint16 numpy array."""

    class _DType:
        name = "bfloat16"

    def __init__(self, bits):
        self.bits = bits
        iface = dict(bits.__array_interface__)
        iface["typestr"] = "<V2"
        iface["descr"] = [("", "<V2")]
        self.__array_interface__ = iface
        self.dtype = self._DType()
        self.shape = bits.shape

    @classmethod
    def from_float(cls, x):
        """Rounds float32 values to bfloat16 (to nearest even)."""
        u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return cls(u.astype(np.uint16))

    def to_float(self):
        return (self.bits.astype(np.uint32) << 16).view(np.float32)


class FakeCuda:
    """A tensor that claims to live on a CUDA device (never dereferenced:
    tests that would launch on it run only where there is no CUDA driver).
    Each has an address of its own: outputs sharing an input's memory are
    refused before any launch."""

    _next_address = 1 << 32

    def __init__(self, shape, typestr="<f4"):
        FakeCuda._next_address += 1 << 32
        self.__cuda_array_interface__ = {
            "shape": tuple(shape), "typestr": typestr,
            "data": (FakeCuda._next_address, False), "strides": None, "version": 3}


def cuda_driver_loads():
    """Whether libcuda.so.1 loads here (then fake device pointers must never
    reach a launch)."""
    import ctypes
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def torch_cuda():
    """torch, when it is installed and sees a CUDA GPU; else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() and not torch.version.hip else None


# ---- numerics -------------------------------------------------------------------


class NumericsTest(HeedTestCase):

    def test_causal_inline_spec(self):
        rng = make_rng(self)
        B, H, S, D = 2, 3, 70, 32
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        kernel = heed.compile(CAUSAL, head_dim=D)
        out = nans((B, H, S, D))
        got = kernel(q, k, v, out=out)
        self.assertIs(got, out)
        want, _ = reference(q, k, v, causal_mask)
        self.assertClose(out, want)
        stats = kernel.last_stats
        self.assertEqual(set(stats), {"visited_blocks", "full_blocks", "partial_blocks",
                                      "total_blocks"})
        self.assertGreater(stats["visited_blocks"], 0)
        self.assertLessEqual(stats["visited_blocks"], stats["total_blocks"])
        self.assertLessEqual(stats["full_blocks"] + stats["partial_blocks"],
                             stats["visited_blocks"])

    def test_attention_allocates(self):
        rng = make_rng(self)
        B, H, S, D = 1, 2, 33, 16
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        out = heed.attention(q, k, v, CAUSAL)
        self.assertIsInstance(out, np.ndarray)
        self.assertEqual(out.dtype, np.float32)
        want, _ = reference(q, k, v, causal_mask)
        self.assertClose(out, want)

    def test_document_mask_buffer_dict(self):
        rng = make_rng(self)
        B, H, S, D = 2, 2, 96, 64
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        doc = np.sort(rng.integers(0, 5, size=S)).astype(np.int32)
        spec = os.path.join(EXAMPLES, "document.attn")  # a path: heed_compile_file
        out = nans((B, H, S, D))
        got = heed.attention(q, k, v, spec, buffers={"doc_ids": doc}, out=out)
        self.assertIs(got, out)
        want, _ = reference(q, k, v, lambda b, h, qi, kv: (doc[qi] == doc[kv]) & (qi >= kv))
        self.assertClose(out, want)

        # The same through a Kernel, the buffer as a sequence.
        kernel = heed.compile(spec, head_dim=D)
        self.assertEqual(kernel.buffers, [("doc_ids", "int32", "Skv")])
        out2 = kernel(q, k, v, out=nans((B, H, S, D)), buffers=[doc])
        self.assertClose(out2, want)

    def test_gqa(self):
        rng = make_rng(self)
        B, Hq, Hkv, S, D = 2, 4, 2, 50, 32
        q = randn(rng, (B, Hq, S, D))
        k, v = randn(rng, (B, Hkv, S, D)), randn(rng, (B, Hkv, S, D))
        spec = "variant window { mask = sliding_window(9) || kv == q + 3 }"
        out = nans((B, Hq, S, D))
        heed.attention(q, k, v, spec, out=out)
        want, _ = reference(q, k, v, lambda b, h, qi, kv: ((qi >= kv) & (qi - kv < 9))
                            | (kv == qi + 3))
        self.assertClose(out, want)

    def test_mqa_full(self):
        rng = make_rng(self)
        B, Hq, S, D = 1, 3, 20, 8
        q = randn(rng, (B, Hq, S, D))
        k, v = randn(rng, (B, 1, S, D)), randn(rng, (B, 1, S, D))
        out = heed.attention(q, k, v, FULL, out=nans((B, Hq, S, D)))
        want, _ = reference(q, k, v)
        self.assertClose(out, want)

    def test_return_lse(self):
        rng = make_rng(self)
        B, Hq, Hkv, S, D = 1, 4, 2, 45, 32
        q = randn(rng, (B, Hq, S, D))
        k, v = randn(rng, (B, Hkv, S, D)), randn(rng, (B, Hkv, S, D))
        out, lse = heed.attention(q, k, v, CAUSAL, return_lse=True,
                                  out=nans((B, Hq, S, D)), lse=nans((B, Hq, S)))
        self.assertEqual(lse.dtype, np.float32)
        self.assertEqual(lse.shape, (B, Hq, S))
        want, want_lse = reference(q, k, v, causal_mask)
        self.assertClose(out, want)
        self.assertLse(lse, want_lse)

        # Allocated by the binding too.
        out2, lse2 = heed.attention(q, k, v, CAUSAL, return_lse=True)
        self.assertClose(out2, want)
        self.assertLse(lse2, want_lse)

    def test_rows_without_visible_keys(self):
        # kv < q: query 0 sees nothing -> out 0, lse -inf.
        rng = make_rng(self)
        B, H, S, D = 1, 2, 19, 16
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        kernel = heed.compile("variant strict { mask = kv < q }", head_dim=D, lse=True)
        self.assertTrue(kernel.has_lse)
        out, lse = kernel(q, k, v, out=nans((B, H, S, D)), lse=nans((B, H, S)))
        want, want_lse = reference(q, k, v, lambda b, h, qi, kv: kv < qi)
        self.assertTrue(np.isneginf(want_lse[:, :, 0]).all())
        self.assertClose(out, want)
        self.assertLse(lse, want_lse)
        np.testing.assert_array_equal(out[:, :, 0], 0)

    def test_odd_sizes(self):
        rng = make_rng(self)
        B, H, Sq, Skv, D, Dv = 3, 2, 37, 53, 24, 40
        q = randn(rng, (B, H, Sq, D))
        k, v = randn(rng, (B, H, Skv, D)), randn(rng, (B, H, Skv, Dv))
        out, lse = heed.attention(q, k, v, CAUSAL, return_lse=True,
                                  out=nans((B, H, Sq, Dv)), lse=nans((B, H, Sq)))
        want, want_lse = reference(q, k, v, causal_mask)
        self.assertClose(out, want)
        self.assertLse(lse, want_lse)

    def test_bshd_layout(self):
        rng = make_rng(self)
        B, Hq, Hkv, Sq, Skv, D = 2, 4, 2, 31, 47, 32
        q = randn(rng, (B, Sq, Hq, D))
        k, v = randn(rng, (B, Skv, Hkv, D)), randn(rng, (B, Skv, Hkv, D))
        kernel = heed.compile(CAUSAL, head_dim=D, layout="bshd", lse=True)
        self.assertEqual(kernel.layout, "bshd")
        out, lse = kernel(q, k, v, out=nans((B, Sq, Hq, D)), lse=nans((B, Hq, Sq)))
        want, want_lse = reference(q, k, v, causal_mask, layout="bshd")
        self.assertClose(out, want)
        self.assertLse(lse, want_lse)
        # attention() with layout='bshd' allocates [B, S, H, D].
        out2 = heed.attention(q, k, v, CAUSAL, layout="bshd")
        self.assertEqual(out2.shape, (B, Sq, Hq, D))
        self.assertClose(out2, want)

    def test_non_contiguous_views(self):
        rng = make_rng(self)
        B, H, S, D = 2, 3, 40, 32
        # q: a BSHD buffer seen as BHSD (transposed view); k, v: slices of a
        # packed [B, H, S, 2, D] tensor; out: a transposed view as well.
        q = randn(rng, (B, S, H, D)).transpose(0, 2, 1, 3)
        kv = randn(rng, (B, H, S, 2, D))
        k, v = kv[:, :, :, 0, :], kv[:, :, :, 1, :]
        self.assertFalse(q.flags.c_contiguous or k.flags.c_contiguous)
        out_base = nans((B, S, H, D))
        out = out_base.transpose(0, 2, 1, 3)
        heed.attention(q, k, v, CAUSAL, out=out)
        want, _ = reference(q, k, v, causal_mask)
        self.assertClose(out, want)
        self.assertClose(out_base.transpose(0, 2, 1, 3), want)

    def test_dlpack_inputs(self):
        rng = make_rng(self)
        B, H, S, D = 1, 2, 24, 16
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        doc = np.sort(rng.integers(0, 3, size=S)).astype(np.int32)
        out = nans((B, H, S, D))
        heed.attention(DLPackOnly(q), DLPackOnly(k[:, :, :, :]), DLPackOnly(v),
                       os.path.join(EXAMPLES, "document.attn"),
                       buffers={"doc_ids": DLPackOnly(doc)}, out=DLPackOnly(out))
        want, _ = reference(q, k, v, lambda b, h, qi, kv: (doc[qi] == doc[kv]) & (qi >= kv))
        self.assertClose(out, want)

    def test_float16(self):
        rng = make_rng(self)
        B, H, S, D = 1, 2, 48, 32
        q, k, v = (randn(rng, (B, H, S, D), np.float16) for _ in range(3))
        out, lse = heed.attention(q, k, v, CAUSAL, return_lse=True,
                                  out=nans((B, H, S, D), np.float16), lse=nans((B, H, S)))
        self.assertEqual(out.dtype, np.float16)
        want, want_lse = reference(q, k, v, causal_mask)
        self.assertClose(out, want, atol=3e-3, rtol=3e-3)
        self.assertLse(lse, want_lse)

    def test_bfloat16(self):
        rng = make_rng(self)
        B, Hq, Hkv, S, D = 1, 4, 2, 36, 32
        q = BF16Array.from_float(randn(rng, (B, Hq, S, D)))
        k = BF16Array.from_float(randn(rng, (B, Hkv, S, D)))
        v = BF16Array.from_float(randn(rng, (B, Hkv, S, D)))
        out = BF16Array(np.full((B, Hq, S, D), 0x7FC0, np.uint16))  # bf16 NaN
        kernel = heed.compile(CAUSAL, dtype="bfloat16", head_dim=D)
        self.assertEqual(kernel.dtype, "bfloat16")
        kernel(q, k, v, out=out)
        want, _ = reference(q.to_float(), k.to_float(), v.to_float(), causal_mask)
        self.assertClose(out.to_float(), want, atol=1e-2, rtol=1e-2)
        # attention() infers bfloat16 from q and allocates like q's dtype would
        # need ml_dtypes; with out= given it needs nothing.
        out2 = BF16Array(np.full((B, Hq, S, D), 0x7FC0, np.uint16))
        heed.attention(q, k, v, CAUSAL, out=out2)
        self.assertClose(out2.to_float(), want, atol=1e-2, rtol=1e-2)

    def test_scale_and_score_modifier(self):
        rng = make_rng(self)
        B, H, S, D = 1, 2, 30, 16
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        slopes = rng.uniform(-0.5, 0.5, size=H).astype(np.float32)
        scale = 0.37
        out = nans((B, H, S, D))
        heed.attention(q, k, v, os.path.join(EXAMPLES, "alibi.attn"),
                       buffers=[slopes], scale=scale, out=out)
        want, _ = reference(q, k, v, causal_mask, scale=scale,
                            score_fn=lambda s, b, h, qi, kv: s + slopes.astype(np.float64)[h]
                            * (kv - qi))
        self.assertClose(out, want)

    def test_params_override(self):
        rng = make_rng(self)
        B, H, S, D = 1, 2, 41, 16
        window = int(rng.integers(2, 12))
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        spec = os.path.join(EXAMPLES, "sliding_window.attn")
        out = heed.attention(q, k, v, spec, params={"window": window}, out=nans((B, H, S, D)))
        want, _ = reference(q, k, v, lambda b, h, qi, kv: (qi >= kv) & (qi - kv < window))
        self.assertClose(out, want)

    def test_num_threads_and_no_mask_analysis(self):
        rng = make_rng(self)
        B, H, S, D = 1, 2, 64, 16
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        want, _ = reference(q, k, v, causal_mask)
        kernel = heed.compile(CAUSAL, head_dim=D, analyze_mask=False, use_cache=False)
        out = kernel.run(q, k, v, out=nans((B, H, S, D)), num_threads=1)
        self.assertClose(out, want)
        self.assertEqual(kernel.last_stats["visited_blocks"], kernel.last_stats["total_blocks"])

    def test_patch_tiling_option(self):
        # A 2-D neighborhood on a 16 x 24 grid: patch tiles (the default) and
        # flat tiles (patch_tiling=False) give the reference's output, the
        # patches in fewer visited blocks.
        rng = make_rng(self)
        B, H, S, D = 1, 2, 384, 16
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        spec = "variant nb { mask = neighborhood_2d(16, 24, kh=5, kw=5) }"

        def visible(b, h, qi, kv):  # NATTEN's windows, shifted inward at the borders
            def axis(i, j, n):
                start = np.clip(i - 2, 0, n - 5)
                return (j >= start) & (j < start + 5)
            return axis(qi // 24, kv // 24, 16) & axis(qi % 24, kv % 24, 24)

        want, _ = reference(q, k, v, visible)
        density = {}  # the fraction of all blocks visited (the tiles differ in size)
        for patches in (True, False):
            kernel = heed.compile(spec, head_dim=D, patch_tiling=patches, use_cache=False)
            self.assertClose(kernel(q, k, v, out=nans((B, H, S, D))), want)
            stats = kernel.last_stats
            density[patches] = stats["visited_blocks"] / stats["total_blocks"]
        self.assertLess(density[True], density[False])

    def test_export_and_load(self):
        rng = make_rng(self)
        B, H, S, D = 1, 2, 27, 32
        q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
        want, want_lse = reference(q, k, v, causal_mask)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "causal.heed")
            heed.export(CAUSAL, path, head_dim=D, lse=True)
            with open(path, "rb") as f:
                data = f.read()
            for kernel in (heed.load(path), heed.load(data)):
                self.assertEqual(kernel.name, "causal")
                self.assertEqual(kernel.head_dim, D)
                self.assertTrue(kernel.has_lse)
                out, lse = kernel(q, k, v, out=nans((B, H, S, D)), lse=nans((B, H, S)))
                self.assertClose(out, want)
                self.assertLse(lse, want_lse)
                kernel.close()


# ---- kernels, errors, the cache -------------------------------------------------------


class KernelTest(HeedTestCase):

    def test_properties(self):
        kernel = heed.compile(os.path.join(EXAMPLES, "relative_bias.attn"), head_dim=32,
                              head_dim_v=16, dtype="float16", layout="bshd", lse=True)
        self.assertEqual(kernel.name, "relative_bias")
        self.assertEqual(kernel.dtype, "float16")
        self.assertEqual(kernel.head_dim, 32)
        self.assertEqual(kernel.head_dim_v, 16)
        self.assertEqual(kernel.layout, "bshd")
        self.assertTrue(kernel.has_lse)
        self.assertAlmostEqual(kernel.scale, 1 / math.sqrt(32), places=6)
        self.assertTrue(kernel.target.startswith("cpu"), kernel.target)
        self.assertEqual(kernel.buffers, [("table", "float32", "H,33")])
        self.assertIn("relative_bias", repr(kernel))
        kernel.close()
        kernel.close()  # twice is fine
        with self.assertRaises(ValueError):
            kernel.name
        self.assertIn("closed", repr(kernel))
        with heed.compile(CAUSAL, head_dim=8, scale=0.5) as k2:
            self.assertEqual(k2.scale, 0.5)
            self.assertEqual(k2.buffers, [])

    def test_version(self):
        self.assertEqual(heed.abi_version(), 1)
        self.assertIsInstance(heed.version(), str)
        self.assertTrue(heed.version())

    def test_malformed_spec(self):
        with self.assertRaises(heed.HeedError) as cm:
            heed.compile("variant v {\n  mask = q &&\n}\n")
        e = cm.exception
        self.assertIsInstance(e, heed.SpecError)
        self.assertEqual(e.status, heed.ERROR_SPEC)
        self.assertRegex(str(e), r"<spec>:\d+:\d+: error: ")
        print("\n  spec error: %s" % str(e).splitlines()[0])

        with self.assertRaises(heed.SpecError) as cm:
            heed.compile("variant v {\n  mask = causl()\n}")
        self.assertIn("<spec>:2:", str(cm.exception))
        self.assertIn("did you mean 'causal'", str(cm.exception))

    def test_nul_in_strings(self):
        # C would read the text only up to the NUL: refused before any C call.
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            heed.compile("variant v { mask = causal() }\0 garbage that C would not see")
        self.assertIn("NUL", str(cm.exception))
        self.assertIn("spec", str(cm.exception))
        with self.assertRaises(heed.InvalidArgumentError):
            heed.compile(CAUSAL, variant="causal\0x")
        with self.assertRaises(heed.InvalidArgumentError):
            heed.compile(os.path.join(EXAMPLES, "sliding_window.attn"),
                         params={"window": "8\0"})

    def test_duplicate_param_overrides(self):
        spec = os.path.join(EXAMPLES, "sliding_window.attn")
        for params in ("window=2,window=3", [("window", 2), ("window", 3)]):
            with self.assertRaises(heed.InvalidArgumentError) as cm:
                heed.compile(spec, params=params)
            self.assertIn("'window' is given twice", str(cm.exception))
        with self.assertRaises(heed.InvalidArgumentError):
            heed.compile(spec, params="window")
        self.assertEqual(heed.compile(spec, head_dim=16, params="window=3").name,
                         "sliding_window")

    def test_spec_error_in_file_names_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bad.attn")
            with open(path, "w") as f:
                f.write("variant v {\n  mask = q && kv\n}\n")
            with self.assertRaises(heed.SpecError) as cm:
                heed.compile(path)
            self.assertRegex(str(cm.exception), re.escape(path) + r":2:\d+: error: ")

    def test_variant_selection(self):
        spec = "variant a { mask = causal() }\nvariant b { mask = kv <= q + 1 }"
        with self.assertRaises(heed.SpecError) as cm:
            heed.compile(spec, head_dim=8)
        self.assertIn("variant", str(cm.exception))
        self.assertEqual(heed.compile(spec, head_dim=8, variant="b").name, "b")

    def test_missing_file(self):
        with self.assertRaises(heed.HeedError) as cm:
            heed.compile("/nonexistent/dir/x.attn")
        self.assertEqual(cm.exception.status, heed.ERROR_IO)

    def test_bad_options(self):
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            heed.compile(CAUSAL, head_dim=12)
        self.assertEqual(cm.exception.status, heed.ERROR_INVALID_ARGUMENT)
        self.assertIn("head dim", str(cm.exception))
        with self.assertRaises(heed.HeedError):
            heed.compile(CAUSAL, dtype="int32")
        with self.assertRaises(heed.HeedError):
            heed.compile(CAUSAL, dtype="float64")
        with self.assertRaises(heed.HeedError):
            heed.compile(CAUSAL, layout="sbhd")
        with self.assertRaises(heed.HeedError) as cm:
            heed.compile(os.path.join(EXAMPLES, "sliding_window.attn"),
                         params={"widow": 5})
        self.assertIn("window", str(cm.exception))
        # The GPU kernel asked for by name: an unknown one is refused at once;
        # a known one leaves the CPU kernel as it is.
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            heed.compile(CAUSAL, gpu_kernel="wgmma-fast")
        self.assertIn("gpu_kernel", str(cm.exception))
        self.assertIn("wgmma-pipelined", str(cm.exception))
        kernel = heed.compile(CAUSAL, head_dim=16, gpu_kernel="tensor-cores")
        self.assertEqual(kernel.target, heed.compile(CAUSAL, head_dim=16).target)

    def test_float64_input(self):
        rng = make_rng(self)
        q = rng.standard_normal((1, 2, 8, 16))  # float64
        with self.assertRaises(heed.HeedError) as cm:
            heed.attention(q, q, q, CAUSAL)
        self.assertEqual(cm.exception.status, heed.ERROR_INVALID_ARGUMENT)
        self.assertIn("float64", str(cm.exception))
        kernel = heed.compile(CAUSAL, head_dim=16)
        with self.assertRaises(heed.HeedError) as cm:
            kernel(q, q, q, out=nans((1, 2, 8, 16)))
        self.assertIn("float64", str(cm.exception))
        # A supported dtype that is not the kernel's: the C library says so.
        q16 = q.astype(np.float16)
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            kernel(q16, q16, q16, out=nans((1, 2, 8, 16)))
        self.assertIn("f32", str(cm.exception))

    def test_wrong_buffer_shape(self):
        rng = make_rng(self)
        S, D = 16, 16
        q = randn(rng, (1, 1, S, D))
        spec = os.path.join(EXAMPLES, "document.attn")
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            heed.attention(q, q, q, spec, buffers={"doc_ids": np.zeros(S + 1, np.int32)})
        self.assertEqual(cm.exception.status, heed.ERROR_INVALID_ARGUMENT)
        self.assertIn("doc_ids", str(cm.exception))
        with self.assertRaises(heed.InvalidArgumentError) as cm:  # wrong dtype
            heed.attention(q, q, q, spec, buffers={"doc_ids": np.zeros(S, np.int64)})
        self.assertIn("doc_ids", str(cm.exception))
        with self.assertRaises(heed.InvalidArgumentError) as cm:  # wrong name
            heed.attention(q, q, q, spec, buffers={"docs": np.zeros(S, np.int32)})
        self.assertIn("doc_ids", str(cm.exception))
        with self.assertRaises(heed.InvalidArgumentError):  # none at all
            heed.attention(q, q, q, spec)

    def test_buffer_read_out_of_range(self):
        rng = make_rng(self)
        q = randn(rng, (1, 1, 12, 8))
        spec = "variant oob {\n  buffer t: i32[4]\n  mask = t[q] == 0\n}"
        with self.assertRaises(heed.RunError) as cm:
            heed.attention(q, q, q, spec, buffers=[np.zeros(4, np.int32)])
        self.assertEqual(cm.exception.status, heed.ERROR_RUN)
        self.assertIn("out of range", str(cm.exception))

    def test_tensor_errors(self):
        rng = make_rng(self)
        kernel = heed.compile(CAUSAL, head_dim=16)
        q = randn(rng, (1, 2, 8, 32))
        # Head dim not contiguous.
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            kernel(q[..., ::2], q[..., ::2], q[..., ::2], out=nans((1, 2, 8, 16)))
        self.assertIn("contiguous", str(cm.exception))
        # A byte stride that is no multiple of the element size.
        raw = np.zeros(4096, np.uint8)
        odd = np.ndarray((1, 2, 8, 16), np.float32, raw.data, 0, (4096, 1026, 66, 4))
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            kernel(odd, odd, odd, out=nans((1, 2, 8, 16)))
        self.assertIn("stride", str(cm.exception))
        # A read-only output.
        q16 = randn(rng, (1, 2, 8, 16))
        ro = nans((1, 2, 8, 16))
        ro.flags.writeable = False
        with self.assertRaises(heed.InvalidArgumentError):
            kernel(q16, q16, q16, out=ro)
        # Not a tensor at all.
        with self.assertRaises(TypeError):
            kernel([1.0], q16, q16)
        # Shapes that do not fit: the C library names the tensor.
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            kernel(q16, q16, q16, out=nans((1, 2, 9, 16)))
        self.assertIn("out", str(cm.exception))
        with self.assertRaises(heed.InvalidArgumentError) as cm:  # Hq % Hkv != 0
            kernel(randn(rng, (1, 3, 8, 16)), q16, q16)
        self.assertIn("multiple", str(cm.exception))
        # lse given to a kernel without one.
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            kernel(q16, q16, q16, lse=nans((1, 2, 8)))
        self.assertIn("lse", str(cm.exception))

    def test_cuda_tensors_without_driver(self):
        if cuda_driver_loads():
            self.skipTest("a CUDA driver is present (TorchCudaTest runs instead)")
        kernel = heed.compile(CAUSAL, head_dim=16)
        shape = (1, 2, 8, 16)
        with self.assertRaises(heed.UnsupportedError) as cm:
            kernel(FakeCuda(shape), FakeCuda(shape), FakeCuda(shape), out=FakeCuda(shape))
        self.assertEqual(cm.exception.status, heed.ERROR_UNSUPPORTED)
        self.assertIn("device type 2", str(cm.exception))
        self.assertIn("CUDA driver", str(cm.exception))
        # attention() compiles a CUDA-only kernel for them: the same answer.
        with self.assertRaises(heed.UnsupportedError) as cm:
            heed.attention(FakeCuda(shape), FakeCuda(shape), FakeCuda(shape), CAUSAL,
                           out=FakeCuda(shape), stream=7)
        self.assertIn("device type 2", str(cm.exception))
        # The CPU path still works afterwards.
        rng = make_rng(self)
        q = randn(rng, shape)
        self.assertClose(kernel(q, q, q), reference(q, q, q, causal_mask)[0])

    def test_cuda_mixed_devices(self):
        kernel = heed.compile(CAUSAL, head_dim=16)
        shape = (1, 2, 8, 16)
        host = nans(shape)
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            kernel(FakeCuda(shape), host, host, out=host)
        self.assertIn("same device", str(cm.exception))
        with self.assertRaises(heed.InvalidArgumentError):
            kernel(FakeCuda(shape), FakeCuda(shape), FakeCuda(shape), out=FakeCuda(shape),
                   stream=object())
        with self.assertRaises(heed.InvalidArgumentError):
            kernel(host, host, host, stream=True)

    def test_cuda_only_kernels(self):
        # Compiled now for sm_90 (PTX, and a cubin where ptxas is), no GPU needed.
        kernel = heed.compile(CAUSAL, head_dim=16, dtype="float16", target="cuda:sm_90")
        self.assertEqual(kernel.target, "cuda:sm_90")
        self.assertEqual((kernel.name, kernel.head_dim, kernel.dtype),
                         ("causal", 16, "float16"))
        q = nans((1, 2, 8, 16), np.float16)
        with self.assertRaises(heed.UnsupportedError) as cm:
            kernel(q, q, q)
        self.assertIn("cuda:sm_90 only", str(cm.exception))
        self.assertEqual(heed.compile(CAUSAL, head_dim=16, target="cuda").target, "cuda")
        with self.assertRaises(heed.UnsupportedError) as cm:
            heed.compile(CAUSAL, head_dim=16, target="cuda:sm_75")
        self.assertIn("sm_80", str(cm.exception))

    def test_load_garbage(self):
        with self.assertRaises(heed.HeedError) as cm:
            heed.load(b"this is not a heed artifact")
        self.assertEqual(cm.exception.status, heed.ERROR_LOAD)
        with self.assertRaises(heed.HeedError) as cm:
            heed.load("/nonexistent/kernel.heed")
        self.assertEqual(cm.exception.status, heed.ERROR_IO)


class HostileInputTest(HeedTestCase):
    """Misuse gets a clear error from the binding or the C library, and no
    output is written."""

    def test_outputs_that_overlap_are_refused(self):
        rng = make_rng(self)
        kernel = heed.compile(CAUSAL, head_dim=16, lse=True)
        q, k, v = (randn(rng, (1, 2, 8, 16)) for _ in range(3))
        v_before = v.copy()
        with self.assertRaises(heed.InvalidArgumentError) as cm:  # out = v
            kernel(q, k, v, out=v, lse=nans((1, 2, 8)))
        self.assertIn("out overlaps v in memory", str(cm.exception))
        np.testing.assert_array_equal(v, v_before)
        base = nans((1, 2, 8, 16))
        s = base.strides
        cases = [
            (np.lib.stride_tricks.as_strided(base, (1, 2, 8, 16), (s[0], 0, s[2], s[3])),
             "out overlaps itself"),  # both heads on one row
            (np.lib.stride_tricks.as_strided(base, (1, 2, 8, 16), (s[0], s[1], s[2] // 2, s[3])),
             "out overlaps itself"),  # half strides
            (base[:, :, ::-1], "out has a negative stride"),
        ]
        for out, why in cases:
            with self.assertRaises(heed.InvalidArgumentError) as cm:
                kernel(q, k, v, out=out, lse=nans((1, 2, 8)))
            self.assertIn(why, str(cm.exception))
        self.assertTrue(np.isnan(base).all(), "a refused call wrote its output")
        out = nans((1, 2, 8, 16))
        with self.assertRaises(heed.InvalidArgumentError) as cm:  # lse inside out
            kernel(q, k, v, out=out, lse=out.reshape(-1)[:16].reshape(1, 2, 8))
        self.assertIn("out and lse overlap in memory", str(cm.exception))
        # Inputs may alias each other: q = k = v is a valid call.
        out, lse = nans((1, 2, 8, 16)), nans((1, 2, 8))
        kernel(q, q, q, out=out, lse=lse)
        want, want_lse = reference(q, q, q, causal_mask)
        self.assertClose(out, want)
        self.assertLse(lse, want_lse)

    def test_sizes_past_the_limits(self):
        kernel = heed.compile(CAUSAL, head_dim=16)
        tiny = np.zeros(16, np.float32)
        # 2^31 rows of one broadcast row: no memory, one dim past the limit.
        huge = np.lib.stride_tricks.as_strided(tiny, (1, 1, 2 ** 31, 16), (0, 0, 0, 4))
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            kernel(huge, huge, huge, out=nans((1, 1, 8, 16)))
        self.assertIn("q has 2147483648 elements in dim 2, more than heed's limit",
                      str(cm.exception))

    def test_nul_in_strings(self):
        # A C string ends at a NUL: the rest of the spec was silently dropped.
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            heed.compile("variant v { mask = causal() }\0 variant w { mask = true }")
        self.assertRegex(str(cm.exception), r"NUL character.*byte 29")
        with self.assertRaises(heed.InvalidArgumentError):
            heed.compile(b"variant v { mask = causal() }\0")
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            heed.compile(os.path.join(EXAMPLES, "sliding_window.attn"),
                         params={"window": "4\0 junk"})
        self.assertIn("params contains a NUL", str(cm.exception))
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            heed.compile(CAUSAL, variant="causal\0x")
        self.assertIn("variant contains a NUL", str(cm.exception))
        path = os.path.join(tempfile.mkdtemp(prefix="heed-py-nul-"), "nul.attn")
        with open(path, "wb") as f:
            f.write(b"variant v { mask = causal() }\0junk")
        with self.assertRaises(heed.SpecError) as cm:
            heed.compile(path)
        self.assertIn("NUL byte (at byte 29)", str(cm.exception))
        shutil.rmtree(os.path.dirname(path), True)

    def test_param_given_twice(self):
        spec = os.path.join(EXAMPLES, "sliding_window.attn")
        for params in ("window=2,window=3", [("window", 2), ("window", 3)]):
            with self.assertRaises(heed.InvalidArgumentError) as cm:
                heed.compile(spec, params=params)
            self.assertRegex(str(cm.exception), r"'window' (is given twice|more than once)")


class TorchCudaTest(HeedTestCase):
    """torch CUDA tensors against the float64 reference (GPU machines only)."""

    def setUp(self):
        self.torch = torch_cuda()
        if self.torch is None:
            self.skipTest("no torch with a CUDA GPU")

    def check(self, dtype, atol, spec=CAUSAL, mask=causal_mask, shape=(2, 4, 200, 64)):
        torch = self.torch
        rng = make_rng(self)
        tq, tk, tv = (torch.from_numpy(randn(rng, shape)).to("cuda", dtype) for _ in range(3))
        # The reference sees the inputs as rounded to `dtype`.
        want, _ = reference(*(t.float().cpu().numpy() for t in (tq, tk, tv)), mask)
        out = heed.attention(tq, tk, tv, spec)
        self.assertEqual((out.device.type, out.dtype), ("cuda", dtype))
        self.assertClose(out.float().cpu().numpy(), want, atol=atol, rtol=atol)
        # Again (the module is loaded once), on a side stream, into out=.
        stream = torch.cuda.Stream()
        again = torch.full_like(out, float("nan"))
        with torch.cuda.stream(stream):
            heed.attention(tq, tk, tv, spec, out=again)
        stream.synchronize()
        self.assertTrue(torch.equal(out, again))

    def test_f32(self):
        self.check(self.torch.float32, 1e-4)

    def test_f16(self):
        self.check(self.torch.float16, 2e-2)

    def test_bf16(self):
        self.check(self.torch.bfloat16, 5e-2)

    def test_window_bshd_strided(self):
        torch = self.torch
        rng = make_rng(self)
        q, k, v = (randn(rng, (1, 3, 150, 32)) for _ in range(3))
        spec = os.path.join(EXAMPLES, "sliding_window.attn")
        kernel = heed.compile(spec, head_dim=32, params={"window": 40}, layout="bshd")
        # BSHD views of BHSD storage: strided, last dim contiguous.
        tq, tk, tv = (torch.from_numpy(x).cuda().transpose(1, 2) for x in (q, k, v))
        out = kernel(tq, tk, tv)
        self.assertIsNone(kernel.last_stats)
        want, _ = reference(q, k, v, lambda b, h, i, j: (j <= i) & (i - j < 40))
        self.assertClose(out.transpose(1, 2).cpu().numpy(), want)

    def test_cpu_and_cuda_mixed(self):
        torch = self.torch
        q = torch.zeros(1, 2, 8, 16, device="cuda")
        with self.assertRaises(heed.InvalidArgumentError):
            heed.attention(q, q.cpu(), q, CAUSAL)


def hip_runtime_loads():
    """Whether libamdhip64.so loads here (then fake device pointers must never
    reach a launch)."""
    import ctypes
    try:
        ctypes.CDLL("libamdhip64.so")
        return True
    except OSError:
        return False


class _FakeTorchTensor:
    """What heed reads of a torch tensor on a GPU (never dereferenced)."""

    def __init__(self, torch, shape, dtype, ptr):
        self.is_cuda = True
        self.layout = torch.strided
        self.dtype = dtype
        self.device = types.SimpleNamespace(type="cuda", index=0)
        self.shape = tuple(shape)
        self._ptr = ptr

    def data_ptr(self):
        return self._ptr

    def stride(self):
        strides, step = [], 1
        for n in reversed(self.shape):
            strides.insert(0, step)
            step *= n
        return tuple(strides)


_FakeTorchTensor.__module__ = "torch"  # how heed tells a torch tensor


class TorchRocmTest(HeedTestCase):
    """torch's ROCm build, as heed sees it, through a stand-in torch module (no
    AMD GPU or ROCm torch exists where heed is developed): its "cuda" tensors
    are ROCm tensors (device type 10), launched on torch's current stream, and
    heed.attention compiles a ROCm-only kernel for them."""

    STREAM = 0x5150

    def setUp(self):
        if hip_runtime_loads():
            self.skipTest("a HIP runtime is present (fake pointers must not reach it)")
        torch = types.ModuleType("torch")
        torch.strided = "torch.strided"
        torch.float32 = types.SimpleNamespace(name="float32")
        torch.version = types.SimpleNamespace(hip="6.2.41133", cuda=None)
        torch.cuda = types.SimpleNamespace(
            current_device=lambda: 0,
            current_stream=lambda device=None: types.SimpleNamespace(cuda_stream=self.STREAM))
        # heed finds torch in sys.modules; a real one is put back afterwards.
        real_torch = sys.modules.get("torch")
        sys.modules["torch"] = torch
        self.addCleanup(self._restore_torch, real_torch)
        self.torch = torch
        # What reaches the C library.
        self.calls = []
        real = heed._lib.heed_attention

        def spy(kernel, args):
            a = args._obj
            self.calls.append((a.q.contents.device_type, a.stream, heed._lib.heed_kernel_target(
                kernel)))
            return real(kernel, args)

        heed._lib.heed_attention = spy
        self.addCleanup(setattr, heed._lib, "heed_attention", real)

    @staticmethod
    def _restore_torch(real_torch):
        if real_torch is None:
            sys.modules.pop("torch", None)
        else:
            sys.modules["torch"] = real_torch

    def tensor(self, ptr=0x10000, shape=(1, 2, 8, 16)):
        return _FakeTorchTensor(self.torch, shape, self.torch.float32, ptr)

    def test_rocm_tensors(self):
        kernel = heed.compile(CAUSAL, head_dim=16)
        q, out = self.tensor(), self.tensor(0x20000)
        with self.assertRaises(heed.UnsupportedError) as cm:
            kernel(q, q, q, out=out)
        self.assertIn("device type 10", str(cm.exception))
        self.assertIn("ROCm", str(cm.exception))
        self.assertEqual(self.calls[-1][:2], (heed.DEVICE_ROCM, self.STREAM))
        with self.assertRaises(heed.UnsupportedError):
            kernel(q, q, q, out=out, stream=7)
        self.assertEqual(self.calls[-1][1], 7)
        # attention(): a ROCm-only kernel (a CUDA one would refuse them as such).
        with self.assertRaises(heed.UnsupportedError) as cm:
            heed.attention(q, q, q, CAUSAL, out=out)
        self.assertIn("no HIP runtime", str(cm.exception))
        self.assertEqual(self.calls[-1], (heed.DEVICE_ROCM, self.STREAM, b"rocm"))
        # Mixed with CPU tensors: an argument error.
        with self.assertRaises(heed.InvalidArgumentError) as cm:
            kernel(q, nans(q.shape), nans(q.shape), out=nans(q.shape))
        self.assertIn("ROCm device 0", str(cm.exception))
        # The CPU path still works afterwards.
        rng = make_rng(self)
        x = randn(rng, q.shape)
        self.assertClose(kernel(x, x, x), reference(x, x, x, causal_mask)[0])

    def test_rocm_only_kernels(self):
        kernel = heed.compile(CAUSAL, head_dim=16, dtype="float16", target="rocm:gfx90a")
        self.assertEqual(kernel.target, "rocm:gfx90a")
        q = nans((1, 2, 8, 16), np.float16)
        with self.assertRaises(heed.UnsupportedError) as cm:
            kernel(q, q, q)
        self.assertIn("rocm:gfx90a only", str(cm.exception))
        self.assertEqual(heed.compile(CAUSAL, head_dim=16, target="rocm").target, "rocm")
        with self.assertRaises(heed.UnsupportedError) as cm:
            heed.compile(CAUSAL, head_dim=16, target="rocm:gfx1100")
        self.assertIn("gfx942", str(cm.exception))


class CacheTest(HeedTestCase):

    def test_stats_memory_hits(self):
        stats = heed.cache_stats()
        for key in ("memory_hits", "disk_hits", "compiles", "rejected_entries",
                    "store_failures", "disk_entries", "disk_bytes", "disk_limit_bytes"):
            self.assertIsInstance(stats[key], int, key)
        self.assertIsInstance(stats["directory"], str)
        spec = "variant hits { mask = kv <= q + 2 }"
        heed.compile(spec, head_dim=24)
        before = heed.cache_stats()
        heed.compile(spec, head_dim=24)
        after = heed.cache_stats()
        self.assertGreater(after["memory_hits"], before["memory_hits"])
        self.assertEqual(after["compiles"], before["compiles"])

    def test_attention_python_cache(self):
        rng = make_rng(self)
        q = randn(rng, (1, 1, 8, 40))
        spec = "variant pycache { mask = kv <= q + 1 }"
        heed.attention(q, q, q, spec)
        before = heed.cache_stats()
        heed.attention(q, q, q, spec)
        after = heed.cache_stats()
        # The second call found the kernel in the Python-side cache.
        self.assertEqual(after["memory_hits"], before["memory_hits"])
        self.assertEqual(after["compiles"], before["compiles"])

    def test_directory_and_clear(self):
        other = tempfile.mkdtemp(prefix="heed-py-test-cache2-")
        try:
            heed.cache_set_directory(other)
            self.assertEqual(os.path.realpath(heed.cache_stats()["directory"]),
                             os.path.realpath(other))
            # A variant no one compiled before (a fresh param value).
            window = int.from_bytes(os.urandom(3), "little") + 3
            before = heed.cache_stats()
            heed.compile(os.path.join(EXAMPLES, "sliding_window.attn"), head_dim=16,
                         params={"window": window})
            after = heed.cache_stats()
            self.assertEqual(after["compiles"], before["compiles"] + 1)
            self.assertGreaterEqual(after["disk_entries"], 1)
            self.assertGreater(after["disk_bytes"], 0)
            heed.cache_clear()
            self.assertEqual(heed.cache_stats()["disk_entries"], 0)
        finally:
            heed.cache_set_directory(_CACHE_DIR)
            shutil.rmtree(other, ignore_errors=True)
        self.assertEqual(os.path.realpath(heed.cache_stats()["directory"]),
                         os.path.realpath(_CACHE_DIR))


if __name__ == "__main__":
    print("heed %s from %s; cache in %s" % (heed.version(), heed.library_path(), _CACHE_DIR))
    unittest.main()
