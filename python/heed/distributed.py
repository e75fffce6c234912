"""Context parallelism: attention over a sequence sharded across processes.

Each process (rank) holds a shard of q, k and v along the sequence (``[B, H, S/R, D]``,
BHSD). :func:`ring_attention` passes the key/value shards around a ring of the R ranks;
:func:`allgather_attention` gathers all of them first (simpler, for short contexts).
Either way each rank runs heed on (its queries, some keys) with log-sum-exp output and
merges the partial results exactly in log-sum-exp form. The variant (a FlexAttention
mask_mod / score_mod, or a BlockMask) is traced once and compiled with its indices read
at GLOBAL positions from a small run-time buffer (``q + heed_pos[0]``, ``kv +
heed_pos[1]``): masks see global positions, and heed's mask analysis, which summarizes
that buffer exactly, still skips the blocks a mask empties inside a shard pair.

Shard pairs the mask empties entirely are skipped before any kernel runs: an interval
evaluation of the traced mask over the pair's index box (heed/_bounds.py) that is sound
by construction (a skipped pair provably has no visible (query, key) pair; a pair it
cannot prove empty runs, and the kernel visits no block of it if its own analysis can).
With contiguous shards a causal ring skips R(R-1)/2 of the R^2 pairs, about half; the
ranks then do unequal work (rank R-1 computes R pairs, rank 0 one). ``sharding="zigzag"``
balances causal masks: the sequence is cut into 2R chunks and rank r holds chunks r and
2R-1-r, so every rank computes the same number of chunk pairs.

Communicators: an mpi4py communicator (numpy arrays or torch CPU tensors; CPU) or a
torch.distributed process group (torch tensors; gloo on the CPU, NCCL on GPUs, where
heed runs its CUDA kernel on the shards). docs/python.md shows both, and a multi-GPU run
with NCCL.
"""

import math
import sys

from . import _bounds, _kernels, flex
from .errors import invalid

__all__ = ["ring_attention", "allgather_attention", "shard", "unshard", "shard_chunks",
           "pair_is_empty"]

_SHARDINGS = ("contiguous", "zigzag")


# ---- shards ----------------------------------------------------------------------------


def shard_chunks(seq_len, size, rank, sharding="contiguous"):
    """The (start, length) chunks of global positions rank `rank` of `size` holds, in the
    order its shard stores them."""
    if sharding not in _SHARDINGS:
        raise invalid("sharding must be one of %s, got %r" % (", ".join(_SHARDINGS), sharding))
    parts = size if sharding == "contiguous" else 2 * size
    if seq_len % parts:
        raise invalid("a sequence of %d tokens cannot be cut into %d equal %s chunks"
                      % (seq_len, parts, sharding))
    c = seq_len // parts
    if sharding == "contiguous":
        return [(rank * c, c)]
    return [(rank * c, c), ((2 * size - 1 - rank) * c, c)]


def _cat(parts, axis):
    first = parts[0]
    if _is_torch(first):
        return sys.modules["torch"].cat(parts, dim=axis)
    import numpy
    return numpy.concatenate(parts, axis=axis)


def _take(x, start, length, axis):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, start + length)
    return x[tuple(index)]


def shard(x, size, rank, sharding="contiguous", axis=2):
    """Rank `rank`'s shard of the global tensor `x` (numpy or torch) along `axis`."""
    chunks = shard_chunks(x.shape[axis], size, rank, sharding)
    return _cat([_take(x, s, n, axis) for s, n in chunks], axis)


def unshard(shards, sharding="contiguous", axis=2):
    """The global tensor from every rank's shard (a list in rank order)."""
    size = len(shards)
    seq = shards[0].shape[axis] * size
    pieces = {}
    for rank, x in enumerate(shards):
        offset = 0
        for start, n in shard_chunks(seq, size, rank, sharding):
            pieces[start] = _take(x, offset, n, axis)
            offset += n
    return _cat([pieces[s] for s in sorted(pieces)], axis)


def _is_torch(x):
    return (type(x).__module__ or "").split(".")[0] == "torch"


# ---- communicators ------------------------------------------------------------------------


