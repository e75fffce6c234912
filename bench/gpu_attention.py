#!/usr/bin/env python3
"""heed against FlexAttention and SDPA on one NVIDIA GPU, in one run.

On the same bf16 inputs (default B=4 H=16 S=8192, D=64 and 128, forward) it
times, for each attention variant:
  heed     its GPU kernel through the Python binding on torch CUDA tensors
  flex     torch.compile(flex_attention) with a create_block_mask block mask
  sdpa     F.scaled_dot_product_attention, flash and cuDNN backends (full and
           causal only)
and prints useful TFLOP/s (4*B*H*Sq*Skv*D*density, the density counted
exactly from the mask), heed/flex ratios, compile times (heed: cold, memory
hit in the same process, disk hit in a new one; flex: cold), flex's
block-mask build time and heed's first-call overhead. heed's output is
checked against flex's (max abs error printed; a float32 reference on sampled
rows checks both): a figure is only printed for an output that passed.

Timing: CUDA events around each call on the current stream, after warm-up
calls; the median of --repeat calls. heed's call returns once its kernel is
queued on that stream (docs/runtime.md, "GPU launches"); heed_synchronize
after the timed calls reports an error a kernel recorded.

The raw JSON (--json) is rewritten after every row, so a run stopped by a
time limit keeps what it measured; --budget stops starting new rows after
that many seconds and records the rest as not run.

Exit codes: 0 all checks passed, 1 a check failed or an implementation broke,
77 "SKIPPED: no CUDA GPU" (no torch, or torch sees no CUDA device).
--cpu-check instead runs heed on the CPU at a small size against this
script's float32 reference built from the same mask and score definitions
given to flex (any torch, no GPU): it proves the definitions match heed's specs.
"""

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")
SPECS = os.path.join(REPO, "bench", "specs")

VARIANTS = ["full", "causal", "sliding_window", "document", "prefix_lm", "neighborhood_2d",
            "block_sparse", "alibi_causal", "softcap_causal"]


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="heed vs torch.compile(flex_attention) vs SDPA (flash, cuDNN) on one "
                    "NVIDIA GPU: bf16 forward, useful TFLOP/s, compile times, checked outputs.",
        epilog="Variants: " + ", ".join(VARIANTS) + ". Exit 77 (SKIPPED) without a CUDA GPU.")
    p.add_argument("--quick", action="store_true",
                   help="a small problem (S=1024, 1 warm-up, 3 repeats) for a fast sanity run")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset of the variants (default: all)")
    p.add_argument("--dims", default="64,128", help="head dims, comma-separated (default 64,128)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--seq", type=int, default=None, help="sequence length (default 8192; "
                   "--quick: 1024); window, prefix, document lengths scale with S/8192")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 3)")
    p.add_argument("--repeat", type=int, default=None, help="timed calls, median (default 10)")
    p.add_argument("--tol", type=float, default=3e-2,
                   help="max abs error allowed between heed and flex outputs (bf16; default 3e-2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH",
                   help="also write every result as JSON to PATH, rewritten after each row")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="start no new row after this many seconds (the rest: not run)")
    p.add_argument("--no-compile-hits", action="store_true",
                   help="skip heed's memory-hit and disk-hit compile timings")
    p.add_argument("--wgmma", choices=("auto", "on", "off"), default="auto",
                   help="also run heed's Hopper kernel (gpu_kernel='wgmma': wgmma, TMA, a "
                        "producer warpgroup), checked like the default one; auto: on sm_90 "
                        "devices (default)")
    p.add_argument("--warm-compile-cache", action="store_true",
                   help="keep torch's on-disk Inductor/Triton caches (default: a fresh one, so "
                        "flex's compile time is cold)")
    p.add_argument("--cpu-check", action="store_true",
                   help="no GPU: check the variant definitions given to flex against heed's "
                        "CPU kernels at a small size (f32), then exit")
    a = p.parse_args(argv)
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        p.error("unknown variant(s) %s; known: %s" % (", ".join(unknown), ", ".join(VARIANTS)))
    try:
        a.dims = [int(d) for d in a.dims.split(",") if d.strip()]
    except ValueError:
        p.error("--dims takes integers, e.g. 64,128")
    if a.seq is None:
        a.seq = 1024 if a.quick else 8192
    if a.warmup is None:
        a.warmup = 1 if a.quick else 3
    if a.repeat is None:
        a.repeat = 3 if a.quick else 10
    if a.seq < 64 or a.seq % 64:
        p.error("--seq must be a positive multiple of 64")
    return a


