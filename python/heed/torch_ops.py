"""heed as a torch operator: ``torch.ops.heed.attention``, registered with torch.library.

The op takes q, k, v, the variant's spec text and its buffers, and returns ``(out, lse)``
(lse is an empty tensor unless asked for). Its fake (meta) implementation gives the output
shapes without running anything, so ``torch.compile`` keeps a heed call as one node of
its graph; the real implementation runs heed's CPU kernel on CPU tensors (read through
DLPack) and its CUDA kernel on CUDA tensors, through the same path as
:func:`heed.attention`. heed has no backward pass yet: asking for a gradient raises.

Importing this module needs torch; ``import heed`` alone never imports torch.
"""

from typing import List, Optional, Tuple

import torch

from . import _kernels, flex

__all__ = ["attention", "flex_attention"]


@torch.library.custom_op("heed::attention", mutates_args=())
def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: str,
               buffers: List[torch.Tensor], scale: Optional[float], return_lse: bool,
               layout: str) -> Tuple[torch.Tensor, torch.Tensor]:
    result = _kernels.attention(q, k, v, spec, buffers=list(buffers), scale=scale,
                                return_lse=return_lse, layout=layout)
    if return_lse:
        return result
    return result, q.new_empty((0,), dtype=torch.float32)


def _shapes(q, v, layout):
    if layout == "bshd":
        b, s, h = q.shape[0], q.shape[1], q.shape[2]
        return (b, s, h, v.shape[3]), (b, h, s)
    b, h, s = q.shape[0], q.shape[1], q.shape[2]
    return (b, h, s, v.shape[3]), (b, h, s)


@_attention.register_fake
def _attention_fake(q, k, v, spec, buffers, scale, return_lse, layout):
    out_shape, lse_shape = _shapes(q, v, layout)
    lse = q.new_empty(lse_shape if return_lse else (0,), dtype=torch.float32)
    return q.new_empty(out_shape), lse


def _setup_context(ctx, inputs, output):
    pass


def _backward(ctx, grad_out, grad_lse):
    raise NotImplementedError(
        "heed::attention has no backward pass yet (heed computes the forward only); run it "
        "under torch.no_grad() or detach its inputs")


torch.library.register_autograd("heed::attention", _backward, setup_context=_setup_context)


def _spec_text(spec):
    """Spec text for the op (a path is read: the op's argument is the text)."""
    if _kernels._is_path(spec):
        with open(spec, "r", encoding="utf-8") as f:
            return f.read()
    return spec.decode("utf-8") if isinstance(spec, bytes) else spec


def attention(q, k, v, spec, buffers=(), scale=None, return_lse=False, layout="bhsd"):
    """:func:`heed.attention` as ``torch.ops.heed.attention``: one node in a
    torch.compile graph. `spec` is spec text or a ``.attn`` path; `buffers` a sequence in
    declaration order. Returns out, or (out, lse) with return_lse."""
    out, lse = torch.ops.heed.attention(q, k, v, _spec_text(spec), list(buffers),
                                        None if scale is None else float(scale),
                                        bool(return_lse), str(layout).lower())
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
    text, buffers = _build(score_mod, block_mask, query)
    out, lse = torch.ops.heed.attention(query, key, value, text, buffers,
                                        None if scale is None else float(scale), want_lse,
                                        "bhsd")
    if return_aux is not None:
        return out, flex._Aux(lse if want_lse else None)
    return (out, lse) if want_lse else out
