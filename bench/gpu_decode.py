#!/usr/bin/env python3
"""Decode on one NVIDIA GPU against its memory bandwidth: heed, flex_attention, SDPA.

One decode step (Sq = 1) of a GQA model (Hq = 32, Hkv = 8, D = 128, bf16, BSHD)
over a KV cache with each sequence's own length (kv_lens), in two shapes of
issue 18: B = 8 sequences of 32768 keys, and B = 64 sequences of 1K to 32K keys
(ragged, drawn from --seed); then B = 1 of 32768 keys, where split-KV fills the
device. The mask is bottom-right causal, so a decode
query sees all of its sequence's keys.

  heed   the tensor-core kernel compiled for this GPU (kv_lens as a host int32
         tensor, docs/decode.md "Serving calls on the GPU")
  heed-paged  the same keys in a paged cache of 16-key pages in a random
         order, read through a (host) page table
  flex   torch.compile(flex_attention) with a block mask of each entry's keys
         and enable_gqa
  sdpa   F.scaled_dot_product_attention with the same mask as a boolean tensor

Reported per implementation: the median time (CUDA events, --repeat calls
after --warmup), and K/V bandwidth, counted the same way for all (each
sequence's K and V bytes read once, plus q and out, over the time), beside a
plain device copy of 1 GiB measured in the same run ((read + written bytes)
over its time): the issue's goal is heed at >= 80% of the copy. heed's output
is checked against a float32 reference on sampled (batch, head) rows, flex's
and SDPA's likewise; a time is printed only for an output that passed.

--json FILE gets the raw results, rewritten after each row. --budget stops
starting rows after that many seconds. Exit codes: 0 every check passed, 1 a
check failed or an implementation broke, 77 "SKIPPED: no CUDA GPU".
--cpu-check runs heed's CPU kernel and SDPA on the CPU at a small shape against
the same reference: it proves the script's masks and layouts (any torch, no
GPU).
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = "variant decode_end { mask = causal_bottom_right() }"
HQ, HKV, D = 32, 8, 128


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="write the raw results here (after every row)")
    p.add_argument("--budget", type=float, default=1e9, help="seconds; later rows not run")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--impls", default="heed,heed-paged,sdpa,flex")
    p.add_argument("--cpu-check", action="store_true")
    return p.parse_args(argv)


def shapes(rng_seed, cpu):
    """(name, B, capacity, lens) of the shapes to run."""
    import random
    rng = random.Random(rng_seed)
    if cpu:
        return [("cpu-b3", 3, 200, [200, 37, 1])]
    # b1-skv32k: one sequence, 32 blocks for the whole device: split-KV's
    # case (docs/decode.md, "Split-KV on the GPU"), last so a short budget
    # drops it first.
    return [("b8-skv32k", 8, 32768, [32768] * 8),
            ("b64-ragged-1k-32k", 64, 32768, [rng.randint(1024, 32768) for _ in range(64)]),
            ("b1-skv32k", 1, 32768, [32768])]


def reference_error(torch, q, k, v, lens, out, pairs):
    """Max abs error of out [B, 1, Hq, D] against a float32 reference on
    (b, h) pairs, over the largest reference value (relative)."""
    worst, scale = 0.0, 0.0
    group = q.shape[2] // k.shape[2]
    for b, h in pairs:
        n = int(lens[b])
        qs = q[b, 0, h].float()
        ks = k[b, :n, h // group].float()
        vs = v[b, :n, h // group].float()
        p = torch.softmax((ks @ qs) / (q.shape[-1] ** 0.5), dim=0)
        want = p @ vs
        err = (out[b, 0, h].float() - want).abs().max().item()
        # NaN (a row not written: out starts as NaN) or inf is a failure,
        # never dropped by max().
        worst = math.inf if not math.isfinite(err) else max(worst, err)
        scale = max(scale, want.abs().max().item())
    return worst / max(scale, 1e-30)


def timer(torch, cuda):
    """time_ms(fn, warmup, repeat): gpu_attention.py's CUDA-event median on a
    GPU, the wall clock's on the CPU (--cpu-check)."""
    if cuda:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from gpu_attention import time_ms as cuda_time_ms
        return lambda fn, warmup, repeat: cuda_time_ms(torch, fn, warmup, repeat)

    def time_ms(fn, warmup, repeat):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    return time_ms


