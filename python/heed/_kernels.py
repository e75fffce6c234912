"""Kernels: compiling specs (through heed's cache), loading artifacts, running, the
one-call attention() and the kernel cache's controls."""

import collections
import ctypes
import os
import threading

from ._capi import (BF16, DEVICE_CUDA, DEVICE_ROCM, ERROR_IO, F16, F32, LAYOUT_BSHD,
                    heed_attention_args, heed_cache_stats, heed_compile_options,
                    heed_run_stats, heed_tensor, kernel_p)
from ._library import check, lib, need_compiler
from ._tensors import (DTYPE_NAMES, LAYOUT_NAMES, Tensor, alloc, current_stream, dtype_code,
                       encode, format_params, layout_code, stream_handle)
from .errors import HeedIOError, invalid



class Kernel:
    """A compiled attention kernel (a ``heed_kernel``).

    Made by :func:`compile` or :func:`load`. Call it (or :meth:`run`) with q, k, v
    in the layout it was compiled for (``[B, H, S, D]`` or ``[B, S, H, D]``);
    batch, head counts and lengths are free, the head dims are fixed. Kernels are
    thread-safe; each Python object owns one reference, released by :meth:`close`
    or when it is collected.
    """

    _release = None  # set below; survives module teardown through the class

    def __init__(self, handle):
        if not handle:
            raise ValueError("Kernel needs a heed_kernel handle")
        self._handle = ctypes.c_void_p(handle) if isinstance(handle, int) else handle
        self.last_stats = None
        buffers = []
        for i in range(int(lib.heed_kernel_num_buffers(self._handle))):
            buffers.append((
                lib.heed_kernel_buffer_name(self._handle, i).decode(),
                DTYPE_NAMES.get(int(lib.heed_kernel_buffer_dtype(self._handle, i)), "unknown"),
                lib.heed_kernel_buffer_shape(self._handle, i).decode(),
            ))
        self._buffers = buffers

    # -- lifetime --

    def close(self):
        """Releases the kernel now (it must not be used afterwards)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            release = Kernel._release
            if release is not None:
                try:
                    release(handle)
                except Exception:  # interpreter shutdown: ctypes may be half gone
                    pass

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _h(self):
        if not self._handle:
            raise ValueError("the kernel was closed")
        return self._handle

    # -- what it was compiled for --

    @property
    def name(self):
        """The variant's name."""
        return lib.heed_kernel_name(self._h()).decode()

    @property
    def target(self):
        """The target it was compiled for: 'cpu:<arch>:<cpu>:<extensions>', e.g.
        'cpu:x86_64:x86-64-v3:sse4.1,...,fma,bmi,bmi2'."""
        return lib.heed_kernel_target(self._h()).decode()

    @property
    def dtype(self):
        """The dtype of q, k, v and out: 'float32', 'float16' or 'bfloat16'."""
        return DTYPE_NAMES.get(int(lib.heed_kernel_dtype(self._h())), "unknown")

    @property
    def dtype_code(self):
        """The dtype as heed's code (F32, F16, BF16)."""
        return int(lib.heed_kernel_dtype(self._h()))

    @property
    def head_dim(self):
        """The head dim of q and k."""
        return int(lib.heed_kernel_head_dim(self._h()))

    @property
    def head_dim_v(self):
        """The head dim of v and out."""
        return int(lib.heed_kernel_head_dim_v(self._h()))

    @property
    def layout(self):
        """'bhsd' ([B, H, S, D]) or 'bshd' ([B, S, H, D])."""
        return LAYOUT_NAMES.get(int(lib.heed_kernel_layout(self._h())), "unknown")

    @property
    def has_lse(self):
        """Whether the kernel also writes the log-sum-exp, f32 [B, Hq, Sq]."""
        return bool(lib.heed_kernel_has_lse(self._h()))

    @property
    def has_kv_lens(self):
        """Whether calls pass kv_lens (each batch entry's number of keys)."""
        return bool(lib.heed_kernel_has_kv_lens(self._h()))

    @property
    def has_q_lens(self):
        """Whether calls pass q_lens (each batch entry's number of queries)."""
        return bool(lib.heed_kernel_has_q_lens(self._h()))

    @property
    def has_cu_seqlens_q(self):
        """Whether q, out and lse are packed sequences (calls pass cu_seqlens_q)."""
        return bool(lib.heed_kernel_has_cu_seqlens_q(self._h()))

    @property
    def has_cu_seqlens_kv(self):
        """Whether k and v are packed sequences (calls pass cu_seqlens_kv)."""
        return bool(lib.heed_kernel_has_cu_seqlens_kv(self._h()))

    @property
    def out_dtype_code(self):
        """The dtype code of out: F32 for a kernel compiled with out_f32."""
        return int(lib.heed_kernel_out_dtype(self._h()))

    @property
    def page_size(self):
        """Keys per page of a paged-cache kernel; 0 for contiguous keys."""
        return int(lib.heed_kernel_page_size(self._h()))

    @property
    def scale(self):
        """The score scale (1/sqrt(head_dim) unless set)."""
        return float(lib.heed_kernel_scale(self._h()))

    @property
    def buffers(self):
        """The run-time buffers, in declaration order: [(name, dtype, shape)],
        shape symbolic as declared resolved for params (e.g. 'Skv' or 'H,33')."""
        return list(self._buffers)

    @property
    def buffer_names(self):
        """The buffers' names, in declaration order."""
        return [b[0] for b in self._buffers]

    def __repr__(self):
        if not self._handle:
            return "<heed.Kernel (closed)>"
        return "<heed.Kernel %r %s head_dim=%d head_dim_v=%d %s%s target=%s>" % (
            self.name, self.dtype, self.head_dim, self.head_dim_v, self.layout,
            " lse" if self.has_lse else "", self.target)

    # -- running --

    def _order_buffers(self, buffers):
        """The buffers as a list in declaration order (from a dict or a sequence)."""
        if buffers is None:
            return []
        names = self.buffer_names
        if hasattr(buffers, "keys"):
            unknown = [n for n in buffers.keys() if n not in names]
            if unknown:
                raise invalid("variant '%s' has no buffer %s (its buffers: %s)" % (
                    self.name, ", ".join("'%s'" % n for n in unknown),
                    ", ".join(names) or "none"))
            missing = [n for n in names if n not in buffers]
            if missing:
                raise invalid("missing buffer %s for variant '%s' (its buffers: %s)" % (
                    ", ".join("'%s'" % n for n in missing), self.name, ", ".join(names)))
            return [buffers[n] for n in names]
        if hasattr(buffers, "__array_interface__") or hasattr(buffers, "__dlpack__") \
                or hasattr(buffers, "__cuda_array_interface__"):
            return [buffers]  # a single tensor
        return list(buffers)

    def _shape_out(self, qt, vt):
        """The logical sizes from q and v, for allocation: (out shape, lse shape)."""
        if len(qt.shape) != 4 or len(vt.shape) != 4:
            raise invalid("q and v must have rank 4 (%s), got q %s and v %s" % (
                "[B, H, S, D]" if self.layout == "bhsd" else "[B, S, H, D]",
                list(qt.shape), list(vt.shape)))
        if self.layout == "bshd":
            b, sq, hq = qt.shape[0], qt.shape[1], qt.shape[2]
            out = (b, sq, hq, self.head_dim_v)
        else:
            b, hq, sq = qt.shape[0], qt.shape[1], qt.shape[2]
            out = (b, hq, sq, self.head_dim_v)
        return out, (b, hq, sq)

    def run(self, q, k, v, out=None, lse=None, buffers=(), num_threads=0, stream=None,
            kv_lens=None, page_table=None, q_lens=None, cu_seqlens_q=None,
            cu_seqlens_kv=None):
        """Runs the kernel: ``out = attention(q, k, v)``.

        q, k, v: tensors of the kernel's dtype and layout (k, v may have fewer
        heads than q: GQA/MQA). out: where to write ``[B, Hq, Sq, Dv]`` (or BSHD);
        allocated (numpy, or torch for torch inputs) when None. lse: f32
        ``[B, Hq, Sq]`` for a kernel compiled with ``lse=True``; allocated when
        None. buffers: the variant's run-time buffers, a dict name -> tensor or a
        sequence in declaration order. num_threads: 0 = all cores (CPU).
        stream: for GPU (CUDA or ROCm) tensors, the stream to launch on (an int
        handle, a torch.cuda.Stream or a cupy stream); None: torch's (or
        cupy's) current stream, else the default stream. The call returns once
        the kernel is queued on it (an error the kernel records, such as a
        buffer read out of range, is raised by a later call on that stream or
        by :func:`synchronize`).
        kv_lens, page_table: for a kernel compiled with ``kv_lens=True`` or a
        ``page_size`` (serving): int32 ``[B]`` keys per batch entry, and int32
        ``[B, max_pages]`` the pages of each entry in order; k and v are then
        the cache (docs/decode.md).
        q_lens: for a kernel compiled with ``q_lens=True`` (ragged queries):
        int32 ``[B]`` queries per batch entry, q's length being a capacity; the
        rows of out and lse past an entry's queries are not written (an ``out``
        allocated here holds whatever the allocator left there: pass ``out``
        to control them).
        cu_seqlens_q, cu_seqlens_kv: for a kernel compiled with
        ``cu_seqlens_q=True`` / ``cu_seqlens_kv=True`` (packed sequences,
        FlashAttention's varlen layout): int32 ``[B+1]`` offsets; entry b's
        queries (keys) are rows ``cu[b]:cu[b+1]`` of q, out, lse (k, v), which
        have batch 1 (``[1, total, H, D]`` for bshd; lse ``[1, Hq, total_q]``).

        Returns out, or (out, lse) when the kernel writes the log-sum-exp.
        Raises HeedError (InvalidArgumentError for a tensor that does not fit or
        tensors on different devices, RunError for a buffer read out of range,
        UnsupportedError for tensors on a device heed cannot run on here, e.g.
        CUDA tensors without a CUDA driver, ROCm tensors without ROCm). ``last_stats`` then holds the block
        counts of a CPU run (None after a GPU run: the GPU kernels do not count).
        """
        handle = self._h()
        bufs = self._order_buffers(buffers)
        qt, kt, vt = Tensor(q, "q"), Tensor(k, "k"), Tensor(v, "v")
        has_lse = self.has_lse
        if out is None or (has_lse and lse is None):
            out_shape, lse_shape = self._shape_out(qt, vt)
            if out is None:
                out = alloc(q, out_shape, self.out_dtype_code)
            if has_lse and lse is None:
                lse = alloc(q, lse_shape, F32)
        ot = Tensor(out, "out", writable=True)
        lt = Tensor(lse, "lse", writable=True) if lse is not None else None
        st = [Tensor(t, name) if t is not None else None
              for t, name in ((kv_lens, "kv_lens"), (page_table, "page_table"),
                              (q_lens, "q_lens"), (cu_seqlens_q, "cu_seqlens_q"),
                              (cu_seqlens_kv, "cu_seqlens_kv"))]
        bts = [Tensor(b, "buffer '%s'" % n if n else "buffer %d" % i)
               for i, (b, n) in enumerate(zip(bufs, self.buffer_names + [None] * len(bufs)))]
        if num_threads is None:
            num_threads = 0
        num_threads = int(num_threads)
        if num_threads < 0:
            raise invalid("num_threads must be >= 0, got %d" % num_threads)

        args = heed_attention_args()
        lib.heed_attention_args_init(ctypes.byref(args))
        args.q = ctypes.pointer(qt.struct)
        args.k = ctypes.pointer(kt.struct)
        args.v = ctypes.pointer(vt.struct)
        args.out = ctypes.pointer(ot.struct)
        if lt is not None:
            args.lse = ctypes.pointer(lt.struct)
        buf_array = None
        if bts:
            buf_array = (heed_tensor * len(bts))(*[t.struct for t in bts])
            args.buffers = ctypes.cast(buf_array, ctypes.POINTER(heed_tensor))
        args.num_buffers = len(bts)
        args.num_threads = num_threads
        if st[0] is not None:
            args.kv_lens = ctypes.pointer(st[0].struct)
        if st[1] is not None:
            args.page_table = ctypes.pointer(st[1].struct)
        if st[2] is not None:
            args.q_lens = ctypes.pointer(st[2].struct)
        if st[3] is not None:
            args.cu_seqlens_q = ctypes.pointer(st[3].struct)
        if st[4] is not None:
            args.cu_seqlens_kv = ctypes.pointer(st[4].struct)
        if qt.device_type in (DEVICE_CUDA, DEVICE_ROCM):
            handle_s = stream_handle(stream)
            if handle_s is None:
                handle_s = current_stream([qt, kt, vt, ot])
            args.stream = handle_s
        elif stream is not None:
            stream_handle(stream)  # a bad value is an error on every device
        stats = heed_run_stats()
        args.stats = ctypes.pointer(stats)
        status = lib.heed_attention(handle, ctypes.byref(args))
        # Everything the call pointed into stays referenced until here.
        keep = (qt, kt, vt, ot, lt, bts, buf_array, st)
        del keep
        check(status)
        self.last_stats = None if stats.visited_blocks < 0 else {
            "visited_blocks": int(stats.visited_blocks),
            "full_blocks": int(stats.full_blocks),
            "partial_blocks": int(stats.partial_blocks),
            "total_blocks": int(stats.total_blocks),
        }
        return (out, lse) if has_lse else out

    __call__ = run