class _MPI:
    """An mpi4py communicator over numpy arrays (torch CPU tensors through .numpy())."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    @staticmethod
    def _np(x):
        if _is_torch(x):
            if x.device.type != "cpu":
                raise invalid("mpi4py communicators take CPU tensors; use a torch.distributed "
                              "process group (NCCL) for %s tensors" % x.device.type)
            return x.detach().contiguous().numpy()
        import numpy
        return numpy.ascontiguousarray(x)

    @staticmethod
    def _like(x, array):
        return sys.modules["torch"].from_numpy(array) if _is_torch(x) else array

    def shift(self, arrays):
        """Starts sending `arrays` to rank+1 and receiving the same shapes from rank-1;
        returns a function that waits and gives the received arrays."""
        import numpy
        dest, src = (self.rank + 1) % self.size, (self.rank - 1) % self.size
        sends = [self._np(a) for a in arrays]
        recvs = [numpy.empty_like(a) for a in sends]
        reqs = []
        for tag, (s, r) in enumerate(zip(sends, recvs)):
            reqs.append(self.comm.Irecv(r, source=src, tag=tag))
            reqs.append(self.comm.Isend(s, dest=dest, tag=tag))

        def wait():
            for req in reqs:
                req.Wait()
            return [self._like(a, r) for a, r in zip(arrays, recvs)]
        return wait

    def allgather(self, x):
        import numpy
        a = self._np(x)
        out = numpy.empty((self.size,) + a.shape, a.dtype)
        self.comm.Allgather(a, out)
        return [self._like(x, out[i]) for i in range(self.size)]


class _Torch:
    """A torch.distributed process group (None: the default group) over torch tensors."""

    def __init__(self, group):
        import torch.distributed as dist
        self.dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)

    def _global(self, rank):
        if self.group is None:
            return rank
        return self.dist.get_global_rank(self.group, rank)

    def shift(self, arrays):
        dist = self.dist
        dest = self._global((self.rank + 1) % self.size)
        src = self._global((self.rank - 1) % self.size)
        sends = [a.contiguous() for a in arrays]
        recvs = [sys.modules["torch"].empty_like(a) for a in sends]
        ops = []
        for s, r in zip(sends, recvs):
            ops.append(dist.P2POp(dist.isend, s, dest, self.group))
            ops.append(dist.P2POp(dist.irecv, r, src, self.group))
        reqs = dist.batch_isend_irecv(ops)

        def wait():
            for req in reqs:
                req.wait()
            return recvs
        return wait

    def allgather(self, x):
        torch = sys.modules["torch"]
        out = [torch.empty_like(x) for _ in range(self.size)]
        self.dist.all_gather(out, x.contiguous(), group=self.group)
        return out


def _communicator(comm):
    if comm is None:
        try:
            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized():
                return _Torch(None)
        except ImportError:
            pass
        try:
            from mpi4py import MPI
        except ImportError:
            raise invalid("no communicator: pass an mpi4py communicator or a "
                          "torch.distributed process group (or initialize torch.distributed)")
        return _MPI(MPI.COMM_WORLD)
    if hasattr(comm, "Get_rank") and hasattr(comm, "Irecv"):
        return _MPI(comm)
    mod = (type(comm).__module__ or "").split(".")[0]
    if mod == "torch":
        return _Torch(comm)
    raise TypeError("comm must be an mpi4py communicator or a torch.distributed process "
                    "group, got %s" % type(comm).__name__)


# ---- the variant at global positions ------------------------------------------------------------


class _Variant:
    """The traced variant (mask Value for the host check; spec text with global positions)."""

    def __init__(self, variant, score_mod, seq_len, like):
        if variant is None:
            block_mask = None
        elif isinstance(variant, flex.BlockMask):
            block_mask = variant
            if block_mask.seq_lengths != (seq_len, seq_len):
                raise invalid("the block mask was made for Q_LEN=%d, KV_LEN=%d; the sharded "
                              "sequence has %d tokens" % (block_mask.seq_lengths + (seq_len,)))
        elif callable(variant):
            block_mask = flex.create_block_mask(variant, None, None, seq_len, seq_len)
        else:
            raise TypeError("variant must be a mask_mod, a BlockMask or None, got %s"
                            % type(variant).__name__)
        self.mask = block_mask.trace.value if block_mask is not None else None
        emitted = flex.build(score_mod, block_mask, positions=True)
        self.text = emitted.text
        self.buffers = [flex._convert_buffer(b, like) for b in emitted.buffers]


def pair_is_empty(mask, q_range, kv_range, batch=None, heads=None):
    """Whether the traced mask (a Value, a BlockMask or a mask_mod) is false for every
    query in q_range and key in kv_range ((start, stop) of global positions, stop
    excluded), for batches in [0, batch) and heads in [0, heads) (None: any). A True
    answer is a proof; False means the pair may hold a visible (query, key) pair."""
    if isinstance(mask, flex.BlockMask):
        mask = mask.trace.value
    elif callable(mask):
        mask = flex._trace.trace_mask(mask).value
    ranges = {"q": (q_range[0], q_range[1] - 1), "kv": (kv_range[0], kv_range[1] - 1)}
    if batch is not None:
        ranges["b"] = (0, batch - 1)
    if heads is not None:
        ranges["h"] = (0, heads - 1)
    return not _bounds.may_be_true(mask, ranges)


# ---- partial results -----------------------------------------------------------------------------


class _Partial:
    """Running (out, lse) of a block of query rows, merged in log-sum-exp form."""

    def __init__(self):
        self.out = None
        self.lse = None

    def add(self, out, lse):
        if self.out is None:
            self.out, self.lse = out.float() if _is_torch(out) else out.astype("float32"), lse
            return
        if _is_torch(out):
            torch = sys.modules["torch"]
            m = torch.maximum(self.lse, lse)
            m0 = torch.where(torch.isinf(m), torch.zeros_like(m), m)
            wa, wb = torch.exp(self.lse - m0), torch.exp(lse - m0)
            total = wa + wb
            safe = torch.where(total > 0, total, torch.ones_like(total))
            self.out = (self.out * (wa / safe)[..., None] + out.float() * (wb / safe)[..., None])
            self.lse = torch.where(total > 0, m0 + torch.log(safe), m)
            return
        import numpy
        m = numpy.maximum(self.lse, lse)
        m0 = numpy.where(numpy.isinf(m), 0.0, m)
        wa, wb = numpy.exp(self.lse - m0), numpy.exp(lse - m0)
        total = wa + wb
        safe = numpy.where(total > 0, total, 1.0)
        self.out = self.out * (wa / safe)[..., None] + out * (wb / safe)[..., None]
        self.lse = numpy.where(total > 0, m0 + numpy.log(safe), m).astype("float32")

    def result(self, like, rows, dv):
        if self.out is None:  # every key of every shard masked: out 0, lse -inf
            shape = (like.shape[0], like.shape[1], rows)
            if _is_torch(like):
                torch = sys.modules["torch"]
                return (like.new_zeros(shape + (dv,)),
                        torch.full(shape, -math.inf, dtype=torch.float32, device=like.device))
            import numpy
            return (numpy.zeros(shape + (dv,), like.dtype),
                    numpy.full(shape, -numpy.inf, numpy.float32))
        out = self.out.to(like.dtype) if _is_torch(like) else self.out.astype(like.dtype)
        return out, self.lse


def _positions(like, q_start, kv_start):
    if _is_torch(like):
        torch = sys.modules["torch"]
        return torch.tensor([q_start, kv_start, 0, 0], dtype=torch.int64, device=like.device)
    import numpy
    return numpy.array([q_start, kv_start, 0, 0], numpy.int64)


class _Runner:
    """Runs the variant's kernel on (query chunk, key chunk) pairs and counts."""

    def __init__(self, variant, q, v, scale, num_threads, stats):
        self.variant = variant
        self.kernel = _kernels.kernel_for(q, v, variant.text, True, scale)
        self.num_threads = num_threads
        self.stats = stats
        self.B, self.H = q.shape[0], q.shape[1]
        for key in ("pairs", "skipped", "kernel_runs", "visited_blocks", "total_blocks"):
            stats.setdefault(key, 0)

    def run(self, q, q_start, k, v, kv_start, check=True):
        """(out, lse) of q (rows from global q_start) against k, v (from kv_start), or
        None when the pair is provably empty."""
        self.stats["pairs"] += 1
        if check and self.variant.mask is not None and pair_is_empty(
                self.variant.mask, (q_start, q_start + q.shape[2]),
                (kv_start, kv_start + k.shape[2]), self.B, self.H):
            self.stats["skipped"] += 1
            return None
        pos = _positions(q, q_start, kv_start)
        out, lse = self.kernel.run(q, k, v, buffers=[pos] + self.variant.buffers,
                                   num_threads=self.num_threads)
        self.stats["kernel_runs"] += 1
        st = self.kernel.last_stats
        if st is not None:
            self.stats["visited_blocks"] += st["visited_blocks"]
            self.stats["total_blocks"] += st["total_blocks"]
        return out, lse


