"""FlexAttention's API on heed: flex_attention, create_block_mask, BlockMask, and_masks,
or_masks, noop_mask, and explain() to see the spec a call compiles.

A script written for ``torch.nn.attention.flex_attention`` runs with its import changed::

    from heed.flex import flex_attention, create_block_mask   # was torch.nn.attention.flex_attention

``score_mod(score, b, h, q_idx, kv_idx)`` and ``mask_mod(b, h, q_idx, kv_idx)`` are traced
(see heed/_trace.py) into one ``.attn`` variant, compiled once per distinct text (and
dtype, head dims, scale, lse) and run by heed's kernel on numpy arrays or torch tensors.
``create_block_mask`` does no O(S^2) work: it only traces the mask; which blocks are
empty, full or partial is derived by heed's mask analysis when the kernel is compiled
(and, for masks reading captured tensors, from run-time summaries of those tensors).
"""

import sys
import warnings

from . import _kernels, _trace
from ._tensors import is_torch_gpu
from .errors import invalid
from ._trace import TraceError, Value

__all__ = ["flex_attention", "create_block_mask", "BlockMask", "and_masks", "or_masks",
           "noop_mask", "explain", "TraceError", "where", "exp", "log", "tanh", "sqrt",
           "minimum", "maximum", "clamp", "sigmoid"]

#: FlexAttention's kernel_options that tune its Triton kernels: accepted, no effect here.
_FLEX_TUNING_OPTIONS = {
    "BLOCK_M", "BLOCK_N", "BLOCK_M1", "BLOCK_N1", "BLOCK_M2", "BLOCK_N2", "num_warps",
    "num_stages", "PRESCALE_QK", "ROWS_GUARANTEED_SAFE", "BLOCKS_ARE_CONTIGUOUS",
    "FORCE_USE_FLEX_ATTENTION", "WRITE_DQ", "OUTPUT_LOGSUMEXP", "OUTPUT_MAX", "USE_TMA",
    "kpack", "matrix_instr_nonkdim", "waves_per_eu", "SPARSE_Q_BLOCK_SIZE",
    "SPARSE_KV_BLOCK_SIZE", "BACKEND", "fwd_num_warps", "fwd_num_stages", "bwd_num_warps",
    "bwd_num_stages",
}
#: heed's own kernel_options.
_HEED_OPTIONS = {"num_threads", "stream", "gpu_kernel"}
# (Options the torch operator does not take: a call with them runs directly.)
_DIRECT_OPTIONS = {"num_threads", "stream"}
_warned = set()


def noop_mask(b, h, q_idx, kv_idx):
    """The mask that keeps every (query, key) pair."""
    return True


def _identity_score(score, b, h, q_idx, kv_idx):
    return score


def _check_mods(mods, what):
    if not mods:
        raise TypeError("%s needs at least one mask_mod" % what)
    for m in mods:
        if not callable(m):
            raise TypeError("%s: every argument must be a mask_mod, got %s"
                            % (what, type(m).__name__))


def and_masks(*mask_mods):
    """A mask_mod that keeps a pair when every one of `mask_mods` keeps it."""
    _check_mods(mask_mods, "and_masks")

    def and_mask(b, h, q_idx, kv_idx):
        result = mask_mods[0](b, h, q_idx, kv_idx)
        for m in mask_mods[1:]:
            result = result & m(b, h, q_idx, kv_idx)
        return result
    return and_mask


def or_masks(*mask_mods):
    """A mask_mod that keeps a pair when any one of `mask_mods` keeps it."""
    _check_mods(mask_mods, "or_masks")

    def or_mask(b, h, q_idx, kv_idx):
        result = mask_mods[0](b, h, q_idx, kv_idx)
        for m in mask_mods[1:]:
            result = result | m(b, h, q_idx, kv_idx)
        return result
    return or_mask


# ---- functions that trace, and compute on plain values otherwise ------------------------


def _dual(traced, numeric, name):
    def f(*args, **kwargs):
        if any(isinstance(a, (Value, _trace.Captured)) for a in args) or any(
                isinstance(v, Value) for v in kwargs.values()):
            return traced(*args, **kwargs)
        return numeric(*args, **kwargs)
    f.__name__ = f.__qualname__ = name
    f.__doc__ = ("``%s``: on traced values it records the operation for heed; on numbers "
                 "and arrays it computes with numpy." % name)
    return f


def _np():
    import numpy
    return numpy