Kernel._release = lib.heed_kernel_release


# ---- compiling and loading ----------------------------------------------------


def _is_path(spec):
    """Whether `spec` names a file rather than holding spec text."""
    if isinstance(spec, os.PathLike):
        return True
    if isinstance(spec, bytes):
        return False
    if not isinstance(spec, str):
        raise TypeError("spec must be spec text or a path, got %s" % type(spec).__name__)
    if "\n" in spec or "{" in spec:
        return False
    return spec.endswith(".attn") or os.path.isfile(spec)


def _options(dtype, head_dim, head_dim_v, layout, lse, scale, variant, params, target,
             analyze_mask, use_cache, kv_lens=False, page_size=0, q_lens=False,
             out_f32=False, cu_seqlens_q=False, cu_seqlens_kv=False, gpu_kernel=None,
             patch_tiling=True):
    """A heed_compile_options (and the byte strings it points to)."""
    need_compiler("heed_compile_options_init")
    o = heed_compile_options()
    lib.heed_compile_options_init(ctypes.byref(o))
    o.dtype = dtype_code(dtype)
    if o.dtype not in (F32, F16, BF16):
        raise invalid("dtype must be float32, float16 or bfloat16, got %s"
                       % DTYPE_NAMES[o.dtype])
    o.head_dim = int(head_dim)
    o.head_dim_v = int(head_dim_v or 0)
    o.layout = layout_code(layout)
    o.lse = 1 if lse else 0
    o.scale = 0.0 if scale is None else float(scale)
    keep = [encode(variant, "variant"), format_params(params), encode(target, "target")]
    o.variant, o.params, o.target = keep
    o.analyze_mask = 1 if analyze_mask else 0
    o.use_cache = 1 if use_cache else 0
    o.kv_lens = 1 if kv_lens else 0
    o.page_size = int(page_size or 0)
    o.q_lens = 1 if q_lens else 0
    o.out_f32 = 1 if out_f32 else 0
    o.cu_seqlens_q = 1 if cu_seqlens_q else 0
    o.cu_seqlens_kv = 1 if cu_seqlens_kv else 0
    kernel = encode(gpu_kernel, "gpu_kernel")
    keep.append(kernel)
    o.gpu_kernel = kernel
    o.patch_tiling = 1 if patch_tiling else 0
    return o, keep