def copy_gbps(torch, time_ms, device, a):
    """A plain device copy of 1 GiB: (read + written bytes) over its time."""
    n = (1 << 30) // 2 if device.type == "cuda" else (1 << 26)
    x = torch.empty(n, dtype=torch.bfloat16, device=device)
    y = torch.empty_like(x)
    ms = time_ms(lambda: y.copy_(x), a.warmup, a.repeat)
    return 2 * n * 2 / (ms * 1e-3) / 1e9


def make_impls(torch, heed, device, chip, B, cap, lens_cpu, q, k, v):
    """name -> (setup seconds, call) for each implementation."""
    import torch.nn.functional as F
    lens_dev = lens_cpu.to(device)
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, S, D] views
    impls = {}

    def heed_impl():
        t0 = time.perf_counter()
        kernel = heed.compile(SPEC, dtype="bfloat16", head_dim=q.shape[-1], layout="bshd",
                              kv_lens=True,
                              target=None if chip is None else "cuda:" + chip)
        setup = time.perf_counter() - t0
        out = torch.full_like(q, float("nan"))  # its own, NaN: an unwritten row shows

        def call():
            kernel(q, k, v, out=out, kv_lens=lens_cpu)
            return out
        return setup, call
    impls["heed"] = heed_impl

    def heed_paged_impl():
        # The same keys in a paged cache of 16-key pages (vLLM's NHD layout),
        # pages handed out in a random order; the table a host int32 tensor.
        page = 16
        t0 = time.perf_counter()
        counts = [(int(n) + page - 1) // page for n in lens_cpu.tolist()]
        total = sum(counts)
        order = torch.randperm(total, generator=torch.Generator().manual_seed(len(counts)))
        table = torch.full((B, max(1, (cap + page - 1) // page)), -1, dtype=torch.int32)
        caches = []
        for src in (k, v):
            cache = torch.empty(total, page, src.shape[2], src.shape[3], dtype=src.dtype,
                                device=device)
            at = 0
            for b, n in enumerate(counts):
                ids = order[at:at + n]
                table[b, :n] = ids.to(torch.int32)
                rows = src[b, :n * page] if n * page <= cap else torch.nn.functional.pad(
                    src[b], (0, 0, 0, 0, 0, n * page - cap))
                cache[ids.to(device)] = rows.reshape(n, page, src.shape[2], src.shape[3])
                at += n
            caches.append(cache)
        kernel = heed.compile(SPEC, dtype="bfloat16", head_dim=q.shape[-1], layout="bshd",
                              page_size=page,
                              target=None if chip is None else "cuda:" + chip)
        setup = time.perf_counter() - t0
        out = torch.full_like(q, float("nan"))

        def call():
            kernel(q, caches[0], caches[1], out=out, kv_lens=lens_cpu, page_table=table)
            return out
        return setup, call
    impls["heed-paged"] = heed_paged_impl

    def flex_impl():
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        t0 = time.perf_counter()

        def mask(b, h, qi, kv):
            return kv < lens_dev[b]  # Sq = 1: bottom-right causal is every key of the entry
        block_mask = create_block_mask(mask, B, None, 1, cap, device=device)
        torch._dynamo.reset()
        flex = torch.compile(flex_attention, dynamic=False)

        def call():
            return flex(qh, kh, vh, block_mask=block_mask, enable_gqa=True).transpose(1, 2)
        call()
        return time.perf_counter() - t0, call
    impls["flex"] = flex_impl

    def sdpa_impl():
        mask = (torch.arange(cap, device=device)[None, :] < lens_dev[:, None])[:, None, None, :]

        def call():
            return F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask,
                                                  enable_gqa=True).transpose(1, 2)
        return 0.0, call
    impls["sdpa"] = sdpa_impl
    return impls


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import torch
    except ImportError:
        print("gpu_decode: SKIPPED: no torch")
        return 77
    cuda = not a.cpu_check
    if cuda and not torch.cuda.is_available():
        print("gpu_decode: SKIPPED: no CUDA GPU")
        return 77
    sys.path.insert(0, os.path.join(REPO, "python"))
    import heed
    device = torch.device("cuda" if cuda else "cpu")
    seed = a.seed if a.seed is not None else int(time.time())
    print("seed %d" % seed)
    torch.manual_seed(seed)
    chip = None
    if cuda:
        major, minor = torch.cuda.get_device_capability(device)
        chip = "sm_%d%d" % (major, minor)
    time_ms = timer(torch, cuda)
    started = time.perf_counter()
    result = {"device": torch.cuda.get_device_name(device) if cuda else "cpu",
              "seed": seed, "spec": SPEC, "rows": []}
    result["copy_gbps"] = copy_gbps(torch, time_ms, device, a)
    print("copy      %.1f GB/s (1 GiB device copy, read + written)" % result["copy_gbps"])

    def write():
        if a.json:
            with open(a.json, "w") as f:
                json.dump(result, f, indent=1)
    write()
    failed = False
    hq, hkv, d = (4, 2, 64) if a.cpu_check else (HQ, HKV, D)
    result.update({"hq": hq, "hkv": hkv, "d": d})
    # Every shape's tensors first, then implementation by implementation
    # (flex, which compiles longest, last by default), so that a short budget
    # still measures heed on both shapes.
    cases = []
    for name, B, cap, lens in shapes(seed, a.cpu_check):
        lens_cpu = torch.tensor(lens, dtype=torch.int32)
        gen = torch.Generator(device=device).manual_seed(seed)
        q = torch.randn(B, 1, hq, d, device=device, dtype=torch.bfloat16, generator=gen)
        k = torch.randn(B, cap, hkv, d, device=device, dtype=torch.bfloat16, generator=gen)
        v = torch.randn(B, cap, hkv, d, device=device, dtype=torch.bfloat16, generator=gen)
        kv_bytes = sum(lens) * hkv * d * 2 * 2 + 2 * q.numel() * 2
        pairs = [(b, h) for b in (0, B // 2, B - 1) for h in (0, hq - 1)]
        impls = make_impls(torch, heed, device, chip, B, cap, lens_cpu, q, k, v)
        cases.append((name, B, cap, lens, q, k, v, kv_bytes, pairs, impls))
    for impl in a.impls.split(","):
        for name, B, cap, lens, q, k, v, kv_bytes, pairs, impls in cases:
            row = {"shape": name, "impl": impl, "batch": B, "capacity": cap,
                   "keys": sum(lens), "kv_bytes": kv_bytes}
            if impl not in impls or (a.cpu_check and impl == "flex" and
                                     not os.environ.get("HEED_CPU_FLEX")):
                continue
            if time.perf_counter() - started > a.budget:
                row["not_run"] = "budget"
                result["rows"].append(row)
                write()
                continue
            try:
                setup, call = impls[impl]()
                row["setup_s"] = setup
                out = call()
                if cuda:
                    torch.cuda.synchronize()
                row["rel_error"] = reference_error(torch, q, k, v, lens, out, pairs)
                row["passed"] = row["rel_error"] < 2e-2
                if row["passed"]:
                    row["ms"] = time_ms(call, a.warmup, a.repeat)
                    row["kv_gbps"] = kv_bytes / (row["ms"] * 1e-3) / 1e9
                    row["of_copy"] = row["kv_gbps"] / result["copy_gbps"]
                else:
                    failed = True
            except Exception as e:  # an implementation that breaks is a row, not a crash
                row["error"] = ("%s: %s" % (type(e).__name__, e))[-400:]
                failed = True
            result["rows"].append(row)
            write()
            print("%-20s %-10s %s" % (name, impl, json.dumps(
                {k_: row[k_] for k_ in ("ms", "kv_gbps", "of_copy", "rel_error", "passed",
                                        "error", "not_run") if k_ in row})))
    print("\n%-20s %-10s %10s %10s %8s %10s" % ("shape", "impl", "ms", "K/V GB/s", "of copy",
                                              "rel err"))
    for r in result["rows"]:
        print("%-20s %-10s %10s %10s %8s %10s" % (
            r["shape"], r["impl"], "%.3f" % r["ms"] if "ms" in r else "-",
            "%.1f" % r["kv_gbps"] if "kv_gbps" in r else "-",
            "%.0f%%" % (100 * r["of_copy"]) if "of_copy" in r else "-",
            "%.1e" % r["rel_error"] if "rel_error" in r else r.get("error", r.get("not_run", "-"))[:30]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