where = _dual(_trace.where, lambda c, a, b: _np().where(c, a, b), "where")
exp = _dual(lambda a: _trace.unary("exp", a), lambda a: _np().exp(a), "exp")
log = _dual(lambda a: _trace.unary("log", a), lambda a: _np().log(a), "log")
tanh = _dual(lambda a: _trace.unary("tanh", a), lambda a: _np().tanh(a), "tanh")
sqrt = _dual(lambda a: _trace.unary("sqrt", a), lambda a: _np().sqrt(a), "sqrt")
sigmoid = _dual(_trace.sigmoid, lambda a: 1.0 / (1.0 + _np().exp(-_np().asarray(a))), "sigmoid")
minimum = _dual(_trace.minimum, lambda a, b: _np().minimum(a, b), "minimum")
maximum = _dual(_trace.maximum, lambda a, b: _np().maximum(a, b), "maximum")
clamp = _dual(_trace.clamp, lambda x, lo=None, hi=None: _np().clip(x, lo, hi), "clamp")


# ---- block masks ---------------------------------------------------------------------------


def _fn_name(fn):
    return getattr(fn, "__name__", None) or type(fn).__name__


class BlockMask:
    """What :func:`create_block_mask` returns: the traced mask and the shape it was made
    for. It holds no block table: heed derives the blocks from the mask when it compiles
    the kernel. ``sparsity()``, ``to_string()`` and ``print()`` ask the compiled kernel
    which blocks it skips (heed.pictures)."""

    def __init__(self, mask_mod, trace, B, H, Q_LEN, KV_LEN, BLOCK_SIZE, device):
        self.mask_mod = mask_mod
        self.trace = trace
        self.shape = (B, H, Q_LEN, KV_LEN)
        self.seq_lengths = (Q_LEN, KV_LEN)
        self.BLOCK_SIZE = BLOCK_SIZE
        self.device = device
        self._census = None

    @property
    def spec(self):
        """The mask as the text of a heed variant."""
        return _trace.emit(mask=self.trace.value).text

    def census(self, head_dim=16):
        """The block classes heed's compiled classifier gives this mask at BLOCK_SIZE
        (see heed.pictures.block_census); computed once."""
        if self._census is None:
            from . import pictures
            self._census = pictures.block_census(self, head_dim=head_dim)
        return self._census

    def sparsity(self):
        """The percentage of blocks (all batches and heads) that heed never visits."""
        return 100.0 * self.census().fraction("empty")

    def to_string(self, grid_size=(20, 20), limit=4):
        from . import pictures
        return pictures.block_text(self, max_rows=grid_size[0], max_cols=grid_size[1],
                                   limit=limit)

    def __str__(self):
        return self.to_string()

    def __repr__(self):
        return "BlockMask(shape=%s, BLOCK_SIZE=%s, mask_mod=%s)" % (
            self.shape, self.BLOCK_SIZE, _fn_name(self.mask_mod))

    def to(self, device):
        """This mask for `device` (heed reads captured tensors where q is: nothing moves)."""
        other = BlockMask(self.mask_mod, self.trace, *self.shape, self.BLOCK_SIZE, device)
        other._census = self._census
        return other


def _positive(value, what):
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise TypeError("%s must be an int, got %s" % (what, type(value).__name__))
    value = int(value)
    if value <= 0:
        raise invalid("%s must be positive, got %d" % (what, value))
    return value


def create_block_mask(mask_mod, B, H, Q_LEN, KV_LEN, device=None, BLOCK_SIZE=128,
                      _compile=False, separate_full_blocks=True, compute_dq_write_order=False,
                      dq_kv_order=True):
    """FlexAttention's ``create_block_mask``: a :class:`BlockMask` for `mask_mod` on
    sequences of Q_LEN queries and KV_LEN keys (B, H: None broadcasts, as in torch).

    It traces `mask_mod` (raising :class:`TraceError` for what cannot be traced) and
    does nothing else: no O(Q_LEN * KV_LEN) mask evaluation. `device`, `_compile` and
    torch's other tuning arguments are accepted for compatibility; the kernel runs where
    q is."""
    B = 1 if B is None else _positive(B, "B")
    H = 1 if H is None else _positive(H, "H")
    Q_LEN, KV_LEN = _positive(Q_LEN, "Q_LEN"), _positive(KV_LEN, "KV_LEN")
    if isinstance(BLOCK_SIZE, (tuple, list)):
        if len(BLOCK_SIZE) != 2:
            raise invalid("BLOCK_SIZE must be an int or a pair, got %r" % (BLOCK_SIZE,))
        block = (_positive(BLOCK_SIZE[0], "BLOCK_SIZE"), _positive(BLOCK_SIZE[1], "BLOCK_SIZE"))
    else:
        block = (_positive(BLOCK_SIZE, "BLOCK_SIZE"),) * 2
    if mask_mod is None:
        mask_mod = noop_mask
    trace = _trace.trace_mask(mask_mod)
    return BlockMask(mask_mod, trace, B, H, Q_LEN, KV_LEN, block, device)


# ---- running ----------------------------------------------------------------------------------