def compile(spec, *, variant=None, dtype="float32", head_dim=64, head_dim_v=0,
            layout="bhsd", lse=False, scale=None, params=None, analyze_mask=True,
            use_cache=True, target=None, kv_lens=False, page_size=0, q_lens=False,
            out_f32=False, cu_seqlens_q=False, cu_seqlens_kv=False, gpu_kernel=None,
            patch_tiling=True):
    """Compiles an attention variant to a :class:`Kernel`, through heed's cache.

    spec: spec text (``"variant causal { mask = causal() }"``) or the path of a
    ``.attn`` file (an existing file, or a name ending in ``.attn``).
    variant: which variant of a file that defines several. dtype: of q, k, v and
    out ('float32', 'float16', 'bfloat16'). head_dim / head_dim_v: of q and k /
    of v and out (0: head_dim). layout: 'bhsd' or 'bshd'. lse: also write the
    log-sum-exp. scale: of the scores (None: 1/sqrt(head_dim)). params: dict of
    param overrides ({'window': 512}). analyze_mask: skip the blocks the mask
    empties. use_cache: use the memory and disk cache. target: None or 'cpu'
    (CPU code; the kernel runs on CUDA and ROCm tensors too, compiled for the
    GPU at the first such call), 'cuda' (CUDA tensors only: no CPU code is
    compiled), 'cuda:sm_XX' (CUDA only, compiled now for that chip), 'rocm'
    (ROCm tensors only, for gfx942) or 'rocm:gfx90a' / 'rocm:gfx942' /
    'rocm:gfx950' (ROCm only, compiled now for that chip).
    kv_lens: calls pass ``kv_lens`` (int32 ``[B]``), each batch entry's number
    of keys (serving; CPU and GPU). page_size: k and v are a paged cache
    ``[pages, page_size, Hkv, D]`` (bshd; bhsd ``[pages, Hkv, page_size, D]``)
    read through a ``page_table`` (int32 ``[B, max_pages]``); implies kv_lens
    (docs/decode.md). q_lens: calls pass ``q_lens`` (int32 ``[B]``), each batch
    entry's number of queries (ragged queries on a padded batch).
    out_f32: out is float32 whatever dtype is (a training forward: the
    backward's delta then comes from the exact output; CPU only,
    docs/backward.md).
    cu_seqlens_q / cu_seqlens_kv: packed sequences (FlashAttention's varlen
    layout): q, out and lse (k and v) hold the batch's sequences end to end in
    batch 1 and calls pass ``cu_seqlens_q`` (``cu_seqlens_kv``), int32
    ``[B+1]``; not with q_lens (kv_lens, page_size). The index tensors a call
    passes are host (CPU) int32 tensors, for GPU calls too.
    gpu_kernel: which GPU kernel: None or 'auto' (tensor cores where they
    apply), 'tensor-cores', 'simt', 'wgmma' (Hopper: wgmma, TMA, a producer
    warpgroup; sm_90 only, f16/bf16, head dims multiples of 64; not yet
    checked on a GPU), 'wgmma-pipelined' (its first, unspecialized form),
    'wgmma-serial' ('wgmma' without the softmax overlap) or 'wgmma-grid'
    ('wgmma' with a block per work item instead of persistent workers).
    patch_tiling: tile a mask on a 2-D/3-D token grid (neighborhood_2d/_3d) by
    patches of the grid, on the CPU and the tensor-core (mma.sync) GPU kernel
    (default); False keeps flat tiles (docs/passes.md, "Patch tiling").

    Raises SpecError (with ``file:line:col: error:`` messages) for a bad spec,
    InvalidArgumentError for bad options, CompileError if code generation fails.
    """
    need_compiler("heed_compile")
    opts, keep = _options(dtype, head_dim, head_dim_v, layout, lse, scale, variant, params,
                          target, analyze_mask, use_cache, kv_lens, page_size, q_lens,
                          out_f32, cu_seqlens_q, cu_seqlens_kv, gpu_kernel, patch_tiling)
    handle = kernel_p()
    if _is_path(spec):
        status = lib.heed_compile_file(encode(os.fspath(spec), "the spec's path"),
                                       ctypes.byref(opts), ctypes.byref(handle))
    else:
        text = encode(spec, "the spec")
        status = lib.heed_compile(text, b"<spec>", ctypes.byref(opts), ctypes.byref(handle))
    del keep
    check(status)
    return Kernel(handle)


