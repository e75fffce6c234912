#!/usr/bin/env python3
"""heed.compile_backward (python/heed/backward.py) against a float64 numpy backward of
ALiBi with a causal mask and GQA (dq, dk, dv and the slopes' gradient), and of causal
attention with a learned sink logit (the sinks' gradient) and with sigmoid weights,
normwise, on fresh random inputs (seed printed); the kernel cache's counters with
use_cache on and off. Exits 77 (SKIPPED) without numpy."""

import unittest

import heed_testing
from heed_testing import HeedTestCase, make_rng, np, randn

heed_testing.require(__name__)

import heed  # noqa: E402  (after the environment is set up)

ALIBI = """variant alibi {
  buffer slopes: f32[H]
  score = alibi(score, slopes)
  mask = causal()
}"""


def reference_backward(q, k, v, slopes, dout, scale):
    """float64: (dq, dk, dv, dslopes) of sum(dout * attention(q, k, v))."""
    q, k, v, dout = (np.asarray(t, np.float64) for t in (q, k, v, dout))
    group = q.shape[1] // k.shape[1]
    kq, vq = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    sq, skv = q.shape[2], k.shape[2]
    dist = (np.arange(skv)[None, :] - np.arange(sq)[:, None]).astype(np.float64)
    visible = dist <= 0
    s = scale * q @ kq.transpose(0, 1, 3, 2) + np.asarray(slopes, np.float64)[None, :, None, None] * dist
    s = np.where(visible, s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    out = p @ vq
    dp = dout @ vq.transpose(0, 1, 3, 2)
    ds = p * (dp - (dout * out).sum(axis=-1, keepdims=True))
    dq = scale * ds @ kq
    dkq, dvq = scale * ds.transpose(0, 1, 3, 2) @ q, p.transpose(0, 1, 3, 2) @ dout
    b, hkv = k.shape[0], k.shape[1]
    dk = dkq.reshape(b, hkv, group, skv, -1).sum(axis=2)
    dv = dvq.reshape(b, hkv, group, skv, -1).sum(axis=2)
    dslopes = (ds * dist).sum(axis=(0, 2, 3))
    return dq, dk, dv, dslopes


SINK = """variant sink {
  buffer sinks: f32[H]
  normalize = softmax(sink = sinks[h])
  mask = causal()
}"""

SIGMOID = """variant sig {
  normalize = sigmoid(bias = -2.0)
  mask = causal()
}"""


def reference_normalized(q, k, v, dout, scale, sinks=None, bias=None):
    """float64, causal, GQA: (dq, dk, dv, dsinks) under softmax with a sink logit per
    head (sinks given) or sigmoid weights 1 / (1 + e^-(s + bias)) (bias given)."""
    q, k, v, dout = (np.asarray(t, np.float64) for t in (q, k, v, dout))
    group = q.shape[1] // k.shape[1]
    kq, vq = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    sq, skv = q.shape[2], k.shape[2]
    visible = np.arange(skv)[None, :] <= np.arange(sq)[:, None]
    s = np.where(visible, scale * q @ kq.transpose(0, 1, 3, 2), -np.inf)
    dsinks = None
    if bias is not None:
        p = 1 / (1 + np.exp(-(s + bias)))
        dp = dout @ vq.transpose(0, 1, 3, 2)
        ds = dp * p * (1 - p)
    else:
        x = np.asarray(sinks, np.float64)[None, :, None, None]
        m = np.maximum(s.max(axis=-1, keepdims=True), x)
        lse = m + np.log(np.exp(s - m).sum(axis=-1, keepdims=True) + np.exp(x - m))
        p = np.exp(s - lse)
        delta = (dout * (p @ vq)).sum(axis=-1, keepdims=True)
        dp = dout @ vq.transpose(0, 1, 3, 2)
        ds = p * (dp - delta)
        dsinks = (-np.exp(x - lse) * delta).sum(axis=(0, 2, 3))
    dq = scale * ds @ kq
    dkq, dvq = scale * ds.transpose(0, 1, 3, 2) @ q, p.transpose(0, 1, 3, 2) @ dout
    b, hkv = k.shape[0], k.shape[1]
    dk = dkq.reshape(b, hkv, group, skv, -1).sum(axis=2)
    dv = dvq.reshape(b, hkv, group, skv, -1).sum(axis=2)
    return dq, dk, dv, dsinks


def normwise(got, want):
    return float(np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want))