def _shape(x, what):
    shape = getattr(x, "shape", None)
    if shape is None:
        iface = getattr(x, "__array_interface__", None) or getattr(
            x, "__cuda_array_interface__", None)
        shape = iface["shape"] if iface else None
    if shape is None:
        raise TypeError("%s: expected a tensor (numpy array or torch tensor), got %s"
                        % (what, type(x).__name__))
    return tuple(int(s) for s in shape)


def _convert_buffer(buf, like):
    """The tensor to pass for `buf`: of the element type its declaration says, on the
    device of `like` (q) when q is a torch tensor."""
    array = buf.array
    mod = (type(array).__module__ or "").split(".")[0]
    like_mod = (type(like).__module__ or "").split(".")[0]
    if like_mod == "torch":
        torch = sys.modules["torch"]
        if mod != "torch":
            array = torch.as_tensor(_np().asarray(array))
        if buf.convert:
            array = array.to(getattr(torch, buf.convert))
        if array.device != like.device:
            array = array.to(like.device)
        return array
    if buf.convert:
        if mod == "torch":
            return array.to(getattr(sys.modules["torch"], buf.convert))
        return _np().asarray(array).astype(buf.convert)
    if mod == "torch" and is_torch_gpu(array):
        return array.cpu()
    return array


def _kernel_options(options):
    """(num_threads, stream) from kernel_options; FlexAttention's tuning options are
    accepted without effect, others are reported once."""
    if options is None:
        return 0, None
    if not hasattr(options, "items"):
        raise TypeError("kernel_options must be a dict, got %s" % type(options).__name__)
    for key in options:
        if key not in _FLEX_TUNING_OPTIONS and key not in _HEED_OPTIONS and key not in _warned:
            _warned.add(key)
            warnings.warn("heed.flex_attention: kernel_options[%r] is unknown to heed and has "
                          "no effect (heed's options: %s)" % (key, ", ".join(sorted(
                              _HEED_OPTIONS))), stacklevel=3)
    return options.get("num_threads", 0), options.get("stream")


def build(score_mod=None, block_mask=None, positions=False, sinks=None):
    """The traced variant of a flex_attention call: :class:`_trace.Emitted`; `sinks`
    (one logit per query head) makes it softmax with learned sink logits."""
    mask = block_mask.trace.value if block_mask is not None else None
    if mask is not None and mask.op == "const" and mask.args[0] is True:
        mask = None
    score = None
    if score_mod is not None and score_mod is not _identity_score:
        score = _trace.trace_score(score_mod).value
        if score.op == "var":
            score = None
    sink_buffer = None
    if sinks is not None:
        sink_buffer = _trace.Buffer(sinks, "sinks")
        if len(sink_buffer.shape) != 1 or sink_buffer.elem not in ("f32", "f16", "bf16"):
            raise invalid("sinks must be a rank-1 float tensor of one logit per query head, "
                          "got %s of shape %s" % (sink_buffer.elem, list(sink_buffer.shape)))
    return _trace.emit(mask=mask, score=score, positions=positions, sinks=sink_buffer)


def _torch_ops():
    """heed.torch_ops, or None for a torch without torch.library.custom_op (< 2.4)."""
    try:
        from . import torch_ops
    except (ImportError, AttributeError):
        return None
    return torch_ops


def _is_torch(x):
    return (type(x).__module__ or "").split(".")[0] == "torch"


def check_call(query, key, value, block_mask, enable_gqa):
    """Checks a flex_attention call's shapes as torch does; returns (q, k, v) shapes."""
    qs, ks, vs = _shape(query, "query"), _shape(key, "key"), _shape(value, "value")
    if len(qs) != 4 or len(ks) != 4 or len(vs) != 4:
        raise invalid("flex_attention takes rank-4 [B, H, S, D] query, key and value; got "
                      "%s, %s and %s" % (list(qs), list(ks), list(vs)))
    if ks[:3] != vs[:3]:
        raise invalid("key %s and value %s must agree in batch, heads and length"
                      % (list(ks), list(vs)))
    if qs[0] != ks[0] or qs[3] != ks[3]:
        raise invalid("query %s and key %s must agree in batch and head dim"
                      % (list(qs), list(ks)))
    if qs[1] != ks[1]:
        if not enable_gqa:
            raise invalid("query has %d heads and key/value %d: set enable_gqa=True for "
                          "grouped-query attention" % (qs[1], ks[1]))
        if qs[1] % ks[1]:
            raise invalid("query heads (%d) must be a multiple of key/value heads (%d)"
                          % (qs[1], ks[1]))
    if block_mask is not None:
        if not isinstance(block_mask, BlockMask):
            raise TypeError("block_mask must come from heed.create_block_mask, got %s"
                            % type(block_mask).__name__)
        if block_mask.seq_lengths != (qs[2], ks[2]):
            raise invalid("block_mask was made for Q_LEN=%d, KV_LEN=%d but query has %d and "
                          "key %d positions" % (block_mask.seq_lengths + (qs[2], ks[2])))
    return qs, ks, vs


