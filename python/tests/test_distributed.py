#!/usr/bin/env python3
"""Tests of heed.distributed: ring and all-gather attention over 4 processes on the CPU.

Run as a script, it starts itself under ``mpirun --allow-run-as-root --oversubscribe -np
4`` (the mpi4py communicator), and, where torch is importable, again with torch.distributed
(gloo) process groups. Every rank draws the same global inputs from a seed rank 0 prints,
runs causal, sliding window, document (and ALiBi + causal) variants with contiguous and
zig-zag shards, and compares its output shard with the one-process heed result (f32
tolerance) and with a float64 reference. Rank 0 checks the counts of skipped shard pairs
(a causal ring with contiguous shards skips R(R-1)/2 of R^2) and that every pair the host
check skipped is one the compiled classifier also finds empty (visited_blocks == 0).
Without mpirun or mpi4py: SKIPPED (exit 77). Also some one-process tests of the pieces
(shards, the host check's soundness against brute force).
"""

import argparse
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import unittest

import heed_testing
from heed_testing import HeedTestCase, make_rng, np, randn, reference

heed_testing.require(__name__)

import heed  # noqa: E402
from heed import distributed as hd  # noqa: E402

RANKS = 4


def _have_mpi():
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (Debian: python3-mpi4py)"
    if shutil.which("mpirun") is None:
        return "mpirun is not installed (Debian: openmpi-bin)"
    return None


def _have_torch_distributed():
    try:
        import torch.distributed as dist
    except ImportError:
        return "torch is not installed"
    if not dist.is_available() or not dist.is_gloo_available():
        return "torch.distributed with gloo is not available"
    return None


# ---- the worker (one rank) -------------------------------------------------------------