class BackwardTest(HeedTestCase):

    def test_alibi_gqa_matches_float64(self):
        rng = make_rng(self)
        b, hq, hkv, s, d = 2, 4, 2, 45, 32
        q, k, v = randn(rng, (b, hq, s, d)), randn(rng, (b, hkv, s, d)), randn(rng, (b, hkv, s, d))
        dout = randn(rng, (b, hq, s, d))
        slopes = (0.05 + 0.1 * rng.random(hq)).astype(np.float32)
        forward = heed.compile(ALIBI, head_dim=d, lse=True)
        out, lse = forward(q, k, v, buffers={"slopes": slopes})
        backward = heed.compile_backward(ALIBI, head_dim=d)
        self.assertEqual(backward.gradient_buffers, ["slopes"])
        dq, dk, dv, grads = backward(q, k, v, out, lse, dout, buffers={"slopes": slopes})
        want = reference_backward(q, k, v, slopes, dout, 1 / np.sqrt(d))
        for name, got, ref in zip(("dq", "dk", "dv", "dslopes"), (dq, dk, dv, grads["slopes"]),
                                  want):
            self.assertLess(normwise(got, ref), 1e-5, name)
        self.assertGreater(backward.last_stats["visited_blocks"], 0)

    def test_packed_sequences_match_float64_entry_by_entry(self):
        # FlashAttention's varlen layout (docs/backward.md, "Ragged batches"):
        # three sequences end to end; each entry's gradients are those of that
        # sequence alone, the slopes' summed over the entries.
        rng = make_rng(self)
        hq, hkv, d, lens = 4, 2, 32, [37, 5, 60]
        total = sum(lens)
        cu = np.array([0] + list(np.cumsum(lens)), np.int32)
        q, k, v = (randn(rng, (1, h, total, d)) for h in (hq, hkv, hkv))
        dout = randn(rng, (1, hq, total, d))
        slopes = (0.05 + 0.1 * rng.random(hq)).astype(np.float32)
        forward = heed.compile(ALIBI, head_dim=d, lse=True, cu_seqlens_q=True,
                               cu_seqlens_kv=True)
        out, lse = forward(q, k, v, buffers={"slopes": slopes}, cu_seqlens_q=cu,
                           cu_seqlens_kv=cu)
        backward = heed.compile_backward(ALIBI, head_dim=d, cu_seqlens_q=True,
                                         cu_seqlens_kv=True)
        dq, dk, dv, grads = backward(q, k, v, out, lse, dout, buffers={"slopes": slopes},
                                     cu_seqlens_q=cu, cu_seqlens_kv=cu)
        self.assertEqual(dq.shape, q.shape)
        want = [np.zeros(t.shape) for t in (q, k, v)] + [np.zeros(hq)]
        for b in range(len(lens)):
            rows = slice(int(cu[b]), int(cu[b + 1]))
            got = reference_backward(q[:, :, rows], k[:, :, rows], v[:, :, rows], slopes,
                                     dout[:, :, rows], 1 / np.sqrt(d))
            for i in range(3):
                want[i][:, :, rows] = got[i]
            want[3] += got[3]
        for name, got, ref in zip(("dq", "dk", "dv", "dslopes"), (dq, dk, dv, grads["slopes"]),
                                  want):
            self.assertLess(normwise(got, ref), 1e-5, name)
        with self.assertRaises(heed.InvalidArgumentError):  # the offsets are required
            backward(q, k, v, out, lse, dout, buffers={"slopes": slopes}, cu_seqlens_q=cu)

    def test_float16_with_an_f32_output(self):
        # A training forward (out_f32): out comes back float32, and the
        # backward's delta from it leaves every gradient within 1e-2, the
        # slopes' too (with a float16 out they cancel to ~2e-2).
        rng = make_rng(self)
        b, hq, hkv, s, d = 1, 4, 2, 120, 32
        q, k, v, dout = (randn(rng, shape).astype(np.float16) for shape in
                         ((b, hq, s, d), (b, hkv, s, d), (b, hkv, s, d), (b, hq, s, d)))
        slopes = (0.05 + 0.1 * rng.random(hq)).astype(np.float32)
        forward = heed.compile(ALIBI, head_dim=d, lse=True, dtype="float16", out_f32=True)
        out, lse = forward(q, k, v, buffers={"slopes": slopes})
        self.assertEqual(out.dtype, np.float32)
        with self.assertRaises(heed.InvalidArgumentError):
            forward(q, k, v, out=np.zeros((b, hq, s, d), np.float16), buffers={"slopes": slopes})
        backward = heed.compile_backward(ALIBI, head_dim=d, dtype="float16")
        dq, dk, dv, grads = backward(q, k, v, out, lse, dout, buffers={"slopes": slopes})
        want = reference_backward(q, k, v, slopes, dout, 1 / np.sqrt(d))
        for name, got, ref in zip(("dq", "dk", "dv", "dslopes"), (dq, dk, dv, grads["slopes"]),
                                  want):
            self.assertLess(normwise(got, ref), 1e-2, name)
        self.assertLess(normwise(grads["slopes"], want[3]), 1e-3, "dslopes, delta exact")

    def test_sink_and_sigmoid_match_float64(self):
        rng = make_rng(self)
        b, hq, hkv, s, d = 2, 4, 2, 37, 32
        q, k, v = randn(rng, (b, hq, s, d)), randn(rng, (b, hkv, s, d)), randn(rng, (b, hkv, s, d))
        dout = randn(rng, (b, hq, s, d))
        sinks = randn(rng, (hq,))
        for spec, buffers, kwargs in ((SINK, {"sinks": sinks}, {"sinks": sinks}),
                                      (SIGMOID, {}, {"bias": -2.0})):
            out, lse = heed.compile(spec, head_dim=d, lse=True)(q, k, v, buffers=buffers)
            backward = heed.compile_backward(spec, head_dim=d)
            self.assertEqual(backward.gradient_buffers, list(buffers))
            dq, dk, dv, grads = backward(q, k, v, out, lse, dout, buffers=buffers)
            want = reference_normalized(q, k, v, dout, 1 / np.sqrt(d), **kwargs)
            got = (dq, dk, dv, grads.get("sinks"))
            for name, g, ref in zip(("dq", "dk", "dv", "dsinks"), got, want):
                if ref is not None:
                    self.assertLess(normwise(g, ref), 1e-5, f"{name} of {spec.split()[1]}")

    def test_backward_goes_through_the_kernel_cache(self):
        counters = ("memory_hits", "disk_hits", "compiles")
        heed.compile_backward(ALIBI, head_dim=32)
        before = heed.cache_stats()
        heed.compile_backward(ALIBI, head_dim=32)
        after = heed.cache_stats()
        # The forward (compiled for the buffer names) and the backward: memory hits.
        self.assertEqual(after["memory_hits"] - before["memory_hits"], 2)
        self.assertEqual(after["compiles"], before["compiles"])
        heed.compile_backward(ALIBI, head_dim=32, use_cache=False)
        self.assertEqual({c: heed.cache_stats()[c] for c in counters},
                         {c: after[c] for c in counters})

    def test_not_differentiable_is_a_compile_error(self):
        spec = "variant t { buffer w: f32[Skv]\n score = w[kv] > 0.0 ? score : -1000.0 }"
        with self.assertRaises(heed.CompileError) as ctx:
            heed.compile_backward(spec, head_dim=32)
        self.assertIn("not differentiable in buffer 'w'", str(ctx.exception))

    def test_gpu_kernel_option(self):
        # The GPU kernels are chosen at compile time (used on CUDA tensors):
        # a wgmma kind is taken (the CPU backward still runs), simt refused,
        # an unknown name refused with the known ones.
        bw = heed.compile_backward(ALIBI, head_dim=64, gpu_kernel="wgmma")
        self.assertEqual(bw.gradient_buffers, ["slopes"])
        with self.assertRaises(heed.HeedError) as ctx:
            heed.compile_backward(ALIBI, head_dim=64, gpu_kernel="simt")
        self.assertIn("the GPU backward runs on matrix cores", str(ctx.exception))
        with self.assertRaises(heed.HeedError) as ctx:
            heed.compile_backward(ALIBI, head_dim=64, gpu_kernel="wgmma-fast")
        self.assertIn("unknown --gpu-kernel=wgmma-fast", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