def flex_attention(query, key, value, score_mod=None, block_mask=None, scale=None,
                   enable_gqa=False, return_lse=False, kernel_options=None, *,
                   return_aux=None, out=None, lse=None, sinks=None):
    """FlexAttention's ``flex_attention`` on heed.

    query ``[B, Hq, L, E]``, key ``[B, Hkv, S, E]``, value ``[B, Hkv, S, Ev]``: numpy
    arrays or torch tensors (float32, float16, bfloat16; CPU, or CUDA for torch).
    score_mod(score, b, h, q_idx, kv_idx) and block_mask (from :func:`create_block_mask`)
    as in torch; scale defaults to 1/sqrt(E); enable_gqa must be set when Hq != Hkv.
    Returns the output ``[B, Hq, L, Ev]`` of q's dtype, or ``(out, lse)`` with
    ``return_lse=True`` (lse float32 ``[B, Hq, L]``, natural log, ``-inf`` for a query
    that sees no key, whose output is 0 — as torch's). ``return_aux`` (torch >= 2.9's
    ``AuxRequest(lse=True)``) returns ``(out, aux)`` with ``aux.lse``.

    kernel_options: FlexAttention's tuning keys are accepted and have no effect here;
    heed reads ``num_threads`` (CPU threads, 0 = all cores), ``stream`` and
    ``gpu_kernel`` (:func:`heed.compile`'s: which GPU kernels, forward and, through
    torch's autograd, backward; 'wgmma' for Hopper's). ``out`` and
    ``lse`` (heed's additions): tensors to write into instead of allocating. ``sinks``
    (heed's addition): a float tensor ``[Hq]`` of learned sink logits, one per query
    head, that join each row's softmax denominator only (as gpt-oss); the lse then
    includes them."""
    qs, _, _ = check_call(query, key, value, block_mask, enable_gqa)
    if sinks is not None and tuple(_shape(sinks, "sinks")) != (qs[1],):
        raise invalid("sinks must have shape [%d] (one logit per query head), got %s"
                      % (qs[1], list(_shape(sinks, "sinks"))))
    if sinks is None and out is None and lse is None and _is_torch(query) and not (
            kernel_options and any(k in _DIRECT_OPTIONS for k in kernel_options)):
        torch_ops = _torch_ops()
        if torch_ops is not None:
            return torch_ops.flex_attention(query, key, value, score_mod, block_mask, scale,
                                            enable_gqa, return_lse, kernel_options,
                                            return_aux=return_aux)
    want_lse = bool(return_lse) or bool(getattr(return_aux, "lse", False))
    num_threads, stream = _kernel_options(kernel_options)
    emitted = build(score_mod, block_mask, sinks=sinks)
    buffers = [_convert_buffer(b, query) for b in emitted.buffers]
    result = _kernels.attention(query, key, value, emitted.text, buffers=buffers, scale=scale,
                                return_lse=want_lse, num_threads=num_threads, stream=stream,
                                out=out, lse=lse,
                                gpu_kernel=(kernel_options or {}).get("gpu_kernel"))
    if return_aux is not None:
        out, lse = result if want_lse else (result, None)
        return out, _Aux(lse)
    return result


class _Aux:
    """What torch's flex_attention returns with return_aux: the lse (max_scores: None)."""

    def __init__(self, lse):
        self.lse = lse
        self.max_scores = None


def explain(score_mod=None, block_mask=None, *, mask_mod=None):
    """The ``.attn`` spec heed compiles for ``flex_attention(..., score_mod=score_mod,
    block_mask=block_mask)`` (or for a bare `mask_mod`), with a comment naming the
    captured tensors each buffer is read from."""
    if mask_mod is not None:
        if block_mask is not None:
            raise TypeError("explain: give block_mask or mask_mod, not both")
        block_mask = BlockMask(mask_mod, _trace.trace_mask(mask_mod), 1, 1, 1, 1, (128, 128),
                               "cpu")
    emitted = build(score_mod, block_mask)
    head = ["# heed.flex: score_mod=%s, mask_mod=%s" % (
        _fn_name(score_mod) if score_mod is not None else "None",
        _fn_name(block_mask.mask_mod) if block_mask is not None else "None")]
    for b in emitted.buffers:
        head.append("# buffer from the captured tensor '%s' (%s %s%s)" % (
            b.hint, _trace._dtype_name(b.array), list(b.shape),
            ", passed as %s" % b.convert if b.convert else ""))
    return "\n".join(head) + "\n" + emitted.text
