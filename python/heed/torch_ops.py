"""heed as a torch operator: ``torch.ops.heed.attention``, registered with torch.library.

The op takes q, k, v, the variant's spec text and its buffers, and returns ``(out, lse)``
(lse f32 ``[B, Hq, Sq]``, always computed: the backward needs it; the Python wrappers
return it only when asked). Its fake (meta) implementation gives the output shapes
without running anything, so ``torch.compile`` keeps a heed call as one node of its
graph; the real implementation runs heed's CPU kernel on CPU tensors (read through
DLPack) and its CUDA kernel on CUDA tensors, through the same path as
:func:`heed.attention`. Its autograd formula (``torch.library.register_autograd``) runs
heed's backward kernels (docs/backward.md) on CPU and CUDA (or ROCm) tensors: gradients of q, k, v
and of the variant's float buffers (a learned bias table, ALiBi slopes), so
``loss.backward()`` works (on CUDA through the GPU backward's two kernels, not run on a GPU
yet); a gradient flowing into lse raises ``NotImplementedError``.

``torch.ops.heed.serving_attention`` (:func:`serving_attention`) is the serving call:
per-entry lengths, paged caches and packed sequences (docs/decode.md). Its autograd
formula runs the backward of a ragged batch (``heed::serving_attention_backward``), so
packed or length-padded training batches get gradients; a paged cache is inference only.

Importing this module needs torch; ``import heed`` alone never imports torch.
"""

from typing import List, Optional, Tuple

import torch

from . import _kernels, flex
from .backward import compile_backward

__all__ = ["attention", "flex_attention", "serving_attention"]


@torch.library.custom_op("heed::attention", mutates_args=())
def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: str,
               buffers: List[torch.Tensor], scale: Optional[float], return_lse: bool,
               layout: str, gpu_kernel: Optional[str] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    # lse always: the backward recomputes the probabilities from it. gpu_kernel:
    # which GPU kernels, forward and backward (heed.compile's; None: the default).
    return _kernels.attention(q, k, v, spec, buffers=list(buffers), scale=scale,
                              return_lse=True, layout=layout, gpu_kernel=gpu_kernel)


def _shapes(q, v, layout):
    if layout == "bshd":
        b, s, h = q.shape[0], q.shape[1], q.shape[2]
        return (b, s, h, v.shape[3]), (b, h, s)
    b, h, s = q.shape[0], q.shape[1], q.shape[2]
    return (b, h, s, v.shape[3]), (b, h, s)


@_attention.register_fake
def _attention_fake(q, k, v, spec, buffers, scale, return_lse, layout, gpu_kernel=None):
    out_shape, lse_shape = _shapes(q, v, layout)
    return q.new_empty(out_shape), q.new_empty(lse_shape, dtype=torch.float32)


_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16",
                torch.bfloat16: "bfloat16"}
_backward_kernels = {}
_LENGTHS = ("kv_lens", "q_lens", "cu_seqlens_q", "cu_seqlens_kv")


def _backward_kernel(spec, q, v, scale, layout, ragged=(), gpu_kernel=None):
    """heed's backward for this spec, dtype, head dims, layout, scale, ragged
    lengths (the names of _LENGTHS a call passes) and GPU kernel kind (compiled once per
    process; the kernel cache keeps it across processes)."""
    key = (spec, q.dtype, q.shape[-1], v.shape[-1], layout, scale, tuple(ragged), gpu_kernel)
    kernel = _backward_kernels.get(key)
    if kernel is None:
        kernel = compile_backward(spec, dtype=_DTYPE_NAMES[q.dtype], head_dim=q.shape[-1],
                                  head_dim_v=v.shape[-1], layout=layout, scale=scale,
                                  gpu_kernel=gpu_kernel, **{name: True for name in ragged})
        _backward_kernels[key] = kernel
    return kernel


def _host_lengths(*tensors):
    """Index tensors as heed reads them: host int32, contiguous (None stays None);
    device ones are copied, which waits for the device."""
    return [None if x is None else x.detach().to("cpu", torch.int32).contiguous()
            for x in tensors]


