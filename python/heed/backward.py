"""The backward pass on CPU, CUDA and ROCm tensors (docs/backward.md): gradients of attention with
respect to q, k, v and the variant's float buffers, through heed_backward_* of the
C API."""

import ctypes
import os

from ._capi import (DEVICE_CUDA, DEVICE_ROCM, F32, backward_p, heed_backward_args,
                    heed_run_stats, heed_tensor)
from ._kernels import _is_path, _options
from ._library import check, lib, need_compiler
from ._tensors import Tensor, alloc, current_stream, encode, stream_handle
from .errors import invalid


class Backward:
    """A compiled backward kernel (a ``heed_backward``), made by :func:`compile_backward`."""

    _release = None  # set below; survives module teardown through the class

    def __init__(self, handle, buffer_names, dtype_code):
        self._handle = handle
        self._dtype = dtype_code
        count = lib.heed_backward_num_buffer_grads(handle)
        #: The names of the buffers whose gradients run() returns, in order.
        self.gradient_buffers = [
            buffer_names[lib.heed_backward_buffer_grad_index(handle, i)] for i in range(count)]
        self._buffer_names = buffer_names
        self.last_stats = None

    def close(self):
        """Releases the kernel (later calls raise)."""
        if self._handle:
            Backward._release(self._handle)
            self._handle = None

    def __del__(self):
        self.close()

    def run(self, q, k, v, out, lse, dout, buffers=None, num_threads=0, stream=None,
            kv_lens=None, q_lens=None, cu_seqlens_q=None, cu_seqlens_kv=None):
        """The gradients of ``sum(dout * out)``: returns (dq, dk, dv, grads), grads a dict
        buffer name -> f32 gradient shaped like the buffer. out and lse (f32
        [B, Hq, Sq]) are the forward's (a kernel compiled with ``lse=True``); buffers a
        dict name -> tensor or a sequence in declaration order. Tensors are numpy
        arrays or torch tensors on the CPU, or torch CUDA/ROCm tensors (the GPU backward's
        kernels, on `stream` or torch's current stream; docs/backward.md "GPU
        kernels"; not run on a GPU yet). A ragged batch (a backward compiled with
        ``kv_lens``, ``q_lens``, ``cu_seqlens_q`` / ``cu_seqlens_kv``; host int32 tensors, for
        GPU calls too):
        the forward's lengths; packed, dq comes back packed like q and dk, dv like k and
        v (docs/backward.md, "Ragged batches")."""
        if not self._handle:
            raise invalid("the backward kernel was closed")
        if buffers is None:
            buffers = []
        elif hasattr(buffers, "keys"):
            missing = [n for n in self._buffer_names if n not in buffers]
            if missing:
                raise invalid("missing buffer %s" % ", ".join("'%s'" % n for n in missing))
            buffers = [buffers[n] for n in self._buffer_names]
        ts = {name: Tensor(x, name) for name, x in
              (("q", q), ("k", k), ("v", v), ("out", out), ("lse", lse), ("dout", dout))}
        grads_out = {"dq": alloc(q, tuple(q.shape), self._dtype),
                     "dk": alloc(q, tuple(k.shape), self._dtype),
                     "dv": alloc(q, tuple(v.shape), self._dtype)}
        gts = {name: Tensor(x, name, writable=True) for name, x in grads_out.items()}
        bts = [Tensor(b, "buffer %d" % i) for i, b in enumerate(buffers)]
        lts = {name: Tensor(x, name) for name, x in
               (("kv_lens", kv_lens), ("q_lens", q_lens), ("cu_seqlens_q", cu_seqlens_q),
                ("cu_seqlens_kv", cu_seqlens_kv)) if x is not None}
        index = {n: i for i, n in enumerate(self._buffer_names)}
        bgrads = [alloc(q, tuple(buffers[index[n]].shape), F32) for n in self.gradient_buffers]
        bgts = [Tensor(g, "gradient of '%s'" % n, writable=True)
                for g, n in zip(bgrads, self.gradient_buffers)]
        args = heed_backward_args()
        lib.heed_backward_args_init(ctypes.byref(args))
        for name, t in ts.items():
            setattr(args, name, ctypes.pointer(t.struct))
        for name, t in gts.items():
            setattr(args, name, ctypes.pointer(t.struct))
        for name, t in lts.items():
            setattr(args, name, ctypes.pointer(t.struct))
        arrays = []
        for field, count, tensors in (("buffers", "num_buffers", bts),
                                      ("buffer_grads", "num_buffer_grads", bgts)):
            if tensors:
                array = (heed_tensor * len(tensors))(*[t.struct for t in tensors])
                arrays.append(array)
                setattr(args, field, ctypes.cast(array, ctypes.POINTER(heed_tensor)))
            setattr(args, count, len(tensors))
        args.num_threads = int(num_threads or 0)
        if ts["q"].device_type in (DEVICE_CUDA, DEVICE_ROCM):
            handle_s = stream_handle(stream)
            args.stream = handle_s if handle_s is not None else current_stream(
                list(ts.values()))
        elif stream is not None:
            stream_handle(stream)  # a bad value is an error on every device
        stats = heed_run_stats()
        args.stats = ctypes.pointer(stats)
        status = lib.heed_attention_backward(self._handle, ctypes.byref(args))
        keep = (ts, gts, bts, bgts, lts, arrays)
        del keep
        check(status)
        self.last_stats = {"visited_blocks": int(stats.visited_blocks),
                           "total_blocks": int(stats.total_blocks)}
        return (grads_out["dq"], grads_out["dk"], grads_out["dv"],
                dict(zip(self.gradient_buffers, bgrads)))

    __call__ = run