def _variants(S, H, doc, slopes):
    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    def sliding(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < S // 8)

    def document(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

    def alibi(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (kv_idx - q_idx)

    return [
        ("causal", causal, None, lambda b, h, q, kv: q >= kv, None),
        ("sliding", sliding, None, lambda b, h, q, kv: (q >= kv) & (q - kv < S // 8), None),
        ("document", document, None, lambda b, h, q, kv: (doc[q] == doc[kv]) & (q >= kv), None),
        ("alibi", causal, alibi, lambda b, h, q, kv: q >= kv,
         lambda s, b, h, q, kv: s + slopes.astype(np.float64)[h] * (kv - q)),
    ]


def worker(backend):
    if backend == "mpi":
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        rank, size = comm.Get_rank(), comm.Get_size()
        seed = comm.bcast(int.from_bytes(os.urandom(4), "little") if rank == 0 else None)

        def gather(x):
            return comm.gather(x)
        wrap = np.asarray
    else:
        import torch
        import torch.distributed as dist
        rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
        size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
        dist.init_process_group("gloo", init_method=os.environ["HEED_TEST_INIT"], rank=rank,
                                world_size=size)
        comm = dist.new_group(list(range(size)))  # a group, not only the default one
        box = [int.from_bytes(os.urandom(4), "little") if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        seed = box[0]

        def gather(x):
            out = [None] * size
            dist.all_gather_object(out, x)
            return out if rank == 0 else None
        wrap = torch.from_numpy
    if rank == 0:
        print("[%s] seed=%d ranks=%d" % (backend, seed, size), flush=True)
    rng = np.random.default_rng(seed)
    B, H, S, D = 2, 3, 16 * 2 * size * 3, 32  # 384 tokens: 96 per rank, 48 per zig-zag chunk
    q, k, v = (randn(rng, (B, H, S, D)) for _ in range(3))
    lengths = rng.integers(20, 120, size=12)
    doc = np.repeat(np.arange(12), lengths)[:S]
    doc = np.concatenate([doc, np.full(S - len(doc), 12)]).astype(np.int32)
    slopes = rng.uniform(0.05, 0.5, size=H).astype(np.float32)
    failures = []
    report = []
    for name, mask_mod, score_mod, ref_mask, ref_score in _variants(S, H, doc, slopes):
        whole, whole_lse = heed.flex_attention(
            q, k, v, score_mod=score_mod, block_mask=heed.create_block_mask(mask_mod, B, H, S, S),
            return_lse=True)
        want, want_lse = reference(q, k, v, ref_mask, score_fn=ref_score)
        for fn in (hd.ring_attention, hd.allgather_attention):
            for sharding in ("contiguous", "zigzag"):
                stats = {}
                qs, ks, vs = (wrap(np.ascontiguousarray(hd.shard(x, size, rank, sharding)))
                              for x in (q, k, v))
                out, lse = fn(qs, ks, vs, mask_mod, comm, score_mod=score_mod,
                              sharding=sharding, return_lse=True, num_threads=1, stats=stats)
                out, lse = np.asarray(out), np.asarray(lse)
                label = "%s %s %s" % (fn.__name__, sharding, name)
                mine = hd.shard(whole, size, rank, sharding)
                err_one = float(np.abs(out - mine).max())
                err_ref = float(np.abs(out - hd.shard(want, size, rank, sharding)).max())
                lse_ok = np.array_equal(np.isneginf(lse),
                                        np.isneginf(hd.shard(whole_lse, size, rank, sharding)))
                finite = np.isfinite(lse)
                err_lse = float(np.abs(lse[finite] - hd.shard(whole_lse, size, rank, sharding)
                                       [finite]).max()) if finite.any() else 0.0
                if np.isnan(out).any() or err_one > 2e-5 or err_ref > 1e-4 or not lse_ok \
                        or err_lse > 2e-5:
                    failures.append("%s on rank %d: |out - one process| %.3g, |out - float64| "
                                    "%.3g, lse %.3g%s" % (label, rank, err_one, err_ref, err_lse,
                                                         "" if lse_ok else ", -inf rows differ"))
                report.append((label, stats, err_one, err_ref))
        # The host check against the compiled classifier: every pair it skips, the
        # kernel (with global positions) visits no block of.
        if rank == 0:
            failures += _check_skips(mask_mod, score_mod, q, k, v, size)
    all_reports = gather((rank, report, failures))
    if rank == 0:
        bad = [f for _, _, fs in all_reports for f in fs]
        totals = {}
        for _, rep, _ in all_reports:
            for label, stats, e1, e2 in rep:
                t = totals.setdefault(label, {"pairs": 0, "skipped": 0, "runs": 0,
                                              "err_one": 0.0, "err_ref": 0.0, "per_rank": []})
                t["pairs"] += stats["pairs"]
                t["skipped"] += stats["skipped"]
                t["runs"] += stats["kernel_runs"]
                t["per_rank"].append(stats["kernel_runs"])
                t["err_one"] = max(t["err_one"], e1)
                t["err_ref"] = max(t["err_ref"], e2)
        print("%-36s %6s %8s %16s %12s %12s" % ("[%s] run" % backend, "pairs", "skipped",
                                               "runs per rank", "|-one proc|", "|-float64|"))
        for label, t in totals.items():
            print("%-36s %6d %8d %16s %12.2g %12.2g" % (label, t["pairs"], t["skipped"],
                                                      t["per_rank"], t["err_one"], t["err_ref"]))
        R = size
        expect = {  # skipped pairs for causal masks, by construction
            "ring_attention contiguous causal": R * (R - 1) // 2,
            "ring_attention zigzag causal": (2 * R) * (2 * R - 1) // 2,
            "ring_attention contiguous alibi": R * (R - 1) // 2,
        }
        for label, n in expect.items():
            if totals[label]["skipped"] != n:
                bad.append("%s skipped %d pairs, expected %d" % (label, totals[label]["skipped"],
                                                                  n))
        if totals["ring_attention contiguous sliding"]["skipped"] < R * (R - 1) // 2 + 1:
            bad.append("the sliding window ring skipped too few pairs")
        zig = totals["ring_attention zigzag causal"]["per_rank"]
        if max(zig) != min(zig):
            bad.append("zig-zag causal is not balanced: kernel runs per rank %s" % zig)
        for f in bad:
            print("FAILED: " + f, flush=True)
        print("[%s] %s" % (backend, "FAILED" if bad else "PASSED"), flush=True)
        return 1 if bad else 0
    return 0


def _check_skips(mask_mod, score_mod, q, k, v, size):
    """Every chunk pair the host check skips, the kernel finds empty too."""
    failures = []
    S = q.shape[2]
    B, H = q.shape[0], q.shape[1]
    var = hd._Variant(mask_mod, score_mod, S, q)
    kernel = heed._kernels.kernel_for(q, v, var.text, True)
    chunk = S // (2 * size)
    missed = 0
    for i in range(2 * size):
        for j in range(2 * size):
            qr, kr = (i * chunk, (i + 1) * chunk), (j * chunk, (j + 1) * chunk)
            pos = np.array([qr[0], kr[0], 0, 0], np.int64)
            kernel.run(q[:, :, qr[0]:qr[1]], k[:, :, kr[0]:kr[1]], v[:, :, kr[0]:kr[1]],
                       buffers=[pos] + var.buffers)
            empty_kernel = kernel.last_stats["visited_blocks"] == 0
            empty_host = hd.pair_is_empty(var.mask, qr, kr, B, H)
            if empty_host and not empty_kernel:
                failures.append("pair q%s kv%s: skipped by the host check, visited by the "
                                "kernel" % (qr, kr))
            missed += empty_kernel and not empty_host
    print("  host check vs classifier: %d chunk pairs the kernel finds empty that the host "
          "check does not skip" % missed, flush=True)
    return failures


# ---- the driver and one-process tests -----------------------------------------------------


class ShardTest(HeedTestCase):

    def test_shard_unshard(self):
        rng = make_rng(self)
        x = randn(rng, (2, 3, 48, 4))
        for sharding in ("contiguous", "zigzag"):
            shards = [hd.shard(x, 4, r, sharding) for r in range(4)]
            self.assertEqual(shards[0].shape, (2, 3, 12, 4))
            np.testing.assert_array_equal(hd.unshard(shards, sharding), x)
        self.assertEqual(hd.shard_chunks(48, 4, 1, "zigzag"), [(6, 6), (36, 6)])
        with self.assertRaises(heed.InvalidArgumentError):
            hd.shard_chunks(50, 4, 0, "zigzag")

    def test_host_check_is_sound(self):
        # Against brute force on random boxes: a box declared empty has no visible pair.
        rng = make_rng(self)
        S = 200
        doc = np.sort(rng.integers(0, 6, size=S)).astype(np.int64)
        table = rng.integers(-3, 3, size=(4, 50)).astype(np.int32)
        masks = [
            (lambda b, h, q, kv: q >= kv, lambda b, h, q, kv: q >= kv),
            (lambda b, h, q, kv: (q >= kv) & (q - kv < 17),
             lambda b, h, q, kv: (q >= kv) & (q - kv < 17)),
            (lambda b, h, q, kv: (doc[q] == doc[kv]) & (q // 7 % 3 != kv % 5),
             lambda b, h, q, kv: (doc[q] == doc[kv]) & (q // 7 % 3 != kv % 5)),
            (lambda b, h, q, kv: (table[h, q // 4] + kv // 9 > 5) | (abs(q - kv) * 2 < h),
             lambda b, h, q, kv: (table[h, q // 4] + kv // 9 > 5) | (np.abs(q - kv) * 2 < h)),
        ]
        skipped = 0
        for mask_mod, ref in masks:
            traced = hd.flex._trace.trace_mask(mask_mod).value
            for _ in range(150):
                q0, k0 = (int(x) for x in rng.integers(0, S - 1, size=2))
                q1, k1 = q0 + int(rng.integers(1, S - q0 + 1)), k0 + int(rng.integers(1, S - k0 + 1))
                q1, k1 = min(q1, S), min(k1, S)
                empty = hd.pair_is_empty(traced, (q0, q1), (k0, k1), 1, 4)
                h = np.arange(4).reshape(4, 1, 1)
                qq = np.arange(q0, q1).reshape(1, -1, 1)
                kk = np.arange(k0, k1).reshape(1, 1, -1)
                truth = np.broadcast_to(ref(0, h, qq, kk), (4, q1 - q0, k1 - k0)).any()
                if empty:
                    skipped += 1
                    self.assertFalse(truth, "box q[%d,%d) kv[%d,%d) declared empty" % (q0, q1,
                                                                                      k0, k1))
        print("\n  %d random boxes proved empty, none wrongly" % skipped)
        self.assertGreater(skipped, 50)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mpirun(backend):
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(RANKS),
           sys.executable, os.path.abspath(__file__), "--worker", backend]
    env = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1",
               HEED_TEST_INIT="tcp://127.0.0.1:%d" % _free_port())
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=env, timeout=900).returncode


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=["mpi", "torch"])
    a, rest = p.parse_known_args()
    if a.worker:
        return worker(a.worker)
    # One-process tests first, then the 4-rank runs.
    result = unittest.main(argv=[sys.argv[0]] + rest, exit=False).result
    if not result.wasSuccessful():
        return 1
    why = _have_mpi()
    if why:
        print("SKIPPED: %s" % why)
        return 77
    if _mpirun("mpi") != 0:
        return 1
    why = _have_torch_distributed()
    if why:
        print("torch.distributed part SKIPPED: %s (run this script with a Python that has "
              "torch to test it)" % why)
    elif _mpirun("torch") != 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
