"""Python binding of heed: compile attention variants and run them.

heed compiles attention variants written in its ``.attn`` spec language (a
score modifier, a mask, compile-time params and run-time buffers; see
``docs/spec-language.md``) into fused CPU, NVIDIA and AMD GPU kernels. This package wraps the C
API (``include/heed/heed.h``) with :mod:`ctypes`; nothing is compiled for
Python, and :mod:`numpy` is imported only when an array must be allocated.

Quick start::

    import numpy as np, heed

    q = np.random.randn(1, 8, 128, 64).astype(np.float32)     # [B, H, S, D]
    k = np.random.randn(1, 8, 128, 64).astype(np.float32)
    v = np.random.randn(1, 8, 128, 64).astype(np.float32)
    out = heed.attention(q, k, v, "variant causal { mask = causal() }")

    kernel = heed.compile("examples/document.attn", head_dim=64, lse=True)
    out, lse = kernel(q, k, v, buffers={"doc_ids": doc_ids})

Tensors are anything with ``__array_interface__`` (numpy),
``__cuda_array_interface__`` (cupy, numba) or ``__dlpack__`` (torch CPU
tensors, including bfloat16 and bool), and torch GPU tensors (read directly:
device pointer, shape, strides). They are used in place, without copies:
strided views work as long as the last dimension is contiguous.

CUDA tensors (every tensor of a call on one GPU, any device) run heed's
GPU kernel, compiled for the device's compute capability at the first call
and kept loaded for the process; the launch goes to ``stream=`` if given, else
torch's current stream for torch tensors (cupy's for cupy arrays), else the
default stream, and the call returns once the kernel is queued there (a
buffer read out of range is reported by a later call on that stream or by
:func:`synchronize`; see docs/runtime.md, "GPU launches"). Without a
CUDA driver such a call raises :class:`UnsupportedError` saying so::

    q = torch.randn(4, 16, 8192, 128, device="cuda", dtype=torch.bfloat16)
    out = heed.attention(q, q, q, "examples/causal.attn")   # on the GPU

A ROCm build of torch calls its AMD GPUs "cuda" too (``torch.version.hip`` is
set): its tensors are ROCm tensors to heed (device type 10), run the AMD kernel
(compiled for gfx942 unless a ``target='rocm:gfxNNN'`` kernel is used) on
torch's current HIP stream. That path has never run on an AMD GPU.

The FlexAttention front door (:mod:`heed.flex`) takes the ``score_mod`` and
``mask_mod`` functions FlexAttention takes, traces them and compiles the
equivalent ``.attn`` variant::

    from heed import flex_attention, create_block_mask
    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx
    block_mask = create_block_mask(causal, None, None, 128, 128, device="cpu")
    out = flex_attention(q, k, v, block_mask=block_mask)

The package is split by concern: ``_capi`` (the ctypes declarations of heed.h),
``_library`` (finding and opening libheed), ``_tensors`` (tensor views), ``_kernels``
(compile, load, run, the cache), ``flex`` (the FlexAttention front door),
``torch_ops`` (the ``heed::attention`` torch op), ``pictures`` (block maps) and
``distributed`` (ring attention). See docs/python.md.

The shared library is found through ``$HEED_LIBRARY`` (a full path), then the copy
bundled by ``pip install ./python`` (``heed/lib/libheed.so``), then
``<repo>/build/lib/libheed.so`` next to this package, then
``ctypes.util.find_library("heed")``.
"""

from . import _library
from ._capi import (ABI_VERSION, BF16, BOOL, DEVICE_CPU, DEVICE_CUDA, DEVICE_ROCM,
                    ERROR_COMPILE, ERROR_INVALID_ARGUMENT, ERROR_IO, ERROR_LOAD, ERROR_RUN,
                    ERROR_SPEC, ERROR_UNSUPPORTED, F16, F32, I8, I32, I64, LAYOUT_BHSD,
                    LAYOUT_BSHD, OK)
from ._kernels import (Kernel, attention, cache_clear, cache_set_directory, cache_stats,
                       compile, export, load, synchronize)
from ._tensors import DTYPE_NAMES
from .backward import Backward, compile_backward
from .errors import (CompileError, HeedError, HeedIOError, InvalidArgumentError, LoadError,
                     RunError, SpecError, UnsupportedError)
from .flex import (BlockMask, TraceError, and_masks, clamp, create_block_mask, exp, explain,
                   flex_attention, log, maximum, minimum, noop_mask, or_masks, sigmoid, sqrt,
                   tanh, where)

__all__ = [
    "HeedError", "InvalidArgumentError", "SpecError", "CompileError", "LoadError",
    "RunError", "UnsupportedError", "HeedIOError",
    "Kernel", "compile", "load", "export", "attention", "synchronize",
    "Backward", "compile_backward",
    "cache_stats", "cache_clear", "cache_set_directory",
    "version", "abi_version", "library_path",
    "F32", "F16", "BF16", "I8", "I32", "I64", "BOOL",
    "LAYOUT_BHSD", "LAYOUT_BSHD", "DTYPE_NAMES", "ABI_VERSION", "OK", "ERROR_INVALID_ARGUMENT",
    "ERROR_SPEC", "ERROR_COMPILE", "ERROR_LOAD", "ERROR_RUN", "ERROR_UNSUPPORTED", "ERROR_IO",
    "DEVICE_CPU", "DEVICE_CUDA", "DEVICE_ROCM",
    "flex_attention", "create_block_mask", "BlockMask", "and_masks", "or_masks", "noop_mask",
    "explain", "TraceError", "where", "exp", "log", "tanh", "sqrt", "sigmoid", "minimum",
    "maximum", "clamp", "show_blocks",
]

#: The loaded library (a ctypes.CDLL with every heed.h function declared).
_lib = _library.lib

#: heed's version string (``heed_version()``).
__version__ = _library.version


def show_blocks(block_mask, path=None, **kwargs):
    """The EMPTY / FULL / PARTIAL blocks of a block mask, as text or a PNG (see
    :func:`heed.pictures.show_blocks`)."""
    from . import pictures  # numpy, and matplotlib for a PNG, only when asked for
    return pictures.show_blocks(block_mask, path, **kwargs)


def version():
    """heed's version string, from the loaded library."""
    return __version__


def abi_version():
    """The ABI version of the loaded library (1)."""
    return int(_lib.heed_abi_version())


def library_path():
    """The path (or name) of the loaded shared library."""
    return _library.path
