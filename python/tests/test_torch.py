#!/usr/bin/env python3
"""heed with torch: the ``heed::attention`` torch op (schema, fake implementation,
torch.compile keeps it as one node, loss.backward() through heed's backward kernel against
torch's float64 autograd), the ``heed::serving_attention`` op (packed sequences and
per-entry lengths against float64 per entry), heed.flex_attention on torch CPU
tensors against float64 and against torch's own flex_attention (the nine variants of
python/examples/flex_nine.py), DLPack both ways. CUDA tensors where a GPU is present.

Exit 77 (SKIPPED) without torch, as under ctest's system Python (Debian's torch is too
old); run it with a Python that has torch, e.g. ``/work/venv-torch/bin/python
python/tests/test_torch.py`` (docs/python.md).
"""

import os
import sys
import unittest

import heed_testing
from heed_testing import HeedTestCase, REPO, make_rng, np, randn, reference

try:
    import torch
    from torch.nn.attention import flex_attention as torch_flex
except ImportError:
    torch = torch_flex = None
if torch is not None and not hasattr(torch.library, "custom_op"):
    torch = None  # before 2.4: no torch.library.custom_op

heed_testing.require(__name__, torch=torch)

import heed  # noqa: E402
import heed.torch_ops  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "python", "examples"))
import flex_nine  # noqa: E402
import test_flex  # noqa: E402  (its float64 references of the nine variants)

CAUSAL = "variant causal { mask = causal() }"


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def ref_causal(b, h, q, kv):
    return q >= kv