def export(spec, artifact_path, *, variant=None, dtype="float32", head_dim=64, head_dim_v=0,
           layout="bhsd", lse=False, scale=None, params=None, analyze_mask=True, target=None):
    """Compiles `spec` (text or a ``.attn`` path) and writes an artifact to
    `artifact_path`, which :func:`load` (and AOT programs) can load. `target`:
    comma-separated; None or 'cpu' is the portable pair x86-64-v3 + x86-64,
    'cpu:native' this machine exactly, 'cpu:<LLVM CPU>' one CPU. Other arguments as
    in :func:`compile`."""
    need_compiler("heed_export")
    opts, keep = _options(dtype, head_dim, head_dim_v, layout, lse, scale, variant, params,
                          target, analyze_mask, True)
    if _is_path(spec):
        path = os.fspath(spec)
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError as e:
            raise HeedIOError(ERROR_IO, "cannot read '%s': %s" % (path, e.strerror or e))
        source = encode(path, "the spec's path")
    else:
        text = encode(spec, "the spec")
        source = b"<spec>"
    status = lib.heed_export(text, source, ctypes.byref(opts),
                             encode(os.fspath(artifact_path), "artifact_path"))
    del keep
    check(status)


def load(path_or_bytes):
    """Loads a kernel from an artifact written by :func:`export` (or heed's
    tools): a path (str or os.PathLike) or the artifact's bytes
    (bytes, bytearray, memoryview). Raises LoadError / HeedIOError."""
    handle = kernel_p()
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        status = lib.heed_kernel_load(buf, len(data), ctypes.byref(handle))
        del buf
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        status = lib.heed_kernel_load_file(encode(os.fspath(path_or_bytes), "the path"),
                                           ctypes.byref(handle))
    else:
        raise TypeError("load() takes a path or bytes, got %s" % type(path_or_bytes).__name__)
    check(status)
    return Kernel(handle)