def _setup(q_shard, k_shard, v_shard, variant, comm, score_mod, sharding):
    for name, x in (("q_shard", q_shard), ("k_shard", k_shard), ("v_shard", v_shard)):
        if len(getattr(x, "shape", ())) != 4:
            raise invalid("%s must be a rank-4 [B, H, S/R, D] tensor" % name)
    if k_shard.shape[2] != q_shard.shape[2] or v_shard.shape[2] != k_shard.shape[2]:
        raise invalid("q, k and v shards must hold the same number of positions (got %d, %d, "
                      "%d)" % (q_shard.shape[2], k_shard.shape[2], v_shard.shape[2]))
    c = _communicator(comm)
    seq_len = q_shard.shape[2] * c.size
    chunks = {r: shard_chunks(seq_len, c.size, r, sharding) for r in range(c.size)}
    return c, seq_len, chunks, _Variant(variant, score_mod, seq_len, q_shard)


def _finish(parts, q_shard, chunks, dv, return_lse):
    outs, lses = [], []
    for part, (start, n) in zip(parts, chunks):
        o, l = part.result(q_shard, n, dv)
        outs.append(o)
        lses.append(l)
    out = _cat(outs, 2)
    return (out, _cat(lses, 2)) if return_lse else out


def ring_attention(q_shard, k_shard, v_shard, variant=None, comm=None, *, score_mod=None,
                   scale=None, sharding="contiguous", return_lse=False, num_threads=0,
                   stats=None):
    """Attention of this rank's query shard over the whole sharded sequence, the key and
    value shards passed around a ring.

    q_shard, k_shard, v_shard: ``[B, H, S/R, D]`` (BHSD), this rank's shard of the global
    q, k, v as :func:`shard` cuts them with `sharding` ('contiguous' or 'zigzag'); numpy
    arrays or torch tensors. variant: a mask_mod, a BlockMask made for the GLOBAL length
    S, or None (no mask); score_mod: a FlexAttention score_mod (global indices too).
    comm: an mpi4py communicator or a torch.distributed process group (None: the default
    group when torch.distributed is initialized, else MPI.COMM_WORLD).

    Returns this rank's output shard (laid out as q_shard), or (out, lse). `stats`, a
    dict, receives counts: pairs (of query and key chunks), skipped (proved empty before
    running), kernel_runs, visited_blocks / total_blocks (CPU runs).
    """
    stats = {} if stats is None else stats
    c, seq_len, chunks, var = _setup(q_shard, k_shard, v_shard, variant, comm, score_mod,
                                     sharding)
    runner = _Runner(var, q_shard, v_shard, scale, num_threads, stats)
    mine = chunks[c.rank]
    parts = [_Partial() for _ in mine]
    k_cur, v_cur = k_shard, v_shard
    for step in range(c.size):
        owner = (c.rank - step) % c.size
        wait = c.shift([k_cur, v_cur]) if step + 1 < c.size else None
        _run_pairs(runner, parts, q_shard, mine, k_cur, v_cur, chunks[owner])
        if wait is not None:
            k_cur, v_cur = wait()
    return _finish(parts, q_shard, mine, v_shard.shape[3], return_lse)