Backward._release = lib.heed_backward_release


def compile_backward(spec, *, variant=None, dtype="float32", head_dim=64, head_dim_v=0,
                     layout="bhsd", scale=None, params=None, analyze_mask=True,
                     use_cache=True, kv_lens=False, q_lens=False, cu_seqlens_q=False,
                     cu_seqlens_kv=False, gpu_kernel=None):
    """Compiles the backward of a variant for this machine's CPU (the options of
    :func:`heed.compile`; the forward to pair it with is compiled with ``lse=True``).
    use_cache: find it in (and add it to) the kernel cache, memory then disk, as the
    forward. kv_lens, q_lens, cu_seqlens_q, cu_seqlens_kv: a ragged batch's backward,
    as the forward compiled with them (its calls then pass the lengths). gpu_kernel:
    the kernels on CUDA tensors: None, 'auto' or 'tensor-cores' (mma.sync), or a
    wgmma kind ('wgmma', on sm_90: docs/backward.md, "On Hopper (wgmma)"); 'simt'
    is refused. Raises CompileError naming the buffer where the score is not
    differentiable."""
    need_compiler("heed_backward_compile")
    from ._kernels import compile as compile_forward
    names = compile_forward(spec, variant=variant, dtype=dtype, head_dim=head_dim,
                            head_dim_v=head_dim_v, layout=layout, scale=scale,
                            params=params, analyze_mask=analyze_mask,
                            use_cache=use_cache).buffer_names
    opts, keep = _options(dtype, head_dim, head_dim_v, layout, False, scale, variant, params,
                          None, analyze_mask, use_cache, kv_lens=kv_lens, q_lens=q_lens,
                          cu_seqlens_q=cu_seqlens_q, cu_seqlens_kv=cu_seqlens_kv,
                          gpu_kernel=gpu_kernel)
    if _is_path(spec):
        with open(os.fspath(spec)) as f:
            text = encode(f.read(), "the spec")
    else:
        text = encode(spec, "the spec")
    handle = backward_p()
    status = lib.heed_backward_compile(text, b"<spec>", ctypes.byref(opts), ctypes.byref(handle))
    del keep
    check(status)
    return Backward(handle, names, opts.dtype)