# ---- attention(), flex_attention style ------------------------------------------

_KERNELS = collections.OrderedDict()
_KERNELS_MAX = 64
_KERNELS_LOCK = threading.Lock()


def _spec_key(spec):
    """A cache key for a spec: the text, or a path with its modification time."""
    if _is_path(spec):
        path = os.path.abspath(os.fspath(spec))
        try:
            st = os.stat(path)
            return ("file", path, st.st_mtime_ns, st.st_size)
        except OSError:
            return ("file", path, None, None)
    return ("text", spec)


def _params_key(params):
    if params is None:
        return None
    if isinstance(params, (str, bytes)):
        return params
    items = params.items() if hasattr(params, "items") else params
    return tuple(sorted((str(k), repr(v)) for k, v in items))


def attention(q, k, v, spec, buffers=None, scale=None, return_lse=False, variant=None,
              params=None, layout="bhsd", *, out=None, lse=None, num_threads=0,
              stream=None, kv_lens=None, page_table=None, q_lens=None, cu_seqlens_q=None,
              cu_seqlens_kv=None, gpu_kernel=None):
    """Attention with a variant, in the manner of torch's ``flex_attention``.

    q: ``[B, Hq, Sq, D]``, k: ``[B, Hkv, Skv, D]``, v: ``[B, Hkv, Skv, Dv]``
    (``layout='bshd'``: ``[B, S, H, D]``); Hq a multiple of Hkv. The dtype
    (float32, float16, bfloat16) and head dims come from q and v. spec: spec text
    or a ``.attn`` path. buffers: the variant's buffers, a dict name -> tensor or
    a sequence in declaration order. scale: None for 1/sqrt(D).

    Returns out (the dtype of q, laid out like q), or (out, lse) with
    ``return_lse=True``, lse f32 ``[B, Hq, Sq]`` (natural log of the sum of
    exp(score) over visible keys; ``-inf`` where a query sees no key, whose
    output is 0). out / lse: optional tensors to write into instead of
    allocating (lse only with return_lse). num_threads: 0 = all cores.
    GPU tensors (torch, cupy; torch's ROCm build included) run on the GPU, on
    `stream` or the current stream (see :meth:`Kernel.run`); for them only GPU
    code is compiled. gpu_kernel: which GPU kernel (:func:`compile`'s; None: the
    default).
    Serving calls (docs/decode.md): kv_lens, page_table (k and v then a paged
    cache, the page size read from k's shape), q_lens, cu_seqlens_q and
    cu_seqlens_kv (packed sequences) as :meth:`Kernel.run` takes them; the
    kernel is compiled for the ones given. They are host (CPU) int32 tensors,
    for GPU calls too.
    Kernels are kept in a small cache keyed by the spec and the options, so
    repeated calls compile nothing.
    """
    if lse is not None and not return_lse:
        raise invalid("lse= was given but return_lse is False")
    serving = _serving_options(k, layout, kv_lens, page_table, q_lens, cu_seqlens_q,
                               cu_seqlens_kv)
    kernel = kernel_for(q, v, spec, return_lse, scale, variant, params, layout, serving,
                        gpu_kernel)
    return kernel.run(q, k, v, out=out, lse=lse,
                      buffers=buffers if buffers is not None else (), num_threads=num_threads,
                      stream=stream, kv_lens=kv_lens, page_table=page_table, q_lens=q_lens,
                      cu_seqlens_q=cu_seqlens_q, cu_seqlens_kv=cu_seqlens_kv)


