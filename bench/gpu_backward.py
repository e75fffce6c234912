#!/usr/bin/env python3
"""heed's GPU backward against FlexAttention's, on one NVIDIA GPU, in one run.

On the same bf16 inputs (default B=4 H=16 S=8192 D=128, issue 17's shape) it
times, for each attention variant (bench/gpu_attention.py's definitions):
  heed       the backward's two kernels (dQ with delta, then dK/dV) through
             heed.compile_backward on torch CUDA tensors, given the forward's
             out and lse (the default tensor-core kernels, and with --wgmma
             Hopper's wgmma kernels: gpu_kernel='wgmma', dP issued beside S,
             and 'wgmma-serial', without that overlap)
  flex       torch.compile(flex_attention): forward + backward minus forward
             (torch.autograd.grad of the output with dout), same block mask
and prints useful backward TFLOP/s (2.5 x the forward's 4*B*H*S*S*D*density,
the density counted exactly from the mask) and heed/flex ratios. heed's dq,
dk and dv are checked against flex's gradients (normwise relative error,
--tol): a time is only printed for gradients that passed.

Timing: CUDA events around each call on the current stream after warm-up
calls, the median of --repeat calls; heed_synchronize after them reports an
error a kernel recorded. The raw JSON (--json) is rewritten after every row;
--budget stops starting new rows after that many seconds.

Exit codes: 0 all checks passed, 1 a check failed or an implementation broke,
77 "SKIPPED: no CUDA GPU". --cpu-check instead runs heed's CPU backward (f32,
small) against torch autograd of this script's float32 reference built from
the same mask and score definitions flex gets (any torch, no GPU).
"""

import argparse
import json
import math
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import gpu_attention as fwd  # noqa: E402  (the variants, density, timing)