# ---- the variants: one definition drives heed, flex, the density and the reference ----


class Variant:
    """One attention variant: heed's spec (+ params, buffers) and the same
    mask/score as torch functions (flex's mask_mod/score_mod, also evaluated
    on broadcast index grids for the density and the reference)."""

    def __init__(self, name, label, spec, params=None, buffers=None, mask=None, score=None,
                 per_head=False, sdpa=None):
        self.name, self.label, self.spec = name, label, spec
        self.params = params or {}
        self.buffers = buffers or {}
        self.mask = mask          # mask_mod(b, h, q, kv) -> bool tensor, or None (all)
        self.score = score        # score_mod(score, b, h, q, kv) -> f32 tensor, or None
        self.per_head = per_head  # the mask depends on h
        self.sdpa = sdpa          # None, "full" or "causal"


# Masks and score modifiers: factories, so flex gets plain 4- and 5-argument
# functions closing over their constants and tensors.


def causal_mask():
    def mask(b, h, q, kv):
        return q >= kv
    return mask


def sliding_window_mask(w):
    def mask(b, h, q, kv):
        return (q >= kv) & (q - kv < w)
    return mask


def document_mask(doc):
    def mask(b, h, q, kv):
        return (doc[q] == doc[kv]) & (q >= kv)
    return mask


def prefix_lm_mask(n):
    def mask(b, h, q, kv):
        return (kv < n) | (q >= kv)
    return mask


def neighborhood_2d_mask(rows, cols, k):
    def axis(i, j, n):
        # NATTEN: the window of k centred on i, shifted inward at the borders.
        start = (i - k // 2).clamp(0, max(n - k, 0))
        return (j >= start) & (j < start + k)

    def mask(b, h, q, kv):
        return axis(q // cols, kv // cols, rows) & axis(q % cols, kv % cols, cols)
    return mask


def block_sparse_mask(layout, block):
    def mask(b, h, q, kv):
        return layout[h, q // block, kv // block] != 0
    return mask


def alibi_score(slopes):
    def score_mod(score, b, h, q, kv):
        return score + slopes[h] * (kv - q).float()
    return score_mod


def softcap_score(cap):
    def score_mod(score, b, h, q, kv):
        return cap * (score / cap).tanh()
    return score_mod


def make_variants(torch, names, B, H, S, device, seed):
    """The variants in `names` for sequence length S, their buffers on `device`.
    Window, prefix and document lengths are the issue's at S = 8192 and scale
    with S; the neighborhood grid is 64 x 128 there (else ? x 32)."""
    g = torch.Generator().manual_seed(seed)
    scale = S / 8192.0
    window = max(16, int(1024 * scale))
    prefix = max(16, int(2048 * scale))
    doc_lo, doc_hi = max(8, int(256 * scale)), max(16, int(2048 * scale))
    cols = 128 if S >= 4096 else 32
    rows = S // cols
    nb_window = 17
    block = 128 if S >= 1024 else 32
    cap = 20.0

    out = []
    for name in names:
        if name == "full":
            out.append(Variant(name, "full", os.path.join(SPECS, "full.attn"), sdpa="full"))
        elif name == "causal":
            out.append(Variant(name, "causal", os.path.join(EXAMPLES, "causal.attn"),
                               mask=causal_mask(), sdpa="causal"))
        elif name == "sliding_window":
            out.append(Variant(name, "sliding window %d" % window,
                               os.path.join(EXAMPLES, "sliding_window.attn"),
                               params={"window": window}, mask=sliding_window_mask(window)))
        elif name == "document":
            lengths, total = [], 0
            while total < S:
                n = int(torch.randint(doc_lo, doc_hi + 1, (1,), generator=g))
                lengths.append(min(n, S - total))
                total += lengths[-1]
            doc = torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32),
                                          torch.tensor(lengths)).to(device)
            out.append(Variant(name, "document %d..%d (%d docs)" % (doc_lo, doc_hi, len(lengths)),
                               os.path.join(EXAMPLES, "document.attn"),
                               buffers={"doc_ids": doc}, mask=document_mask(doc)))
        elif name == "prefix_lm":
            out.append(Variant(name, "prefix-LM %d" % prefix,
                               os.path.join(EXAMPLES, "prefix_lm.attn"),
                               params={"prefix": prefix}, mask=prefix_lm_mask(prefix)))
        elif name == "neighborhood_2d":
            out.append(Variant(name, "2-D neighborhood %dx%d on %dx%d"
                               % (nb_window, nb_window, rows, cols),
                               os.path.join(SPECS, "neighborhood_2d_grid.attn"),
                               params={"rows": rows, "cols": cols, "window": nb_window},
                               mask=neighborhood_2d_mask(rows, cols, nb_window)))
        elif name == "block_sparse":
            nb = S // block
            # Exactly a quarter of each block row: the diagonal block (no query
            # without keys) and nb/4 - 1 others, chosen at random per head.
            layout = torch.zeros(H, nb, nb, dtype=torch.int8)
            for h in range(H):
                for i in range(nb):
                    others = [j for j in torch.randperm(nb, generator=g).tolist() if j != i]
                    for j in [i] + others[:max(nb // 4 - 1, 0)]:
                        layout[h, i, j] = 1
            layout = layout.to(device)
            out.append(Variant(name, "block-sparse 25%% (%dx%d blocks)" % (block, block),
                               os.path.join(SPECS, "block_sparse_sized.attn"),
                               params={"block": block, "blocks": nb},
                               buffers={"layout": layout}, mask=block_sparse_mask(layout, block),
                               per_head=True))
        elif name == "alibi_causal":
            slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)],
                                  dtype=torch.float32).to(device)
            out.append(Variant(name, "ALiBi + causal", os.path.join(EXAMPLES, "alibi.attn"),
                               buffers={"slopes": slopes}, mask=causal_mask(),
                               score=alibi_score(slopes)))
        elif name == "softcap_causal":
            out.append(Variant(name, "softcap %g + causal" % cap,
                               os.path.join(EXAMPLES, "softcap.attn"),
                               params={"cap": cap}, mask=causal_mask(),
                               score=softcap_score(cap)))
    return out