def _run_backward(op, q, k, v, out, lse, dout, dlse, spec, buffers, scale, layout,
                  lengths=None, gpu_kernel=None):
    """The body of both backward ops: (dq, dk, dv, one f32 gradient per buffer, zeros
    for the buffers the score does not differentiate in). lengths: a dict name of
    _LENGTHS -> host int32 tensor, for a ragged batch."""
    if dlse.numel() and bool(dlse.ne(0).any()):
        raise NotImplementedError(
            "%s: a gradient through lse is not supported (heed's backward takes the "
            "gradient of out only)" % op)
    if q.device.type not in ("cpu", "cuda"):
        raise NotImplementedError(
            "%s: the backward runs on CPU, CUDA and ROCm tensors only; move the tensors "
            "or run the forward under torch.no_grad()" % op)
    if q.device.type == "cuda" and q.dtype not in (torch.float16, torch.bfloat16):
        raise NotImplementedError(
            "%s: the GPU backward runs on matrix cores (tensor cores, MFMA), f16 or bf16 "
            "(got %s); cast, or run the backward on the CPU" % (op, q.dtype))
    lengths = lengths or {}
    kernel = _backward_kernel(spec, q, v, scale, layout,
                              [n for n in _LENGTHS if n in lengths], gpu_kernel)
    dq, dk, dv, grads = kernel(q, k, v, out, lse, dout.contiguous().to(q.dtype),
                               buffers=list(buffers), **lengths)
    buffer_grads = []
    for name, b in zip(kernel._buffer_names, buffers):
        g = grads.get(name)
        buffer_grads.append(g if g is not None else torch.zeros(b.shape, dtype=torch.float32,
                                                                device=b.device))
    return dq, dk, dv, buffer_grads


@torch.library.custom_op("heed::attention_backward", mutates_args=())
def _attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                        lse: torch.Tensor, dout: torch.Tensor, dlse: torch.Tensor, spec: str,
                        buffers: List[torch.Tensor], scale: Optional[float],
                        layout: str, gpu_kernel: Optional[str] = None
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                   List[torch.Tensor]]:
    """heed's backward kernel: (dq, dk, dv, one f32 gradient per buffer, zeros for the
    buffers the score does not differentiate in). An op of its own, so that
    torch.compile's AOTAutograd traces the backward graph with it as one node. dlse: the
    gradient flowing into lse (empty for none), refused unless it is all zeros; checked
    here, on real data, because a compiled backward traces the formula on fake tensors."""
    return _run_backward("heed::attention", q, k, v, out, lse, dout, dlse, spec, buffers,
                         scale, layout, gpu_kernel=gpu_kernel)


def _backward_fake(q, k, v, buffers):
    # Contiguous, as the real op allocates them (empty_like would keep a
    # transposed input's strides).
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape),
            [b.new_empty(b.shape, dtype=torch.float32) for b in buffers])


@_attention_backward.register_fake
def _attention_backward_fake(q, k, v, out, lse, dout, dlse, spec, buffers, scale, layout,
                             gpu_kernel=None):
    return _backward_fake(q, k, v, buffers)


def _setup_context(ctx, inputs, output):
    q, k, v, spec, buffers, scale, return_lse, layout, *rest = inputs
    out, lse = output
    ctx.spec, ctx.scale, ctx.layout = spec, scale, layout
    ctx.gpu_kernel = rest[0] if rest else None
    ctx.save_for_backward(q, k, v, out, lse, *buffers)


def _backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse, *buffers = ctx.saved_tensors
    dlse = grad_lse if grad_lse is not None else lse.new_empty((0,))
    dq, dk, dv, grads = torch.ops.heed.attention_backward(q, k, v, out, lse, grad_out, dlse,
                                                          ctx.spec, list(buffers), ctx.scale,
                                                          ctx.layout, ctx.gpu_kernel)
    buffer_grads = [g.to(b.dtype) if b.is_floating_point() else None
                    for g, b in zip(grads, buffers)]
    return dq, dk, dv, None, buffer_grads, None, None, None, None


torch.library.register_autograd("heed::attention", _backward, setup_context=_setup_context)


def _spec_text(spec):
    """Spec text for the op (a path is read: the op's argument is the text)."""
    if _kernels._is_path(spec):
        with open(spec, "r", encoding="utf-8") as f:
            return f.read()
    return spec.decode("utf-8") if isinstance(spec, bytes) else spec