VARIANTS = ["causal", "sliding_window", "document", "neighborhood_2d", "alibi_causal"]


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="heed's GPU backward vs torch.compile(flex_attention)'s on one NVIDIA "
                    "GPU: bf16, useful backward TFLOP/s, gradients checked.",
        epilog="Variants: " + ", ".join(fwd.VARIANTS) + ". Exit 77 (SKIPPED) without a GPU.")
    p.add_argument("--quick", action="store_true",
                   help="a small problem (S=1024, 1 warm-up, 3 repeats)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset (default: %s)" % ",".join(VARIANTS))
    p.add_argument("--dims", default="128", help="head dims, comma-separated (default 128)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--seq", type=int, default=None, help="sequence length (default 8192; "
                   "--quick: 1024)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 2)")
    p.add_argument("--repeat", type=int, default=None, help="timed calls, median (default 5)")
    p.add_argument("--tol", type=float, default=3e-2,
                   help="normwise relative error allowed between heed's and flex's gradients "
                        "(bf16; default 3e-2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="write every result as JSON to PATH")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="start no new row after this many seconds")
    p.add_argument("--wgmma", choices=("auto", "on", "off"), default="auto",
                   help="also time heed's wgmma backward (auto: on sm_90 devices)")
    p.add_argument("--cpu-check", action="store_true",
                   help="check heed's CPU backward against this script's reference (no GPU)")
    a = p.parse_args(argv)
    a.variants = [v for v in a.variants.split(",") if v]
    unknown = [v for v in a.variants if v not in fwd.VARIANTS]
    if unknown:
        p.error("unknown variant(s): " + ", ".join(unknown))
    a.dims = [int(d) for d in a.dims.split(",") if d]
    if a.seq is None:
        a.seq = 1024 if a.quick else 8192
    if a.warmup is None:
        a.warmup = 1 if a.quick else 2
    if a.repeat is None:
        a.repeat = 3 if a.quick else 5
    return a


def normwise(torch, x, ref):
    """||x - ref|| / ||ref|| in float64 (inf where x is not finite)."""
    x, ref = x.double(), ref.double()
    if not bool(torch.isfinite(x).all()):
        return math.inf
    den = float(ref.norm())
    return float((x - ref).norm()) / den if den > 0 else float(x.norm())


def run_heed(torch, heed, v, q, k, val, dout, chip, a, gpu_kernel):
    """heed: the forward (lse) once, then the backward's steady time and gradients."""
    r = {"gpu_kernel": gpu_kernel or "tensor-cores"}
    D = q.shape[-1]
    target = "cuda:" + chip
    t0 = time.perf_counter()
    forward = heed.compile(v.spec, dtype="bfloat16", head_dim=D, params=v.params or None,
                           target=target, lse=True, gpu_kernel=gpu_kernel)
    backward = heed.compile_backward(v.spec, dtype="bfloat16", head_dim=D,
                                     params=v.params or None, gpu_kernel=gpu_kernel)
    r["compile_s"] = time.perf_counter() - t0
    out, lse = forward(q, k, val, buffers=v.buffers)

    def call():
        return backward(q, k, val, out, lse, dout, buffers=v.buffers)
    grads = call()  # the first call compiles the backward's GPU kernels
    fwd.heed_synchronize(torch, heed, q.device)
    r["ms"] = fwd.time_ms(torch, call, a.warmup, a.repeat)
    fwd.heed_synchronize(torch, heed, q.device)
    return r, grads


def run_flex(torch, v, q, k, val, dout, a):
    """flex: forward + backward minus forward, and its gradients."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    B, H, S, _ = q.shape
    block_mask = None
    if v.mask is not None:
        block_mask = create_block_mask(v.mask, None, H if v.per_head else None, S, S,
                                       device=q.device)
    torch._dynamo.reset()
    flex = torch.compile(flex_attention, dynamic=False)
    qg, kg, vg = (x.detach().requires_grad_(True) for x in (q, k, val))

    def forward_only():
        with torch.no_grad():
            return flex(qg, kg, vg, score_mod=v.score, block_mask=block_mask)

    def both():
        o = flex(qg, kg, vg, score_mod=v.score, block_mask=block_mask)
        return torch.autograd.grad(o, (qg, kg, vg), dout)
    r = {}
    t0 = time.perf_counter()
    grads = both()
    torch.cuda.synchronize()
    r["compile_s"] = time.perf_counter() - t0
    r["forward_ms"] = fwd.time_ms(torch, forward_only, a.warmup, a.repeat)
    r["forward_backward_ms"] = fwd.time_ms(torch, both, a.warmup, a.repeat)
    r["ms"] = max(r["forward_backward_ms"] - r["forward_ms"], 1e-6)
    return r, grads


def gpu_main(a):
    got = fwd.torch_and_heed(gpu=True)
    if isinstance(got, int):
        return got
    torch, heed = got
    device = torch.device("cuda", 0)
    major, minor = torch.cuda.get_device_capability(device)
    chip = "sm_%d%d" % (major, minor)
    wgmma = a.wgmma == "on" or (a.wgmma == "auto" and major == 9)
    B, H, S = a.batch, a.heads, a.seq
    print("device %s (%s), B=%d H=%d S=%d bf16, backward, seed %d"
          % (torch.cuda.get_device_name(device), chip, B, H, S, a.seed))
    started = time.perf_counter()
    results = {"device": torch.cuda.get_device_name(device), "chip": chip, "B": B, "H": H,
               "S": S, "dtype": "bf16", "seed": a.seed, "torch": torch.__version__,
               "rows": []}

    def write_json():
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)
    failed = 0
    variants = fwd.make_variants(torch, a.variants, B, H, S, device, a.seed)
    for D in a.dims:
        g = torch.Generator(device=device).manual_seed(a.seed + D)
        q, k, val, dout = (torch.randn(B, H, S, D, generator=g, device=device,
                                       dtype=torch.bfloat16) for _ in range(4))
        for v in variants:
            row = {"variant": v.name, "label": v.label, "D": D}
            if a.budget is not None and time.perf_counter() - started > a.budget:
                row["not_run"] = "budget"
                results["rows"].append(row)
                write_json()
                continue
            dens = fwd.density(torch, v, H, S, device)
            useful = 2.5 * 4.0 * B * H * S * S * D * dens
            row["density"] = dens
            try:
                fr, fg = run_flex(torch, v, q, k, val, dout, a)
                fr["tflops"] = fwd.tflops(useful, fr["ms"])
                row["flex"] = fr
            except Exception as e:  # noqa: BLE001 (a broken baseline is reported)
                row["flex"] = {"error": str(e)[-400:]}
                fg = None
            for kind in [None] + (["wgmma", "wgmma-serial"] if wgmma else []):
                key = "heed" + ("_" + kind.replace("-", "_") if kind else "")
                try:
                    hr, hg = run_heed(torch, heed, v, q, k, val, dout, chip, a, kind)
                    if fg is not None:
                        errs = {n: normwise(torch, x, y)
                                for n, x, y in zip(("dq", "dk", "dv"), hg[:3], fg)}
                        hr["grad_rel_errors"] = errs
                        hr["passed"] = all(e <= a.tol for e in errs.values())
                    else:
                        hr["passed"] = all(bool(torch.isfinite(x).all()) for x in hg[:3])
                    hr["tflops"] = fwd.tflops(useful, hr["ms"]) if hr["passed"] else None
                    failed += not hr["passed"]
                except Exception as e:  # noqa: BLE001
                    hr = {"error": str(e)[-400:], "passed": False}
                    failed += 1
                row[key] = hr
            results["rows"].append(row)
            write_json()
            line = "D=%-3d %-36s density %.3f" % (D, v.label, dens)
            for key in ("heed", "heed_wgmma", "heed_wgmma_serial", "flex"):
                r = row.get(key)
                if r is None:
                    continue
                t = r.get("tflops")
                line += "  %s %s" % (key, "%.1f TF/s" % t if t else
                                     ("ERROR" if "error" in r else "FAILED"))
            print(line, flush=True)
    print()
    print("%-5s %-36s %10s %11s %11s %10s %10s" % ("D", "variant", "heed TF/s", "wgmma",
                                                   "wgmma-ser.", "flex TF/s", "heed/flex"))
    for row in results["rows"]:
        h = (row.get("heed") or {}).get("tflops")
        w = (row.get("heed_wgmma") or {}).get("tflops")
        ws = (row.get("heed_wgmma_serial") or {}).get("tflops")
        f = (row.get("flex") or {}).get("tflops")
        best = max([x for x in (h, w, ws) if x] or [0])
        print("%-5d %-36s %10s %11s %11s %10s %10s"
              % (row["D"], row["label"][:36], fwd.fmt(h), fwd.fmt(w), fwd.fmt(ws), fwd.fmt(f),
                 fwd.fmt(best / f if best and f else None, "%.2f")))
    write_json()
    return 1 if failed else 0


def reference_backward(torch, v, q, k, val, dout):
    """float64 autograd of attention(q, k, v) from the script's mask and score."""
    B, H, S, D = q.shape
    qd, kd, vd = (x.double().requires_grad_(True) for x in (q, k, val))
    s = qd @ kd.transpose(-1, -2) / math.sqrt(D)
    bi = torch.arange(B).view(B, 1, 1, 1)
    hi = torch.arange(H).view(1, H, 1, 1)
    qi = torch.arange(S).view(1, 1, S, 1)
    ki = torch.arange(S).view(1, 1, 1, S)
    if v.score is not None:
        s = v.score(s, bi, hi, qi, ki)
    if v.mask is not None:
        s = s.masked_fill(~v.mask(bi, hi, qi, ki), float("-inf"))
    p = torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)
    o = p @ vd
    return torch.autograd.grad(o, (qd, kd, vd), dout.double())