def _run_pairs(runner, parts, q_shard, q_chunks, k, v, kv_chunks):
    q_off = 0
    for part, (q_start, qn) in zip(parts, q_chunks):
        q = _take(q_shard, q_off, qn, 2)
        kv_off = 0
        for kv_start, kn in kv_chunks:
            result = runner.run(q, q_start, _take(k, kv_off, kn, 2), _take(v, kv_off, kn, 2),
                                kv_start)
            if result is not None:
                part.add(*result)
            kv_off += kn
        q_off += qn


def allgather_attention(q_shard, k_shard, v_shard, variant=None, comm=None, *, score_mod=None,
                        scale=None, sharding="contiguous", return_lse=False, num_threads=0,
                        stats=None):
    """As :func:`ring_attention`, but every rank first gathers all key and value shards
    (one all-gather each) and runs one kernel per query chunk over the whole sequence:
    less latency for short contexts, R times the key/value memory. The kernel's own
    analysis skips the blocks the mask empties."""
    stats = {} if stats is None else stats
    c, seq_len, chunks, var = _setup(q_shard, k_shard, v_shard, variant, comm, score_mod,
                                     sharding)
    k_all = unshard(c.allgather(k_shard), sharding)
    v_all = unshard(c.allgather(v_shard), sharding)
    runner = _Runner(var, q_shard, v_shard, scale, num_threads, stats)
    mine = chunks[c.rank]
    parts = [_Partial() for _ in mine]
    _run_pairs(runner, parts, q_shard, mine, k_all, v_all, [(0, seq_len)])
    return _finish(parts, q_shard, mine, v_shard.shape[3], return_lse)