def attention(q, k, v, spec, buffers=(), scale=None, return_lse=False, layout="bhsd",
              gpu_kernel=None):
    """:func:`heed.attention` as ``torch.ops.heed.attention``: one node in a
    torch.compile graph. `spec` is spec text or a ``.attn`` path; `buffers` a sequence in
    declaration order. gpu_kernel: the GPU kernels of the forward and of its autograd
    backward on CUDA tensors (:func:`heed.compile`'s; None: the default, tensor cores;
    'wgmma': Hopper's). Returns out, or (out, lse) with return_lse."""
    out, lse = torch.ops.heed.attention(q, k, v, _spec_text(spec), list(buffers),
                                        None if scale is None else float(scale),
                                        bool(return_lse), str(layout).lower(),
                                        None if gpu_kernel is None else str(gpu_kernel))
    return (out, lse) if return_lse else out


@torch.library.custom_op("heed::serving_attention", mutates_args=())
def _serving_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: str,
                       buffers: List[torch.Tensor], scale: Optional[float], layout: str,
                       kv_lens: Optional[torch.Tensor], page_table: Optional[torch.Tensor],
                       q_lens: Optional[torch.Tensor], cu_seqlens_q: Optional[torch.Tensor],
                       cu_seqlens_kv: Optional[torch.Tensor], gpu_kernel: Optional[str] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    # heed reads the index tensors on the host (it checks them and sizes the
    # launch there).
    host = _host_lengths(kv_lens, page_table, q_lens, cu_seqlens_q, cu_seqlens_kv)
    out_shape, lse_shape = _shapes(q, v, layout)
    # Rows past an entry's queries are not written: zeros, not whatever the
    # allocator left (a custom op's outputs must not alias nor leak memory).
    out = q.new_zeros(out_shape)
    lse = q.new_full(lse_shape, float("-inf"), dtype=torch.float32)
    _kernels.attention(q, k, v, spec, buffers=list(buffers), scale=scale, return_lse=True,
                       layout=layout, out=out, lse=lse, kv_lens=host[0], page_table=host[1],
                       q_lens=host[2], cu_seqlens_q=host[3], cu_seqlens_kv=host[4],
                       gpu_kernel=gpu_kernel)
    return out, lse


@_serving_attention.register_fake
def _serving_attention_fake(q, k, v, spec, buffers, scale, layout, kv_lens, page_table, q_lens,
                            cu_seqlens_q, cu_seqlens_kv, gpu_kernel=None):
    out_shape, lse_shape = _shapes(q, v, layout)
    return q.new_empty(out_shape), q.new_empty(lse_shape, dtype=torch.float32)


@torch.library.custom_op("heed::serving_attention_backward", mutates_args=())
def _serving_attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                out: torch.Tensor, lse: torch.Tensor, dout: torch.Tensor,
                                dlse: torch.Tensor, spec: str, buffers: List[torch.Tensor],
                                scale: Optional[float], layout: str,
                                kv_lens: Optional[torch.Tensor], q_lens: Optional[torch.Tensor],
                                cu_seqlens_q: Optional[torch.Tensor],
                                cu_seqlens_kv: Optional[torch.Tensor],
                                gpu_kernel: Optional[str] = None
                                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                           List[torch.Tensor]]:
    """The backward of a ragged batch (docs/backward.md, "Ragged batches"):
    heed::attention_backward with the forward's lengths. Gradients of rows past an
    entry's length are 0."""
    host = _host_lengths(kv_lens, q_lens, cu_seqlens_q, cu_seqlens_kv)
    lengths = {n: x for n, x in zip(_LENGTHS, host) if x is not None}
    return _run_backward("heed::serving_attention", q, k, v, out, lse, dout, dlse, spec,
                         buffers, scale, layout, lengths, gpu_kernel)


@_serving_attention_backward.register_fake
def _serving_attention_backward_fake(q, k, v, out, lse, dout, dlse, spec, buffers, scale,
                                     layout, kv_lens, q_lens, cu_seqlens_q, cu_seqlens_kv,
                                     gpu_kernel=None):
    return _backward_fake(q, k, v, buffers)


def _serving_setup_context(ctx, inputs, output):
    (q, k, v, spec, buffers, scale, layout, kv_lens, page_table, q_lens, cu_seqlens_q,
     cu_seqlens_kv, *rest) = inputs
    out, lse = output
    ctx.spec, ctx.scale, ctx.layout = spec, scale, layout
    ctx.gpu_kernel = rest[0] if rest else None
    ctx.paged = page_table is not None
    lengths = (kv_lens, q_lens, cu_seqlens_q, cu_seqlens_kv)
    ctx.given = [x is not None for x in lengths]
    ctx.num_buffers = len(buffers)
    ctx.save_for_backward(q, k, v, out, lse, *buffers, *[x for x in lengths if x is not None])