def cpu_check(a):
    """heed's CPU backward (f32, small) against float64 autograd of this script's
    definitions: a wrong definition or argument order shows up without a GPU."""
    got = fwd.torch_and_heed(gpu=False)
    if isinstance(got, int):
        return got
    torch, heed = got
    B, H, S, D = 1, 2, 256, 32
    device = torch.device("cpu")
    variants = fwd.make_variants(torch, a.variants, B, H, S, device, a.seed)
    g = torch.Generator().manual_seed(a.seed)
    q, k, val, dout = (torch.randn(B, H, S, D, generator=g) for _ in range(4))
    bad = 0
    for v in variants:
        forward = heed.compile(v.spec, head_dim=D, params=v.params or None, lse=True)
        backward = heed.compile_backward(v.spec, head_dim=D, params=v.params or None)
        out, lse = forward(q, k, val, buffers=v.buffers)
        got = backward(q, k, val, out, lse, dout, buffers=v.buffers)
        ref = reference_backward(torch, v, q, k, val, dout)
        errs = [normwise(torch, x, y) for x, y in zip(got[:3], ref)]
        ok = max(errs) < 1e-4
        bad += not ok
        print("%-40s dq %.1e dk %.1e dv %.1e  %s"
              % (v.label, errs[0], errs[1], errs[2], "ok" if ok else "MISMATCH"))
    return 1 if bad else 0


def main(argv=None):
    return fwd.run_main(parse_args, cpu_check, gpu_main, argv)


if __name__ == "__main__":
    sys.exit(main())