def _serving_options(k, layout, kv_lens, page_table, q_lens, cu_seqlens_q, cu_seqlens_kv):
    """The compile options a serving call needs: a dict of compile()'s keyword
    arguments (kv_lens, page_size, q_lens, cu_seqlens_q, cu_seqlens_kv)."""
    options = {}
    if page_table is not None:
        shape = Tensor(k, "k").shape
        if len(shape) != 4:
            raise invalid("a paged k must have rank 4, got %s" % list(shape))
        options["page_size"] = int(shape[1 if layout_code(layout) == LAYOUT_BSHD else 2])
    if kv_lens is not None and page_table is None:
        options["kv_lens"] = True
    for name, value in (("q_lens", q_lens), ("cu_seqlens_q", cu_seqlens_q),
                        ("cu_seqlens_kv", cu_seqlens_kv)):
        if value is not None:
            options[name] = True
    return options


def kernel_for(q, v, spec, return_lse=False, scale=None, variant=None, params=None,
               layout="bhsd", serving=None, gpu_kernel=None):
    """The Kernel :func:`attention` runs for these q and v (dtype and head dims from
    them; a GPU-only kernel for GPU tensors), from a small cache keyed by the spec and
    the options."""
    qt = Tensor(q, "q")
    vt = Tensor(v, "v")
    if len(qt.shape) != 4 or len(vt.shape) != 4:
        raise invalid("q and v must have rank 4 (%s), got q %s and v %s" % (
            "[B, S, H, D]" if layout_code(layout) == LAYOUT_BSHD else "[B, H, S, D]",
            list(qt.shape), list(vt.shape)))
    if qt.dtype not in (F32, F16, BF16):
        raise invalid("q: dtype %s is not supported for attention (float32, float16 or "
                      "bfloat16)" % DTYPE_NAMES[qt.dtype])
    head_dim, head_dim_v = qt.shape[3], vt.shape[3]
    layout_id = layout_code(layout)
    # GPU tensors: a GPU-only kernel (no CPU code compiled for nothing).
    target = {DEVICE_CUDA: "cuda", DEVICE_ROCM: "rocm"}.get(qt.device_type)
    serving = dict(serving or {})
    key = (_spec_key(spec), variant, qt.dtype, head_dim, head_dim_v, layout_id,
           bool(return_lse), None if scale is None else float(scale), _params_key(params),
           target, tuple(sorted(serving.items())), gpu_kernel)
    with _KERNELS_LOCK:
        kernel = _KERNELS.get(key)
        if kernel is not None:
            _KERNELS.move_to_end(key)
    if kernel is None:
        kernel = compile(spec, variant=variant, dtype=qt.dtype, head_dim=head_dim,
                         head_dim_v=head_dim_v, layout=layout_id, lse=return_lse,
                         scale=scale, params=params, target=target, gpu_kernel=gpu_kernel,
                         **serving)
        with _KERNELS_LOCK:
            _KERNELS[key] = kernel
            while len(_KERNELS) > _KERNELS_MAX:
                _KERNELS.popitem(last=False)
    return kernel