def graph_keeper(graphs):
    """keep(kind): an AOTAutograd compiler that records, in graphs[kind], the
    targets of the graph's calls (for aot_autograd's fw_compiler and bw_compiler)."""
    from functorch.compile import make_boxed_func

    def keep(kind):
        def compiler(gm, example_inputs):
            graphs[kind] = [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
            return make_boxed_func(gm)
        return compiler
    return keep


class OpTest(HeedTestCase):

    def test_op_matches_reference(self):
        rng = make_rng(self)
        q, k, v = (randn(rng, (2, 3, 45, 32)) for _ in range(3))
        out, lse = heed.torch_ops.attention(t(q), t(k), t(v), CAUSAL, return_lse=True)
        self.assertIsInstance(out, torch.Tensor)
        want, want_lse = reference(q, k, v, ref_causal)
        self.assertClose(out.numpy(), want)
        self.assertLse(lse.numpy(), want_lse)
        # Buffers, and a spec given as a path.
        doc = np.sort(rng.integers(0, 4, size=45)).astype(np.int32)
        out = heed.torch_ops.attention(t(q), t(k), t(v),
                                       os.path.join(REPO, "examples", "document.attn"),
                                       buffers=[t(doc)])
        want, _ = reference(q, k, v, lambda b, h, i, j: (doc[i] == doc[j]) & (i >= j))
        self.assertClose(out.numpy(), want)

    def test_opcheck(self):
        # torch's own checks of the registration: schema, fake tensor, autograd, AOT.
        rng = make_rng(self)
        q, k, v = (t(randn(rng, (1, 2, 20, 16))) for _ in range(3))
        for lse in (False, True):
            torch.library.opcheck(torch.ops.heed.attention.default,
                                  (q, k, v, CAUSAL, [], None, lse, "bhsd"),
                                  test_utils=("test_schema", "test_faketensor",
                                              "test_autograd_registration"))

    def test_gpu_kernel_option(self):
        # gpu_kernel picks the GPU kernels (forward and autograd backward on CUDA
        # tensors): in the op's schema (opcheck), a key of the kernels compiled; on CPU
        # tensors the CPU kernels run, gradients as without it; an unknown kind fails.
        rng = make_rng(self)
        q, k, v = (t(randn(rng, (1, 2, 20, 16))) for _ in range(3))
        torch.library.opcheck(torch.ops.heed.attention.default,
                              (q, k, v, CAUSAL, [], None, True, "bhsd", "wgmma"),
                              test_utils=("test_schema", "test_faketensor",
                                          "test_autograd_registration"))
        grads = []
        for kind in (None, "wgmma"):
            leaves = [x.clone().requires_grad_() for x in (q, k, v)]
            heed.torch_ops.attention(*leaves, CAUSAL, gpu_kernel=kind).sum().backward()
            grads.append([x.grad for x in leaves])
        for a, b in zip(*grads):
            self.assertTrue(torch.equal(a, b))
        with self.assertRaises(heed.HeedError) as ctx:
            heed.torch_ops.attention(q, k, v, CAUSAL, gpu_kernel="wgmma-fast")
        self.assertIn("unknown --gpu-kernel=wgmma-fast", str(ctx.exception))
        # Through flex_attention's kernel_options (still the torch op: one graph node).
        out = heed.flex_attention(q, k, v, kernel_options={"gpu_kernel": "wgmma"})
        self.assertTrue(torch.equal(out, heed.torch_ops.attention(q, k, v, "variant f {}")))

    def compiled(self, body, **compile_kwargs):
        """(fn compiled with torch.compile, the FX graphs it made, q, k, v)."""
        graphs = []

        def backend(gm, example_inputs):
            graphs.append(gm)
            return gm

        rng = make_rng(self)
        q, k, v = (t(randn(rng, (1, 2, 40, 16))) for _ in range(3))
        return torch.compile(body, backend=backend, **compile_kwargs), graphs, q, k, v

    @staticmethod
    def targets(graphs):
        return [str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"]

    def test_compile_keeps_one_node(self):
        fn, graphs, q, k, v = self.compiled(
            lambda q, k, v: heed.torch_ops.attention(q * 2, k, v, CAUSAL) + 1, fullgraph=True)
        got = fn(q, k, v)
        want, _ = reference(q.numpy() * 2, k.numpy(), v.numpy(), ref_causal)
        self.assertClose(got.numpy(), want + 1)
        self.assertEqual(len(graphs), 1)
        targets = self.targets(graphs)
        print("\n  graph: %s" % targets)
        self.assertEqual(sum("heed" in x for x in targets), 1, targets)

    def test_compile_flex(self):
        # heed.flex_attention under torch.compile: the trace runs outside the graph
        # (a graph break), the kernel is one node.
        bm = heed.create_block_mask(ref_causal, 1, 1, 40, 40)
        fn, graphs, q, k, v = self.compiled(
            lambda q, k, v: heed.flex_attention(q, k, v, block_mask=bm) * 3)
        got = fn(q, k, v)
        self.assertClose(got.numpy(), 3 * reference(q.numpy(), k.numpy(), v.numpy(),
                                                    ref_causal)[0])
        nodes = self.targets(graphs)
        print("\n  graphs: %d, nodes: %s" % (len(graphs), nodes))
        self.assertEqual(sum("heed" in x for x in nodes), 1, nodes)

    def test_backward_matches_float64_autograd(self):
        # loss.backward() through the op: heed's backward kernel against torch's own
        # autograd of the same attention in float64 (ALiBi, causal, GQA 4:2, odd length),
        # q, k, v and the slopes' gradient, normwise <= 1e-5 (issue 17's f32 bound).
        rng = make_rng(self)
        spec = ("variant a { buffer slopes: f32[H]\n score = alibi(score, slopes)\n"
                " mask = causal() }")
        b, hq, hkv, s, d = 2, 4, 2, 37, 16
        q, dout = (randn(rng, (b, hq, s, d)) for _ in range(2))
        k, v = (randn(rng, (b, hkv, s, d)) for _ in range(2))
        slopes = rng.uniform(0, 1, size=hq).astype(np.float32)
        leaves = [t(x).requires_grad_() for x in (q, k, v, slopes)]
        out = heed.torch_ops.attention(*leaves[:3], spec, buffers=[leaves[3]])
        (out * t(dout)).sum().backward()
        want = [t(x).double().requires_grad_() for x in (q, k, v, slopes)]
        dq64, dk64, dv64, ds64 = want
        group = hq // hkv
        kk, vv = (x.repeat_interleave(group, dim=1) for x in (dk64, dv64))
        i = torch.arange(s, dtype=torch.float64)[:, None]
        j = torch.arange(s, dtype=torch.float64)[None, :]
        score = dq64 @ kk.transpose(-1, -2) / d ** 0.5 + ds64[None, :, None, None] * (j - i)
        score = score.masked_fill(i < j, float("-inf"))
        ref = torch.softmax(score, dim=-1) @ vv
        self.assertLess(((out.detach().double() - ref.detach()).norm() /
                         ref.detach().norm()).item(), 1e-5)
        (ref * t(dout).double()).sum().backward()
        for name, got, exact in zip(("dq", "dk", "dv", "dslopes"), leaves, want):
            err = ((got.grad.double() - exact.grad).norm() / exact.grad.norm()).item()
            print("\n  %s: normwise error %.2e" % (name, err))
            self.assertLess(err, 1e-5, name)

    def test_flex_backward_reaches_captured_tensors(self):
        # heed.flex_attention with a score_mod capturing a learned per-head bias: the
        # gradient reaches the captured tensor (torch's own flex_attention has no CPU
        # backward), against float64 autograd.
        rng = make_rng(self)
        b, h, s, d = 1, 2, 33, 16
        arrays = [randn(rng, (b, h, s, d)) for _ in range(3)]
        arrays.append(rng.uniform(0, 1, size=h).astype(np.float32))
        q, k, v, bias = (t(x).requires_grad_() for x in arrays)
        bm = heed.create_block_mask(ref_causal, 1, 1, s, s)
        out = heed.flex_attention(q, k, v, block_mask=bm,
                                  score_mod=lambda sc, bb, hh, qi, kv: sc + bias[hh] * (kv - qi))
        out.sum().backward()
        q64, k64, v64, bias64 = (t(x).double().requires_grad_() for x in arrays)
        i = torch.arange(s, dtype=torch.float64)[:, None]
        j = torch.arange(s, dtype=torch.float64)[None, :]
        score = q64 @ k64.transpose(-1, -2) / d ** 0.5 + bias64[None, :, None, None] * (j - i)
        torch.softmax(score.masked_fill(i < j, float("-inf")), dim=-1).matmul(v64).sum().backward()
        for name, got, exact in (("dq", q, q64), ("dk", k, k64), ("dv", v, v64),
                                 ("dbias", bias, bias64)):
            err = ((got.grad.double() - exact.grad).norm() / exact.grad.norm()).item()
            self.assertLess(err, 1e-5, name)

    def test_gated_backward_router_gradient(self):
        # MoH: out = g * attention with g = router[b, q, h]; the router's gradient on
        # routed rows is float64 autograd's, and 0 where g is 0 (heed computes no row
        # that is not routed; a top-k mask upstream gives those rows 0 anyway).
        rng = make_rng(self)
        b, h, s, d = 1, 2, 20, 16
        q, k, v = (randn(rng, (b, h, s, d)) for _ in range(3))
        router = (rng.uniform(0, 1, size=(b, s, h)) * (rng.uniform(size=(b, s, h)) > 0.5))
        leaves = [t(x).requires_grad_() for x in (q, k, v, router.astype(np.float32))]
        with open(os.path.join(REPO, "examples", "moh.attn")) as f:
            spec = f.read()
        heed.torch_ops.attention(*leaves[:3], spec, buffers=[leaves[3]]).sum().backward()
        q64, k64, v64, r64 = (t(x).double().requires_grad_() for x in (q, k, v, router))
        i = torch.arange(s)[:, None]
        j = torch.arange(s)[None, :]
        score = (q64 @ k64.transpose(-1, -2) / d ** 0.5).masked_fill(i < j, float("-inf"))
        out = r64.permute(0, 2, 1)[..., None] * (torch.softmax(score, dim=-1) @ v64)
        out.sum().backward()
        routed = torch.from_numpy(router != 0)
        for name, got, exact in (("dq", leaves[0], q64), ("dk", leaves[1], k64),
                                 ("dv", leaves[2], v64)):
            err = ((got.grad.double() - exact.grad).norm() / exact.grad.norm()).item()
            self.assertLess(err, 1e-5, name)
        got, exact = leaves[3].grad.double(), r64.grad
        err = ((got[routed] - exact[routed]).norm() / exact[routed].norm()).item()
        self.assertLess(err, 1e-5, "drouter on routed rows")
        self.assertTrue(bool((got[~routed] == 0).all()), "drouter where the gate is 0")

    def test_compiled_backward_keeps_one_node_each_way(self):
        # torch.compile (AOTAutograd) of a training step: heed.attention is one node of
        # the forward graph, heed.attention_backward one node of the backward graph, and
        # the gradients are eager heed's.
        from torch._dynamo.backends.common import aot_autograd
        rng = make_rng(self)
        spec = ("variant a { buffer slopes: f32[H]\n score = alibi(score, slopes)\n"
                " mask = causal() }")
        arrays = [randn(rng, (1, 2, 33, 16)) for _ in range(3)]
        arrays.append(rng.uniform(0, 1, size=2).astype(np.float32))
        graphs = {}
        keep = graph_keeper(graphs)

        step = torch.compile(
            lambda q, k, v, s: heed.torch_ops.attention(q, k, v, spec, buffers=[s]) * 2,
            backend=aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward")),
            fullgraph=True)
        compiled = [t(x).requires_grad_() for x in arrays]
        step(*compiled).sum().backward()
        eager = [t(x).requires_grad_() for x in arrays]
        (heed.torch_ops.attention(*eager[:3], spec, buffers=[eager[3]]) * 2).sum().backward()
        print("\n  graphs: %s" % graphs)
        self.assertEqual(sum("heed.attention.default" in n for n in graphs["forward"]), 1)
        self.assertEqual(sum("heed.attention_backward" in n for n in graphs["backward"]), 1)
        for a, b in zip(compiled, eager):
            self.assertTrue(torch.equal(a.grad, b.grad))

    def test_backward_opcheck(self):
        rng = make_rng(self)
        q, k, v, dout = (t(randn(rng, (1, 2, 20, 16))) for _ in range(4))
        out, lse = heed.torch_ops.attention(q, k, v, CAUSAL, return_lse=True)
        torch.library.opcheck(torch.ops.heed.attention_backward.default,
                              (q, k, v, out, lse, dout, lse.new_empty((0,)), CAUSAL, [], None,
                               "bhsd"),
                              test_utils=("test_schema", "test_faketensor"))

    def test_backward_refusals(self):
        # A gradient into lse is refused clearly; out alone works with lse returned.
        rng = make_rng(self)
        q = t(randn(rng, (1, 1, 8, 16))).requires_grad_()
        out, lse = heed.torch_ops.attention(q, q, q, CAUSAL, return_lse=True)
        with self.assertRaises(NotImplementedError) as cm:
            (out.sum() + lse.sum()).backward()
        self.assertIn("lse", str(cm.exception))
        out, lse = heed.torch_ops.attention(q, q, q, CAUSAL, return_lse=True)
        out.sum().backward()
        self.assertTrue(torch.isfinite(q.grad).all())

    def test_dlpack_both_ways(self):
        rng = make_rng(self)
        q, k, v = (randn(rng, (1, 2, 30, 16)) for _ in range(3))
        # torch CPU tensors in (read through __dlpack__), bf16 included.
        tq, tk, tv = (t(x).to(torch.bfloat16) for x in (q, k, v))
        out = heed.attention(tq, tk, tv, CAUSAL)
        self.assertEqual(out.dtype, torch.bfloat16)
        want, _ = reference(*(x.float().numpy() for x in (tq, tk, tv)), ref_causal)
        self.assertClose(out.float().numpy(), want, atol=2e-2, rtol=2e-2)
        # heed's numpy output out, into torch without a copy.
        np_out = heed.attention(q, k, v, CAUSAL)
        shared = torch.from_dlpack(np_out)
        self.assertEqual(shared.data_ptr(), np_out.__array_interface__["data"][0])
        self.assertClose(shared.numpy(), reference(q, k, v, ref_causal)[0])


END = "variant end { mask = causal_bottom_right() }"


class ServingOpTest(HeedTestCase):
    """``torch.ops.heed.serving_attention``: per-entry lengths and packed sequences
    (docs/decode.md) against float64, each entry on its own."""

    def entries(self, rng, q_lens, kv_lens, h=4, hkv=2, d=16):
        qs = [randn(rng, (1, h, n, d)) for n in q_lens]
        ks = [randn(rng, (1, hkv, n, d)) for n in kv_lens]
        vs = [randn(rng, (1, hkv, n, d)) for n in kv_lens]
        return qs, ks, vs

    def want(self, qs, ks, vs):
        """float64 out of each entry (bottom-right causal, GQA by repeating heads)."""
        outs = []
        for q, k, v in zip(qs, ks, vs):
            g = q.shape[1] // k.shape[1]
            k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
            shift = k.shape[2] - q.shape[2]
            out, _ = reference(q, k, v, lambda b, hh, i, j: i + shift >= j)
            outs.append(out)
        return outs

    def test_packed_sequences_match_float64(self):
        rng = make_rng(self)
        q_lens, kv_lens = [5, 1, 0, 9], [40, 3, 17, 9]
        qs, ks, vs = self.entries(rng, q_lens, kv_lens)
        cu = lambda lens: torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int32)
        packed = lambda xs: t(np.concatenate(xs, axis=2))  # [1, H, total, D]
        out = heed.torch_ops.serving_attention(
            packed(qs), packed(ks), packed(vs), END, layout="bhsd",
            cu_seqlens_q=cu(q_lens), cu_seqlens_kv=cu(kv_lens))
        self.assertEqual(tuple(out.shape), (1, 4, sum(q_lens), 16))
        want = np.concatenate(self.want(qs, ks, vs), axis=2)
        self.assertClose(out.numpy(), want)

    def test_lengths_on_a_padded_batch(self):
        rng = make_rng(self)
        q_lens, kv_lens = [3, 0, 2], [30, 4, 2]
        qs, ks, vs = self.entries(rng, q_lens, kv_lens)
        pad = lambda xs, n: t(np.concatenate(
            [np.pad(x, ((0, 0), (0, 0), (0, n - x.shape[2]), (0, 0))) for x in xs]))
        out, lse = heed.torch_ops.serving_attention(
            pad(qs, 3), pad(ks, 30), pad(vs, 30), END, layout="bhsd", return_lse=True,
            kv_lens=torch.tensor(kv_lens, dtype=torch.int32),
            q_lens=torch.tensor(q_lens, dtype=torch.int32))
        for b, want in enumerate(self.want(qs, ks, vs)):
            self.assertClose(out[b:b + 1, :, :q_lens[b]].numpy(), want)
            # Rows past an entry's queries: 0, lse -inf.
            self.assertTrue((out[b, :, q_lens[b]:] == 0).all())
            self.assertTrue(torch.isneginf(lse[b, :, q_lens[b]:]).all())

    def test_opcheck_and_one_node(self):
        rng = make_rng(self)
        q, k, v = (t(randn(rng, (1, 2, 12, 16))) for _ in range(3))
        cu = torch.tensor([0, 5, 12], dtype=torch.int32)
        torch.library.opcheck(torch.ops.heed.serving_attention.default,
                              (q, k, v, END, [], None, "bhsd", None, None, None, cu, cu),
                              test_utils=("test_schema", "test_faketensor"))
        graphs = []

        def backend(gm, example_inputs):
            graphs.append(gm)
            return gm
        fn = torch.compile(lambda q, k, v: heed.torch_ops.serving_attention(
            q, k, v, END, layout="bhsd", cu_seqlens_q=cu, cu_seqlens_kv=cu) * 2,
            backend=backend, fullgraph=True)
        got = fn(q, k, v)
        want = heed.torch_ops.serving_attention(q, k, v, END, layout="bhsd", cu_seqlens_q=cu,
                                                cu_seqlens_kv=cu) * 2
        self.assertClose(got.numpy(), want.numpy())
        targets = [str(n.target) for g in graphs for n in g.graph.nodes
                   if n.op == "call_function"]
        self.assertEqual(sum("heed" in x for x in targets), 1, targets)


class ServingBackwardTest(HeedTestCase):
    """``loss.backward()`` through ``torch.ops.heed.serving_attention``: ragged training
    batches (packed sequences, padded with lengths) against torch's float64 autograd of
    each entry on its own, a buffer's gradient summed over the entries."""

    SPEC = ("variant a { buffer slopes: f32[H]\n score = alibi(score, slopes)\n"
            " mask = causal_bottom_right() }")

    def exact(self, q, k, v, slopes, dout):
        """float64 autograd of one entry ([1, Hq, Sq, D], GQA by repeating heads):
        the gradients of sum(out * dout) for q, k, v, slopes."""
        leaves = [x.detach().double().requires_grad_() for x in (q, k, v, slopes)]
        q64, k64, v64, s64 = leaves
        g = q.shape[1] // k.shape[1]
        kk, vv = (x.repeat_interleave(g, dim=1) for x in (k64, v64))
        sq, skv = q.shape[2], k.shape[2]
        i = torch.arange(sq, dtype=torch.float64)[:, None]
        j = torch.arange(skv, dtype=torch.float64)[None, :]
        score = q64 @ kk.transpose(-1, -2) / q.shape[-1] ** 0.5 + \
            s64[None, :, None, None] * (j - i)
        score = score.masked_fill(i + (skv - sq) < j, float("-inf"))
        # A row that sees no key gives 0 (heed's convention), not NaN.
        p = torch.nan_to_num(torch.softmax(score, dim=-1), nan=0.0)
        (p @ vv * dout.double()).sum().backward()
        return [x.grad for x in leaves]

    def check(self, name, got, want, bound=1e-5):
        err = ((got.double() - want).norm() / want.norm()).item()
        print("\n  %s: normwise error %.2e" % (name, err))
        self.assertLess(err, bound, name)

    def test_packed_sequences_match_float64_autograd(self):
        # Five packed entries (one with no queries, one with a single query, one
        # with more queries than keys: its first rows see no key), GQA 4:2,
        # bottom-right causal with ALiBi: dq, dk, dv of every entry and the
        # slopes' gradient (the sum over entries), normwise <= 1e-5.
        rng = make_rng(self)
        q_lens, kv_lens, hq, hkv, d = [5, 1, 0, 19, 12], [40, 3, 17, 19, 4], 4, 2, 16
        cu = lambda lens: torch.tensor(np.concatenate([[0], np.cumsum(lens)]),
                                       dtype=torch.int32)
        q = t(randn(rng, (1, hq, sum(q_lens), d))).requires_grad_()
        k = t(randn(rng, (1, hkv, sum(kv_lens), d))).requires_grad_()
        v = t(randn(rng, (1, hkv, sum(kv_lens), d))).requires_grad_()
        slopes = t(rng.uniform(0, 1, size=hq).astype(np.float32)).requires_grad_()
        dout = t(randn(rng, (1, hq, sum(q_lens), d)))
        out = heed.torch_ops.serving_attention(q, k, v, self.SPEC, buffers=[slopes],
                                               layout="bhsd", cu_seqlens_q=cu(q_lens),
                                               cu_seqlens_kv=cu(kv_lens))
        (out * dout).sum().backward()
        cq, ck = np.cumsum([0] + q_lens), np.cumsum([0] + kv_lens)
        dslopes = torch.zeros(hq, dtype=torch.float64)
        for e in range(len(q_lens)):
            rq, rk = slice(cq[e], cq[e + 1]), slice(ck[e], ck[e + 1])
            dq, dk, dv, ds = self.exact(q[:, :, rq], k[:, :, rk], v[:, :, rk], slopes,
                                        dout[:, :, rq])
            dslopes += ds
            if q_lens[e]:
                self.check("entry %d dq" % e, q.grad[:, :, rq], dq)
                self.check("entry %d dk" % e, k.grad[:, :, rk], dk)
                self.check("entry %d dv" % e, v.grad[:, :, rk], dv)
            else:  # no queries: no gradient reaches its keys
                self.assertTrue(bool((k.grad[:, :, rk] == 0).all()), "entry %d dk" % e)
                self.assertTrue(bool((v.grad[:, :, rk] == 0).all()), "entry %d dv" % e)
        self.check("dslopes", slopes.grad, dslopes)

    def test_padded_batch_with_lengths(self):
        # bshd, padded to capacities with q_lens and kv_lens: gradients of the rows
        # past each entry are 0, the real rows float64's.
        rng = make_rng(self)
        q_lens, kv_lens, h, d, sq, skv = [3, 0, 7], [30, 4, 7], 2, 16, 7, 30
        arrays = [randn(rng, (3, sq, h, d)), randn(rng, (3, skv, h, d)),
                  randn(rng, (3, skv, h, d))]
        q, k, v = (t(x).requires_grad_() for x in arrays)
        slopes = t(rng.uniform(0, 1, size=h).astype(np.float32)).requires_grad_()
        dout = t(randn(rng, (3, sq, h, d)))
        out = heed.torch_ops.serving_attention(
            q, k, v, self.SPEC, buffers=[slopes],
            kv_lens=torch.tensor(kv_lens, dtype=torch.int32),
            q_lens=torch.tensor(q_lens, dtype=torch.int32))
        (out * dout).sum().backward()
        bhsd = lambda x: x.permute(0, 2, 1, 3)
        dslopes = torch.zeros(h, dtype=torch.float64)
        for b in range(3):
            nq, nk = q_lens[b], kv_lens[b]
            dq, dk, dv, ds = self.exact(bhsd(q[b:b + 1, :nq]), bhsd(k[b:b + 1, :nk]),
                                        bhsd(v[b:b + 1, :nk]), slopes,
                                        bhsd(dout[b:b + 1, :nq]))
            dslopes += ds
            if nq:
                self.check("entry %d dq" % b, bhsd(q.grad[b:b + 1, :nq]), dq)
                self.check("entry %d dk" % b, bhsd(k.grad[b:b + 1, :nk]), dk)
                self.check("entry %d dv" % b, bhsd(v.grad[b:b + 1, :nk]), dv)
            else:  # no queries: no gradient reaches its keys
                for name, g in (("dk", k.grad), ("dv", v.grad)):
                    self.assertTrue(bool((g[b, :nk] == 0).all()), "entry %d %s" % (b, name))
            for name, g, n in (("dq", q.grad, nq), ("dk", k.grad, nk), ("dv", v.grad, nk)):
                self.assertTrue(bool((g[b, n:] == 0).all()),
                                "entry %d %s past its length" % (b, name))
        self.check("dslopes", slopes.grad, dslopes)

    def test_paged_cache_backward_is_refused(self):
        rng = make_rng(self)
        q = t(randn(rng, (1, 1, 2, 16))).requires_grad_()
        pages = t(randn(rng, (2, 16, 1, 16)))  # [pages, page size, Hkv, D] (bshd)
        out = heed.torch_ops.serving_attention(
            q.transpose(1, 2), pages, pages, END, kv_lens=torch.tensor([20], dtype=torch.int32),
            page_table=torch.tensor([[1, 0]], dtype=torch.int32))
        with self.assertRaises(NotImplementedError) as cm:
            out.sum().backward()
        self.assertIn("paged", str(cm.exception))
        with torch.no_grad():  # inference through the same call is fine
            heed.torch_ops.serving_attention(
                q.transpose(1, 2), pages, pages, END,
                kv_lens=torch.tensor([20], dtype=torch.int32),
                page_table=torch.tensor([[1, 0]], dtype=torch.int32))

    @unittest.skipUnless(torch is not None and torch.cuda.is_available()
                         and not torch.version.hip, "no CUDA GPU")
    def test_cuda_packed_sequences(self):
        # The same on CUDA tensors, bf16 (the GPU backward's two kernels with the
        # lengths uploaded; cu_seqlens given on the device, copied to the host by the
        # op): normwise <= 1e-2 (issue 17's bf16 bound) per entry.
        rng = make_rng(self)
        q_lens, kv_lens, hq, hkv, d = [70, 1, 0, 130], [200, 3, 17, 130], 4, 2, 64
        cu = lambda lens: torch.tensor(np.concatenate([[0], np.cumsum(lens)]),
                                       dtype=torch.int32, device="cuda")
        dev = lambda x: t(x).cuda().to(torch.bfloat16).requires_grad_()
        q = dev(randn(rng, (1, hq, sum(q_lens), d)))
        k, v = (dev(randn(rng, (1, hkv, sum(kv_lens), d))) for _ in range(2))
        slopes = t(rng.uniform(0, 1, size=hq).astype(np.float32)).cuda().requires_grad_()
        dout = t(randn(rng, (1, hq, sum(q_lens), d))).cuda().to(torch.bfloat16)
        out = heed.torch_ops.serving_attention(q, k, v, self.SPEC, buffers=[slopes],
                                               layout="bhsd", cu_seqlens_q=cu(q_lens),
                                               cu_seqlens_kv=cu(kv_lens))
        (out * dout).sum().backward()
        cq, ck = np.cumsum([0] + q_lens), np.cumsum([0] + kv_lens)
        dslopes = torch.zeros(hq, dtype=torch.float64)
        host = lambda x: x.detach().double().cpu()
        for e in range(len(q_lens)):
            rq, rk = slice(cq[e], cq[e + 1]), slice(ck[e], ck[e + 1])
            grads = self.exact(host(q[:, :, rq]), host(k[:, :, rk]), host(v[:, :, rk]),
                               host(slopes), host(dout[:, :, rq]))
            dslopes += grads[3]
            for name, got, want in (("dq", q.grad[:, :, rq], grads[0]),
                                    ("dk", k.grad[:, :, rk], grads[1]),
                                    ("dv", v.grad[:, :, rk], grads[2])):
                if q_lens[e]:
                    self.check("entry %d %s (CUDA)" % (e, name), host(got), want, 1e-2)
                else:
                    self.assertTrue(bool((got == 0).all()), "entry %d %s" % (e, name))
        self.check("dslopes (CUDA)", host(slopes.grad), dslopes, 1e-2)

    def packed_opchecks(self, *gpu_kernel):
        """torch's own checks (schema, fake tensors, the autograd registration) of the
        serving op and its backward op on two packed sequences (the ops' trailing
        gpu_kernel argument given where `gpu_kernel` is); (q, k, v, slopes as numpy
        arrays, cu_seqlens)."""
        rng = make_rng(self)
        arrays = [randn(rng, (1, 2, 12, 16)) for _ in range(3)]
        arrays.append(rng.uniform(0, 1, size=2).astype(np.float32))
        cu = torch.tensor([0, 5, 12], dtype=torch.int32)
        q, k, v, s = (t(x) for x in arrays)
        torch.library.opcheck(torch.ops.heed.serving_attention.default,
                              (q, k, v, self.SPEC, [s], None, "bhsd", None, None, None, cu,
                               cu, *gpu_kernel),
                              test_utils=("test_schema", "test_faketensor",
                                          "test_autograd_registration"))
        out, lse = heed.torch_ops.serving_attention(q, k, v, self.SPEC, buffers=[s],
                                                    layout="bhsd", return_lse=True,
                                                    cu_seqlens_q=cu, cu_seqlens_kv=cu,
                                                    gpu_kernel=(gpu_kernel or [None])[0])
        torch.library.opcheck(torch.ops.heed.serving_attention_backward.default,
                              (q, k, v, out, lse, q, lse.new_empty((0,)), self.SPEC, [s],
                               None, "bhsd", None, None, cu, cu, *gpu_kernel),
                              test_utils=("test_schema", "test_faketensor"))
        return arrays, cu

    def test_opcheck_and_compiled_training_step(self):
        # The ops' checks, then a torch.compile'd training step on packed sequences:
        # one serving node in each graph, and eager's gradients.
        from torch._dynamo.backends.common import aot_autograd
        arrays, cu = self.packed_opchecks()
        graphs = {}
        keep = graph_keeper(graphs)

        step = torch.compile(
            lambda q, k, v, s: heed.torch_ops.serving_attention(
                q, k, v, self.SPEC, buffers=[s], layout="bhsd", cu_seqlens_q=cu,
                cu_seqlens_kv=cu) * 2,
            backend=aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward")),
            fullgraph=True)
        compiled = [t(x).requires_grad_() for x in arrays]
        step(*compiled).sum().backward()
        eager = [t(x).requires_grad_() for x in arrays]
        (heed.torch_ops.serving_attention(*eager[:3], self.SPEC, buffers=[eager[3]],
                                          layout="bhsd", cu_seqlens_q=cu, cu_seqlens_kv=cu)
         * 2).sum().backward()
        print("\n  graphs: %s" % graphs)
        self.assertEqual(sum("heed.serving_attention.default" in n
                             for n in graphs["forward"]), 1)
        self.assertEqual(sum("heed.serving_attention_backward" in n
                             for n in graphs["backward"]), 1)
        for a, b in zip(compiled, eager):
            self.assertTrue(torch.equal(a.grad, b.grad))

    def test_serving_gpu_kernel_option(self):
        # gpu_kernel in the serving op (forward and its backward op): in their schemas
        # (opcheck), on CPU tensors the CPU kernels with the same gradients; an unknown
        # kind fails.
        arrays, cu = self.packed_opchecks("wgmma")
        q, k, v, s = (t(x) for x in arrays)
        grads = []
        for kind in (None, "wgmma"):
            leaves = [t(x).requires_grad_() for x in arrays]
            heed.torch_ops.serving_attention(*leaves[:3], self.SPEC, buffers=[leaves[3]],
                                             layout="bhsd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                                             gpu_kernel=kind).sum().backward()
            grads.append([x.grad for x in leaves])
        for a, b in zip(*grads):
            self.assertTrue(torch.equal(a, b))
        with self.assertRaises(heed.HeedError) as ctx:
            heed.torch_ops.serving_attention(q, k, v, self.SPEC, buffers=[s], layout="bhsd",
                                             cu_seqlens_q=cu, cu_seqlens_kv=cu,
                                             gpu_kernel="wgmma-fast")
        self.assertIn("unknown --gpu-kernel=wgmma-fast", str(ctx.exception))


class FlexTorchTest(HeedTestCase):

    def test_nine_variants_against_float64_and_torch_flex(self):
        rng = make_rng(self)
        S, H, D = 256, 4, 64
        qn, kn, vn = (randn(rng, (1, H, S, D)) for _ in range(3))
        qn *= 2
        q, k, v = t(qn), t(kn), t(vn)
        seed = int(rng.integers(1 << 31))
        refs = test_flex.NineTest()
        for variant in flex_nine.make_variants(S, H, seed, torch.as_tensor):
            with self.subTest(variant=variant.name):
                ours = flex_nine.run(variant, q, k, v)
                # Specialized floats: after a few variants torch's internal compile of
                # flex_attention turns the captured softcap (a Python float) into a
                # SymFloat that its own flex_attention op then refuses.
                with torch._dynamo.config.patch(specialize_float=True):
                    theirs = flex_nine.run(variant, q, k, v, torch_flex.flex_attention,
                                           torch_flex.create_block_mask)
                want, _ = reference(qn, kn, vn, refs.reference_mask(variant),
                                    score_fn=refs.reference_score(variant))
                self.assertIsInstance(ours, torch.Tensor)
                self.assertClose(ours.numpy(), want, what=variant.name)
                self.assertClose(theirs.numpy(), want, atol=1e-4, what="torch " + variant.name)
                print("  %-16s heed vs float64 %.2g, heed vs torch flex %.2g" % (
                    variant.name, float(np.abs(ours.numpy() - want).max()),
                    float((ours - theirs).abs().max())))

    def test_lse_matches_torch(self):
        rng = make_rng(self)
        q, k, v = (t(randn(rng, (2, 4, 70, 32))) for _ in range(3))

        def softcap(score, b, h, q_idx, kv_idx):
            return 5 * torch.tanh(score / 5)

        def mask(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (kv_idx > 3)
        bm = heed.create_block_mask(mask, None, None, 70, 70)
        out, lse = heed.flex_attention(q, k, v, score_mod=softcap, block_mask=bm,
                                       return_lse=True)
        tbm = torch_flex.create_block_mask(mask, None, None, 70, 70, device="cpu")
        tout, tlse = torch_flex.flex_attention(q, k, v, score_mod=softcap, block_mask=tbm,
                                               return_lse=True)
        self.assertClose(out.numpy(), tout.double().numpy(), atol=1e-5)
        finite = torch.isfinite(tlse)
        self.assertTrue(torch.equal(torch.isfinite(lse), finite))
        self.assertClose(lse[finite].numpy(), tlse[finite].double().numpy(), atol=1e-5)
        # Rows 0..3 see no key: out 0 and lse -inf, in both.
        self.assertTrue(bool((out[:, :, :4] == 0).all()))

    def test_torch_functions_trace(self):
        def score(score, b, h, q_idx, kv_idx):
            bias = torch.where(q_idx >= kv_idx, torch.exp(-(q_idx - kv_idx).abs().float() / 8),
                               torch.zeros_like(score))
            return torch.clamp(score + bias, min=-5.0, max=5.0)
        lines = [ln.strip() for ln in heed.explain(score).splitlines() if ln.startswith("  ")]
        print("\n  %s" % lines)
        self.assertEqual(lines, ["score = min(max((score + select((q >= kv), exp(((-f32(abs((q - "
                                 "kv)))) / 8.0)), 0.0)), (-5.0)), 5.0)"])
        with self.assertRaises(heed.TraceError) as cm:
            heed.explain(lambda s, b, h, q, kv: s + torch.sin(q))
        self.assertIn("torch.sin", str(cm.exception))

    def test_captured_torch_tensor_anywhere(self):
        # Torch tensors reached through attributes are seen (__torch_function__).
        rng = make_rng(self)
        qn, kn, vn = (randn(rng, (1, 2, 33, 16)) for _ in range(3))

        class Model:
            pass
        m = Model()
        m.table = torch.tensor(rng.standard_normal(2).astype(np.float32))
        out = heed.flex_attention(t(qn), t(kn), t(vn),
                                  score_mod=lambda s, b, h, q, kv: s + m.table[h])
        want, _ = reference(qn, kn, vn, score_fn=lambda s, b, h, i, j:
                            s + m.table.numpy().astype(np.float64)[h])
        self.assertClose(out.numpy(), want)

    @unittest.skipUnless(torch is not None and torch.cuda.is_available()
                         and not torch.version.hip, "no CUDA GPU")
    def test_cuda(self):
        rng = make_rng(self)
        qn, kn, vn = (randn(rng, (1, 4, 200, 64)) for _ in range(3))
        doc = np.sort(rng.integers(0, 5, size=200)).astype(np.int32)
        dt = torch.as_tensor(doc).cuda()

        def mask(b, h, q_idx, kv_idx):
            return (dt[q_idx] == dt[kv_idx]) & (q_idx >= kv_idx)
        bm = heed.create_block_mask(mask, None, None, 200, 200, device="cuda")
        q, k, v = (t(x).cuda().to(torch.bfloat16) for x in (qn, kn, vn))
        want, _ = reference(*(x.float().cpu().numpy() for x in (q, k, v)),
                            lambda b, h, i, j: (doc[i] == doc[j]) & (i >= j))
        out = heed.flex_attention(q, k, v, block_mask=bm)  # through torch.ops.heed.attention
        self.assertEqual(out.device.type, "cuda")
        self.assertClose(out.float().cpu().numpy(), want, atol=3e-2, rtol=3e-2)
        poisoned = torch.full_like(q, float("nan"))
        heed.flex_attention(q, k, v, block_mask=bm, out=poisoned)  # heed's own path
        self.assertClose(poisoned.float().cpu().numpy(), want, atol=3e-2, rtol=3e-2)

    def cuda_backward(self, gpu_kernel=None, d=64):
        """loss.backward() on CUDA tensors: the GPU backward's dQ and dK/dV kernels
        through the C API, against torch's float64 autograd of the same attention
        (ALiBi, causal, GQA 4:2, bf16 storage; issue 17's bf16 bound 1e-2 normwise)."""
        rng = make_rng(self)
        spec = ("variant a { buffer slopes: f32[H]\n score = alibi(score, slopes)\n"
                " mask = causal() }")
        b, hq, hkv, s = 2, 4, 2, 77
        q, dout = (randn(rng, (b, hq, s, d)) for _ in range(2))
        k, v = (randn(rng, (b, hkv, s, d)) for _ in range(2))
        slopes = rng.uniform(0, 1, size=hq).astype(np.float32)
        leaves = [t(x).cuda().to(torch.bfloat16).requires_grad_() for x in (q, k, v)]
        leaves.append(t(slopes).cuda().requires_grad_())
        # dout rounded to bf16 once: heed's backward takes it in the storage dtype,
        # and the reference the same values.
        dout = t(dout).cuda().to(torch.bfloat16)
        out = heed.torch_ops.attention(*leaves[:3], spec, buffers=[leaves[3]],
                                       gpu_kernel=gpu_kernel)
        (out * dout).sum().backward()
        exact = [x.detach().double().cpu().requires_grad_() for x in leaves]
        group = hq // hkv
        kk, vv = (x.repeat_interleave(group, dim=1) for x in exact[1:3])
        i = torch.arange(s, dtype=torch.float64)[:, None]
        j = torch.arange(s, dtype=torch.float64)[None, :]
        score = (exact[0] @ kk.transpose(-1, -2) / d ** 0.5
                 + exact[3][None, :, None, None] * (j - i))
        ref = torch.softmax(score.masked_fill(i < j, float("-inf")), dim=-1) @ vv
        (ref * dout.double().cpu()).sum().backward()
        for name, got, want in zip(("dq", "dk", "dv", "dslopes"), leaves, exact):
            self.assertEqual(got.grad.device.type, "cuda", name)
            err = ((got.grad.double().cpu() - want.grad).norm() / want.grad.norm()).item()
            print("\n  %s (CUDA, %s): normwise error %.2e" % (name, gpu_kernel or "default", err))
            self.assertLess(err, 1e-2, name)

    def serving_check(self, device, gpu_kernel=None):
        """Serving calls through torch.ops.heed.serving_attention on `device` against
        float64 per entry: packed sequences (causal, GQA 4:2, bf16, BSHD) forward and
        backward, and a decode step over a paged cache of 16-key pages in a random page
        order (entries of their own lengths, unowned table entries -1)."""
        rng = make_rng(self)
        lens, hq, hkv, d = [77, 1, 130, 40], 4, 2, 64
        cu = torch.tensor(np.cumsum([0] + lens), dtype=torch.int32)
        total = sum(lens)
        q, dout = (randn(rng, (1, total, hq, d)) for _ in range(2))
        k, v = (randn(rng, (1, total, hkv, d)) for _ in range(2))
        leaves = [t(x).to(device, torch.bfloat16).requires_grad_() for x in (q, k, v)]
        dout = t(dout).to(device, torch.bfloat16)
        out = heed.torch_ops.serving_attention(*leaves, CAUSAL, layout="bshd",
                                               cu_seqlens_q=cu, cu_seqlens_kv=cu,
                                               gpu_kernel=gpu_kernel)
        (out * dout).sum().backward()
        exact = [x.detach().double().cpu().requires_grad_() for x in leaves]

        def attend(qq, kk, vv, causal):
            # one entry, [n, H, D] each: softmax(q k^T / sqrt(D)) v over its keys
            qq, kk, vv = (x.transpose(0, 1) for x in (qq, kk, vv))
            kk, vv = (x.repeat_interleave(hq // hkv, dim=0) for x in (kk, vv))
            s = qq @ kk.transpose(-1, -2) / d ** 0.5
            if causal:
                n = s.shape[-1]
                s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
            return (torch.softmax(s, -1) @ vv).transpose(0, 1)
        ref = torch.cat([attend(*(x[0, a:a + n] for x in exact), True)
                         for a, n in zip(cu[:-1].tolist(), lens)])[None]
        (ref * dout.double().cpu()).sum().backward()

        def close(name, got, want):
            err = ((got.detach().double().cpu() - want.detach()).norm() / want.norm()).item()
            print("\n  %s (%s, %s): normwise error %.2e" % (name, device, gpu_kernel, err))
            self.assertLess(err, 1e-2, name)
        close("packed out", out, ref)
        for name, got, want in zip(("dq", "dk", "dv"), leaves, exact):
            close("packed " + name, got.grad, want.grad)
        # Decode over a paged cache: Sq = 1, kv_lens 300, 1, 77 in pages of 16.
        kv_lens, page = [300, 1, 77], 16
        pages = [(n + page - 1) // page for n in kv_lens]
        order = rng.permutation(sum(pages))
        table = np.full((3, max(pages)), -1, dtype=np.int32)
        keys = [randn(rng, (n, hkv, d)) for n in kv_lens]
        values = [randn(rng, (n, hkv, d)) for n in kv_lens]
        k_pages = np.zeros((sum(pages), page, hkv, d), np.float32)
        v_pages = np.zeros_like(k_pages)
        used = 0
        for b, n in enumerate(kv_lens):
            for p in range(pages[b]):
                table[b, p] = order[used]
                rows = slice(p * page, min(n, (p + 1) * page))
                k_pages[order[used], :rows.stop - rows.start] = keys[b][rows]
                v_pages[order[used], :rows.stop - rows.start] = values[b][rows]
                used += 1
        qd = randn(rng, (3, 1, hq, d))
        to = lambda x: t(x).to(device, torch.bfloat16)
        got = heed.torch_ops.serving_attention(
            to(qd), to(k_pages), to(v_pages), "variant f {}", layout="bshd",
            kv_lens=torch.tensor(kv_lens, dtype=torch.int32), page_table=t(table),
            gpu_kernel=gpu_kernel)
        dbl = lambda x: to(x).double().cpu()
        want = torch.stack([attend(dbl(qd[b]), dbl(keys[b]), dbl(values[b]), False)
                            for b in range(3)])
        close("paged decode", got, want)

    def test_serving(self):
        # The check's CPU run (the CUDA ones below on a GPU).
        self.serving_check("cpu")

    @unittest.skipUnless(torch is not None and torch.cuda.is_available()
                         and not torch.version.hip
                         and torch.cuda.get_device_capability()[0] == 9, "no sm_90 GPU")
    def test_cuda_wgmma_serving(self):
        # Hopper's wgmma kernels (decode.md, "On the wgmma kernel"): packed views by
        # TMA, V rows past an entry cleared, a paged cache a TMA box per page.
        self.serving_check("cuda", "wgmma")
        self.serving_check("cuda")

    @unittest.skipUnless(torch is not None and torch.cuda.is_available()
                         and not torch.version.hip, "no CUDA GPU")
    def test_cuda_backward(self):
        self.cuda_backward()

    @unittest.skipUnless(torch is not None and torch.cuda.is_available()
                         and not torch.version.hip
                         and torch.cuda.get_device_capability()[0] == 9, "no sm_90 GPU")
    def test_cuda_wgmma_backward(self):
        # The same through Hopper's wgmma kernels (forward and backward: gpu_kernel),
        # D = 64 and 128.
        self.cuda_backward("wgmma")
        self.cuda_backward("wgmma", d=128)

if __name__ == "__main__":
    unittest.main()