def density(torch, v, H, S, device):
    """The fraction of (h, q, kv) pairs the mask keeps, counted exactly."""
    if v.mask is None:
        return 1.0
    kv = torch.arange(S, device=device).view(1, S)
    heads = range(H) if v.per_head else [0]
    chunk = max(1, (1 << 24) // S)
    kept = 0
    for h in heads:
        ht = torch.tensor(h, device=device)
        for q0 in range(0, S, chunk):
            q = torch.arange(q0, min(q0 + chunk, S), device=device).view(-1, 1)
            kept += int(v.mask(torch.tensor(0, device=device), ht, q, kv).sum())
    return kept / (len(heads) * S * S)


def reference_rows(torch, v, q, k, v_, rows, b, h):
    """float32 attention for query `rows` of (b, h), from the same mask and score."""
    D = q.shape[-1]
    S = k.shape[2]
    device = q.device
    qr = q[b, h, rows].float()
    s = (qr @ k[b, h].float().t()) / math.sqrt(D)
    bt, ht = torch.tensor(b, device=device), torch.tensor(h, device=device)
    qi = rows.view(-1, 1)
    kvi = torch.arange(S, device=device).view(1, -1)
    if v.score is not None:
        s = v.score(s, bt, ht, qi, kvi)
    if v.mask is not None:
        s = s.masked_fill(~v.mask(bt, ht, qi, kvi), float("-inf"))
    p = torch.softmax(s, dim=-1)
    p = torch.nan_to_num(p, nan=0.0)  # a query that sees no key: 0
    return p @ v_[b, h].float()


def sampled_error(torch, v, q, k, val, out, seed):
    """max |out - reference| over 128 random query rows of two (b, h) pairs."""
    g = torch.Generator().manual_seed(seed + 1)
    B, H, S, _ = q.shape
    worst = 0.0
    for b, h in ((0, 0), (B - 1, H - 1)):
        rows = torch.randperm(S, generator=g)[:128].to(q.device)
        ref = reference_rows(torch, v, q, k, val, rows, b, h)
        worst = max(worst, float((out[b, h, rows].float() - ref).abs().max()))
    return worst


# ---- timing ------------------------------------------------------------------------


def time_ms(torch, fn, warmup, repeat):
    """Median over `repeat` calls of the CUDA-event time of fn() on the current stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def tflops(flops, ms):
    return flops / (ms * 1e-3) / 1e12 if ms and ms > 0 else None


# ---- the run -----------------------------------------------------------------------


def heed_synchronize(torch, heed, device):
    """Waits for torch's current stream and raises the error a heed kernel
    recorded on it (heed_synchronize: launches return once queued)."""
    stream = torch.cuda.current_stream(device).cuda_stream
    heed.synchronize("cuda", device.index or 0, stream)


# Compiles in a fresh process against the same disk cache: the disk hit, timed
# around heed.compile alone (the interpreter and the library load excluded).
DISK_HIT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import heed
a = json.loads(sys.argv[2])
t0 = time.perf_counter()
heed.compile(a["spec"], dtype="bfloat16", head_dim=a["D"], params=a["params"] or None,
             target=a["target"])
print(json.dumps({"disk_hit_s": time.perf_counter() - t0, "stats": heed.cache_stats()}))
"""


def compile_hits(heed, v, D, target, r):
    """heed's memory hit (this process) and disk hit (a new one), into r."""
    import subprocess
    t0 = time.perf_counter()
    heed.compile(v.spec, dtype="bfloat16", head_dim=D, params=v.params or None, target=target)
    r["memory_hit_s"] = time.perf_counter() - t0
    args = json.dumps({"spec": v.spec, "D": D, "params": v.params, "target": target})
    done = subprocess.run([sys.executable, "-c", DISK_HIT, os.path.join(REPO, "python"), args],
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        got = json.loads(done.stdout.strip().splitlines()[-1])
        r["disk_hit_s"] = got["disk_hit_s"]
        r["disk_hit_compiles"] = got["stats"]["compiles"]  # 0 when it was a hit
    else:
        r["disk_hit_error"] = done.stderr.strip()[-400:]


def run_heed(torch, heed, v, q, k, val, chip, a, gpu_kernel=None, patch_tiling=True):
    """heed: cold compile for this GPU's chip, first call, steady time, output.
    gpu_kernel: None (the default kernel) or which one ('wgmma'). patch_tiling:
    False for flat tiles where the default takes patches of a token grid."""
    r = {}
    D = q.shape[-1]
    target = "cuda:" + chip
    t0 = time.perf_counter()
    kernel = heed.compile(v.spec, dtype="bfloat16", head_dim=D, params=v.params or None,
                          target=target, gpu_kernel=gpu_kernel, patch_tiling=patch_tiling)
    r["compile_s"] = time.perf_counter() - t0
    if gpu_kernel:
        r["gpu_kernel"] = gpu_kernel
    if not patch_tiling:
        r["patch_tiling"] = False
    elif not gpu_kernel and not a.no_compile_hits:
        compile_hits(heed, v, D, target, r)
    out = torch.full_like(q, float("nan"))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    kernel(q, k, val, out=out, buffers=v.buffers)
    torch.cuda.synchronize()
    first_s = time.perf_counter() - t0
    r["ms"] = time_ms(torch, lambda: kernel(q, k, val, out=out, buffers=v.buffers),
                      a.warmup, a.repeat)
    r["first_call_overhead_ms"] = first_s * 1e3 - r["ms"]
    heed_synchronize(torch, heed, q.device)
    out.fill_(float("nan"))  # the output checked is the one of a call of its own
    kernel(q, k, val, out=out, buffers=v.buffers)
    heed_synchronize(torch, heed, q.device)
    return r, out


def cell(r):
    """A TFLOP/s table cell: the figure, WRONG (failed its check) or ERROR."""
    if r.get("check") == "FAILED":
        return "WRONG"
    return fmt(r.get("tflops")) if "error" not in r else "ERROR"


def run_wgmma_rows(torch, heed, a, variants, results, chip, B, H, S, device, started,
                   not_run, write_json, kind="wgmma", only=None):
    """heed's Hopper kernel (gpu_kernel=kind, 'wgmma' or one of its forms) on
    every row already run (or the variants named in `only`), the same inputs
    (same seed), checked against the sampled float64 reference (flex's output
    is gone by now), recorded as the row's `heed_wgmma` ('heed_' + kind with
    '-' as '_' for another form). 'wgmma-grid' is the kernel with a block per
    work item instead of persistent workers: its rows time what the
    persistent walk gains (the ratio column is then wgmma-grid/wgmma)."""
    key = "heed_" + kind.replace("-", "_")
    base = "heed_wgmma" if kind != "wgmma" else "heed"
    by_name = {v.name: v for v in variants}
    print()
    print("## heed's Hopper kernel (gpu_kernel='%s': wgmma, TMA, a producer warpgroup)" % kind)
    print()
    print("| variant | D | heed %s TFLOP/s | %s TFLOP/s | flex TFLOP/s | ratio | "
          "compile s | max abs vs f32 ref |" % (kind, base.replace("_", " ")))
    print("| --- " * 8 + "|")
    for D in a.dims:
        rows = [r for r in results if r["D"] == D and (only is None or r["variant"] in only)]
        if not rows:
            continue
        g = torch.Generator(device=device).manual_seed(a.seed + D)
        q, k, val = (torch.randn(B, H, S, D, device=device, dtype=torch.bfloat16, generator=g)
                     for _ in range(3))
        for row in rows:
            v = by_name[row["variant"]]
            if a.budget is not None and time.perf_counter() - started > a.budget:
                row[key] = {"not_run": "the budget is spent"}
                not_run.append({"variant": v.name, "D": D, "kernel": kind})
                continue
            out = None
            try:
                r, out = run_heed(torch, heed, v, q, k, val, chip, a, kind)
                r["nan"] = bool(torch.isnan(out).any())
                r["ref_error"] = sampled_error(torch, v, q, k, val, out, a.seed)
                r["check"] = "PASSED" if not r["nan"] and r["ref_error"] <= a.tol else "FAILED"
                r["tflops"] = (tflops(row["useful_flops"], r["ms"])
                               if r["check"] == "PASSED" else None)
            except Exception as e:
                r = {"error": "%s: %s" % (type(e).__name__, e)}
            finally:
                del out
            row[key] = r
            h = row.get(base, {})
            ratio = r["tflops"] / h["tflops"] if r.get("tflops") and h.get("tflops") else None
            print("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
                row["label"], D, cell(r), cell(h), cell(row.get("flex", {})),
                fmt(ratio, "%.2fx"), fmt(r.get("compile_s"), "%.2f"),
                fmt(r.get("ref_error"), "%.2e")))
            if "heed_flat_tiles" in row:
                ft = row["heed_flat_tiles"]
                print("|   (heed, flat tiles) | | %s | | | | | %s | | %s | | | | | | |"
                      % (cell(ft), fmt(ft.get("ms"), "%.3f"), fmt(ft.get("compile_s"), "%.2f")))
            sys.stdout.flush()
            write_json()
        del q, k, val
        torch.cuda.empty_cache()


def run_flex(torch, v, q, k, val, a):
    """flex: block mask build time, cold compile (fresh dynamo state), steady time."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    r = {}
    B, H, S, _ = q.shape
    block_mask = None
    if v.mask is not None:
        def build():
            return create_block_mask(v.mask, None, H if v.per_head else None, S, S,
                                     device=q.device)
        t0 = time.perf_counter()
        block_mask = build()
        torch.cuda.synchronize()
        r["block_mask_first_ms"] = (time.perf_counter() - t0) * 1e3
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            build()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        r["block_mask_ms"] = statistics.median(times)
    torch._dynamo.reset()
    flex = torch.compile(flex_attention, dynamic=False)

    def call():
        return flex(q, k, val, score_mod=v.score, block_mask=block_mask)
    t0 = time.perf_counter()
    call()
    torch.cuda.synchronize()
    r["compile_s"] = time.perf_counter() - t0
    r["ms"] = time_ms(torch, call, a.warmup, a.repeat)
    return r, call()


def run_sdpa(torch, v, q, k, val, a, backend_name):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    causal = v.sdpa == "causal"
    with sdpa_kernel([backend[backend_name]]):
        def call():
            return F.scaled_dot_product_attention(q, k, val, is_causal=causal)
        ms = time_ms(torch, call, a.warmup, a.repeat)
        out = call()
    return {"ms": ms}, out


def fmt(x, spec="%.1f", none="-"):
    return none if x is None else spec % x


def gpu_main(a):
    if not a.warm_compile_cache:
        # Before torch is imported: flex's compile time is that of a fresh machine.
        cache = tempfile.mkdtemp(prefix="heed-bench-inductor-")
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", cache)
        os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(cache, "triton"))
    got = torch_and_heed(gpu=True)
    if isinstance(got, int):
        return got
    torch, heed = got
    for knob in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 1024)

    B, H, S = a.batch, a.heads, a.seq
    device = torch.device("cuda")
    props = torch.cuda.get_device_properties(device)
    major, minor = torch.cuda.get_device_capability(device)
    chip = "sm_%d%d" % (major, minor)
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    info = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "device": props.name, "chip": chip, "torch": torch.__version__,
        "cuda": torch.version.cuda, "triton": triton_version, "heed": heed.version(),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "B": B, "H": H, "S": S, "dtype": "bfloat16", "warmup": a.warmup, "repeat": a.repeat,
    }
    print("# %s, %s (%s), torch %s, CUDA %s, Triton %s, heed %s" % (
        info["date"], props.name, chip, info["torch"], info["cuda"], triton_version,
        info["heed"]))
    print("# command: %s" % info["command"])
    print("# bf16 forward, B=%d H=%d S=%d; median of %d calls after %d warm-up; TFLOP/s of "
          "useful work 4*B*H*S*S*D*density" % (B, H, S, a.repeat, a.warmup))

    # heed's Hopper kernel (issue 16), on sm_90: its rows come after every
    # other row, so that a kernel that hangs takes none of them with it.
    wgmma = a.wgmma == "on" or (a.wgmma == "auto" and major == 9)
    info["heed_kernels"] = ["heed"] + (["heed_wgmma", "heed_wgmma_grid", "heed_wgmma_serial"]
                                       if wgmma else [])
    variants = make_variants(torch, a.variants, B, H, S, device, a.seed)
    densities = {v.name: density(torch, v, H, S, device) for v in variants}
    results, failed = [], False
    started = time.perf_counter()
    not_run = []

    def write_json():
        if not a.json:
            return
        tmp = a.json + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"info": info, "results": results, "not_run": not_run,
                       "complete": not not_run and len(results) == len(a.dims) * len(variants)},
                      fh, indent=1)
        os.replace(tmp, a.json)

    write_json()
    for D in a.dims:
        g = torch.Generator(device=device).manual_seed(a.seed + D)
        q, k, val = (torch.randn(B, H, S, D, device=device, dtype=torch.bfloat16, generator=g)
                     for _ in range(3))
        print()
        print("## D=%d" % D)
        print()
        print("| variant | density | heed TFLOP/s | flex TFLOP/s | heed/flex | sdpa flash | "
              "sdpa cuDNN | heed ms | flex ms | heed compile s | flex compile s | "
              "flex block mask ms | heed first-call overhead ms | max abs heed-flex | "
              "max abs vs f32 ref (heed / flex) |")
        print("| --- " * 15 + "|")
        for v in variants:
            if a.budget is not None and time.perf_counter() - started > a.budget:
                not_run.append({"variant": v.name, "D": D})
                print("| %s | not run: the %g s budget is spent |" % (v.label, a.budget))
                continue
            dens = densities[v.name]
            flops = 4.0 * B * H * S * S * D * dens
            row = {"variant": v.name, "label": v.label, "D": D, "density": dens,
                   "useful_flops": flops}
            out_f = out_h = None
            try:
                row["flex"], out_f = run_flex(torch, v, q, k, val, a)
                row["flex"]["tflops"] = tflops(flops, row["flex"]["ms"])
                row["flex"]["ref_error"] = sampled_error(torch, v, q, k, val, out_f, a.seed)
            except Exception as e:  # report and go on: one broken variant is not the run
                row["flex"] = {"error": "%s: %s" % (type(e).__name__, e)}
                failed = True
            try:
                row["heed"], out_h = run_heed(torch, heed, v, q, k, val, chip, a)
                h = row["heed"]
                h["nan"] = bool(torch.isnan(out_h).any())
                h["ref_error"] = sampled_error(torch, v, q, k, val, out_h, a.seed)
                if out_f is not None:
                    h["flex_error"] = float((out_h.float() - out_f.float()).abs().max())
                # Against flex when flex ran, else against the sampled reference.
                err = h.get("flex_error", h["ref_error"])
                h["check"] = "PASSED" if not h["nan"] and err <= a.tol else "FAILED"
                h["tflops"] = tflops(flops, h["ms"]) if h["check"] == "PASSED" else None
                failed |= h["check"] != "PASSED"
            except Exception as e:
                row["heed"] = {"error": "%s: %s" % (type(e).__name__, e)}
                failed = True
            if v.name == "neighborhood_2d":
                # The default kernel tiles the grid by patches (docs/passes.md,
                # "Patch tiling"): the same kernel with flat tiles beside it.
                try:
                    r, out_p = run_heed(torch, heed, v, q, k, val, chip, a, patch_tiling=False)
                    err = float((out_p.float() - out_h.float()).abs().max()) \
                        if out_h is not None else float("nan")
                    r["patch_error"] = err
                    r["check"] = "PASSED" if err <= a.tol else "FAILED"
                    r["tflops"] = tflops(flops, r["ms"])
                    row["heed_flat_tiles"] = r
                    del out_p
                except Exception as e:
                    row["heed_flat_tiles"] = {"error": "%s: %s" % (type(e).__name__, e)}
            for backend in ("flash", "cudnn"):
                if v.sdpa is None:
                    continue
                try:
                    r, out_s = run_sdpa(torch, v, q, k, val, a, backend)
                    r["tflops"] = tflops(flops, r["ms"])
                    if out_f is not None:
                        r["flex_error"] = float((out_s.float() - out_f.float()).abs().max())
                    row["sdpa_" + backend] = r
                except Exception as e:
                    row["sdpa_" + backend] = {"error": "%s: %s" % (type(e).__name__, e)}
            del out_f, out_h
            results.append(row)
            h, f = row["heed"], row["flex"]
            ratio = (h["tflops"] / f["tflops"]) if h.get("tflops") and f.get("tflops") else None
            row["heed_over_flex"] = ratio
            heed_cell = cell(h)
            print("| %s | %.4f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | "
                  "%s / %s |" % (
                      v.label, dens, heed_cell,
                      fmt(f.get("tflops")) if "error" not in f else "ERROR",
                      fmt(ratio, "%.2fx"),
                      fmt(row.get("sdpa_flash", {}).get("tflops")),
                      fmt(row.get("sdpa_cudnn", {}).get("tflops")),
                      fmt(h.get("ms"), "%.3f"), fmt(f.get("ms"), "%.3f"),
                      fmt(h.get("compile_s"), "%.2f"), fmt(f.get("compile_s"), "%.2f"),
                      fmt(f.get("block_mask_ms"), "%.2f"),
                      fmt(h.get("first_call_overhead_ms"), "%.1f"),
                      fmt(h.get("flex_error"), "%.2e"),
                      fmt(h.get("ref_error"), "%.2e"), fmt(f.get("ref_error"), "%.2e")))
            sys.stdout.flush()
            write_json()
        del q, k, val
        torch.cuda.empty_cache()
    if wgmma:
        run_wgmma_rows(torch, heed, a, variants, results, chip, B, H, S, device, started,
                       not_run, write_json)
        # The persistent workers against a block per item, where they differ
        # (the default kernel fits them: D = 64 for these two).
        run_wgmma_rows(torch, heed, a, variants, results, chip, B, H, S, device, started,
                       not_run, write_json, kind="wgmma-grid", only=("causal", "full"))
        # The softmax overlap against persistence where ptxas gives only one
        # of them (D = 128: the default fit is overlapped with a block per
        # item; without the overlap the kernel stays persistent; docs/passes.md).
        run_wgmma_rows(torch, heed, a, variants, results, chip, B, H, S, device, started,
                       not_run, write_json, kind="wgmma-serial",
                       only=("causal", "full", "sliding_window"))
        failed |= any(r.get(key, {}).get("check") == "FAILED" or "error" in r.get(key, {})
                      for r in results
                      for key in ("heed_wgmma", "heed_wgmma_grid", "heed_wgmma_serial"))
    errors = [(r["variant"], r["D"], impl, r[impl]["error"]) for r in results
              for impl in ("heed", "heed_wgmma", "heed_wgmma_grid", "heed_wgmma_serial", "flex",
                           "sdpa_flash",
                           "sdpa_cudnn")
              if impl in r and "error" in r[impl]]
    if errors:
        print()
        for name, D, impl, msg in errors:
            print("error: %s D=%d %s: %s" % (name, D, impl, msg))
    wrong = [(r["variant"], r["D"], impl) for r in results
             for impl in ("heed", "heed_wgmma", "heed_wgmma_grid", "heed_wgmma_serial")
             if r.get(impl, {}).get("check") == "FAILED"]
    for name, D, impl in wrong:
        print("FAILED: %s %s D=%d differs from flex by more than %g (or NaN); no figure "
              "posted" % (impl.replace("_", " "), name, D, a.tol))
    if a.json:
        write_json()
        print("wrote %s" % a.json)
    if heed_rows := [r for r in results if "compile_s" in r.get("heed", {})]:
        cold = statistics.median(r["heed"]["compile_s"] for r in heed_rows)
        print("heed compile, median over %d kernels: cold %.3f s" % (len(heed_rows), cold) +
              "".join(", %s %.4f s" % (name, statistics.median(r["heed"][key] for r in heed_rows))
                      for name, key in (("memory hit", "memory_hit_s"), ("disk hit", "disk_hit_s"))
                      if all(key in r["heed"] for r in heed_rows)))
    if not_run:
        print("NOT RUN (budget): %s" % ", ".join(
            "%s D=%d%s" % (n["variant"], n["D"], " (%s)" % n["kernel"] if n.get("kernel") else "")
            for n in not_run))
    return 1 if failed or not_run else 0


def torch_and_heed(gpu):
    """(torch, heed) for a run, or the exit status after printing why not: 77
    (SKIPPED) without torch or, `gpu`, without a CUDA GPU; 1 where heed does not load."""
    try:
        import torch
    except ImportError:
        print("SKIPPED: no CUDA GPU (torch is not installed)" if gpu
              else "SKIPPED: --cpu-check needs torch")
        return 77
    if gpu and (not torch.cuda.is_available() or getattr(torch.version, "hip", None)):
        print("SKIPPED: no CUDA GPU (torch %s sees none)" % torch.__version__)
        return 77
    sys.path.insert(0, os.path.join(REPO, "python"))
    try:
        import heed
    except ImportError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return torch, heed


def cpu_check(a):
    """heed's CPU kernels (f32, small) against this script's reference from the
    same definitions flex gets: a wrong definition shows up here, without a GPU."""
    got = torch_and_heed(gpu=False)
    if isinstance(got, int):
        return got
    torch, heed = got
    B, H, S, D = 1, 4, 1024, 32
    device = torch.device("cpu")
    variants = make_variants(torch, a.variants, B, H, S, device, a.seed)
    g = torch.Generator().manual_seed(a.seed)
    q, k, val = (torch.randn(B, H, S, D, generator=g) for _ in range(3))
    bad = 0
    for v in variants:
        kernel = heed.compile(v.spec, head_dim=D, params=v.params or None)
        out = kernel(q, k, val, buffers=v.buffers)
        err = sampled_error(torch, v, q, k, val, out, a.seed)
        dens = density(torch, v, H, S, device)
        ok = err < 1e-4
        bad += not ok
        print("%-40s density %.4f  max abs error vs reference %.2e  %s"
              % (v.label, dens, err, "ok" if ok else "MISMATCH"))
    return 1 if bad else 0


def run_main(parse, cpu, gpu, argv=None):
    """A benchmark script's main: its arguments, then --cpu-check's run or the GPU's."""
    a = parse(sys.argv[1:] if argv is None else argv)
    return cpu(a) if a.cpu_check else gpu(a)


def main(argv=None):
    return run_main(parse_args, cpu_check, gpu_main, argv)


if __name__ == "__main__":
    sys.exit(main())