def _serving_backward(ctx, grad_out, grad_lse):
    if ctx.paged:
        raise NotImplementedError(
            "heed::serving_attention: no backward through a paged KV cache (a paged cache "
            "is for inference); pass k and v padded with kv_lens, or packed with "
            "cu_seqlens_kv, or run the forward under torch.no_grad()")
    q, k, v, out, lse, *rest = ctx.saved_tensors
    buffers, saved = rest[:ctx.num_buffers], iter(rest[ctx.num_buffers:])
    lengths = [next(saved) if given else None for given in ctx.given]
    dlse = grad_lse if grad_lse is not None else lse.new_empty((0,))
    dq, dk, dv, grads = torch.ops.heed.serving_attention_backward(
        q, k, v, out, lse, grad_out, dlse, ctx.spec, list(buffers), ctx.scale, ctx.layout,
        *lengths, ctx.gpu_kernel)
    buffer_grads = [g.to(b.dtype) if b.is_floating_point() else None
                    for g, b in zip(grads, buffers)]
    return (dq, dk, dv, None, buffer_grads, None, None, None, None, None, None, None, None)


torch.library.register_autograd("heed::serving_attention", _serving_backward,
                                setup_context=_serving_setup_context)


def serving_attention(q, k, v, spec, buffers=(), scale=None, return_lse=False, layout="bshd",
                      *, kv_lens=None, page_table=None, q_lens=None, cu_seqlens_q=None,
                      cu_seqlens_kv=None, gpu_kernel=None):
    """A serving call (docs/decode.md) as ``torch.ops.heed.serving_attention``: one
    node in a torch.compile graph. Its autograd formula runs heed's backward of a ragged
    batch (docs/backward.md, "Ragged batches"), so ``loss.backward()`` trains on packed
    sequences (FlashAttention's varlen layout) or a padded batch with lengths; a paged
    cache is for inference (its backward raises NotImplementedError). kv_lens,
    page_table (k, v a paged cache), q_lens, cu_seqlens_q, cu_seqlens_kv (packed
    sequences) as :meth:`heed.Kernel.run` takes them, int32; CPU tensors avoid a
    device-to-host copy. Rows of out past an entry's queries are 0 (lse -inf).
    gpu_kernel: the GPU kernels of the forward and of its autograd backward (None: the
    default; 'wgmma' for Hopper's, which takes lengths, packed sequences and paged
    caches of 8 keys a page or more). Returns out, or (out, lse) with return_lse."""
    out, lse = torch.ops.heed.serving_attention(
        q, k, v, _spec_text(spec), list(buffers), None if scale is None else float(scale),
        str(layout).lower(), kv_lens, page_table, q_lens, cu_seqlens_q, cu_seqlens_kv,
        None if gpu_kernel is None else str(gpu_kernel))
    return (out, lse) if return_lse else out


@torch.compiler.disable
def _build(score_mod, block_mask, query):
    """The traced variant and its buffers as torch tensors on q's device (outside any
    torch.compile graph: tracing runs Python that dynamo should not inline)."""
    emitted = flex.build(score_mod, block_mask)
    return emitted.text, [flex._convert_buffer(b, query) for b in emitted.buffers]


def flex_attention(query, key, value, score_mod=None, block_mask=None, scale=None,
                   enable_gqa=False, return_lse=False, kernel_options=None, *,
                   return_aux=None):
    """:func:`heed.flex_attention` for torch tensors through ``torch.ops.heed.attention``
    (heed.flex_attention takes this path by itself for torch tensors)."""
    flex.check_call(query, key, value, block_mask, enable_gqa)
    want_lse = bool(return_lse) or bool(getattr(return_aux, "lse", False))
    flex._kernel_options(kernel_options)
    gpu_kernel = (kernel_options or {}).get("gpu_kernel")
    text, buffers = _build(score_mod, block_mask, query)
    out, lse = torch.ops.heed.attention(query, key, value, text, buffers,
                                        None if scale is None else float(scale), want_lse,
                                        "bhsd", None if gpu_kernel is None else str(gpu_kernel))
    if return_aux is not None:
        return out, flex._Aux(lse if want_lse else None)
    return (out, lse) if want_lse else out