# ---- the cache ---------------------------------------------------------------


def cache_stats():
    """The kernel cache's counters: a dict with memory_hits, disk_hits, compiles,
    rejected_entries, store_failures, disk_entries, disk_bytes, disk_limit_bytes
    and directory ('' when the disk cache is off)."""
    need_compiler("heed_cache_get_stats")
    s = heed_cache_stats()
    lib.heed_cache_stats_init(ctypes.byref(s))
    check(lib.heed_cache_get_stats(ctypes.byref(s)))
    result = {name: int(getattr(s, name)) for name, _ in heed_cache_stats._fields_
              if name not in ("struct_size", "directory")}
    result["directory"] = (s.directory or b"").decode("utf-8", "replace")
    return result


def cache_clear():
    """Empties the memory cache and removes every entry of the disk cache."""
    need_compiler("heed_cache_clear")
    with _KERNELS_LOCK:
        _KERNELS.clear()
    check(lib.heed_cache_clear())


def cache_set_directory(path):
    """Uses `path` for the disk cache from now on (None or '': memory only)."""
    need_compiler("heed_cache_set_directory")
    check(lib.heed_cache_set_directory(encode(os.fspath(path), "the directory") if path
                                       else b""))


def synchronize(device="cuda", device_id=0, stream=None):
    """Waits for ``stream`` (None: the default stream) of GPU ``device_id``
    ("cuda" or "rocm") and raises the error a heed kernel launched there
    recorded since the last report (a RunError naming the buffer read out of
    range), if any."""
    types = {"cuda": DEVICE_CUDA, "rocm": DEVICE_ROCM}
    if device not in types:
        raise invalid("synchronize: device must be 'cuda' or 'rocm', not %r" % (device,))
    check(lib.heed_synchronize(types[device], int(device_id), stream_handle(stream)))
