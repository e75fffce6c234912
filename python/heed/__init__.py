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

CUDA tensors (every tensor of a call on one GPU, device 0 so far) run heed's
GPU kernel, compiled for the device's compute capability at the first call
and kept loaded for the process; the launch goes to ``stream=`` if given, else
torch's current stream for torch tensors (cupy's for cupy arrays), else the
default stream, and the call returns once the kernel has finished. Without a
CUDA driver such a call raises :class:`UnsupportedError` saying so::

    q = torch.randn(4, 16, 8192, 128, device="cuda", dtype=torch.bfloat16)
    out = heed.attention(q, q, q, "examples/causal.attn")   # on the GPU

A ROCm build of torch calls its AMD GPUs "cuda" too (``torch.version.hip`` is
set): its tensors are ROCm tensors to heed (device type 10), run the AMD kernel
(compiled for gfx942 unless a ``target='rocm:gfxNNN'`` kernel is used) on
torch's current HIP stream. That path has never run on an AMD GPU.

The shared library is found through ``$HEED_LIBRARY`` (a full path), then
``<repo>/build/lib/libheed.so`` next to this package, then
``ctypes.util.find_library("heed")``.
"""

import collections
import ctypes
import ctypes.util
import os
import sys
import threading

__all__ = [
    "HeedError", "InvalidArgumentError", "SpecError", "CompileError", "LoadError",
    "RunError", "UnsupportedError", "HeedIOError",
    "Kernel", "compile", "load", "export", "attention",
    "cache_stats", "cache_clear", "cache_set_directory",
    "version", "abi_version", "library_path",
    "F32", "F16", "BF16", "I8", "I32", "I64", "BOOL",
    "LAYOUT_BHSD", "LAYOUT_BSHD",
]

ABI_VERSION = 1

# ---- constants (heed.h) ------------------------------------------------------

OK = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_SPEC = 2
ERROR_COMPILE = 3
ERROR_LOAD = 4
ERROR_RUN = 5
ERROR_UNSUPPORTED = 6
ERROR_IO = 7

F32, F16, BF16, I8, I32, I64, BOOL = range(7)

DEVICE_CPU = 1
DEVICE_CUDA = 2
DEVICE_ROCM = 10

LAYOUT_BHSD = 0
LAYOUT_BSHD = 1

#: heed dtype code -> the name this package uses for it (numpy's names).
DTYPE_NAMES = {F32: "float32", F16: "float16", BF16: "bfloat16", I8: "int8",
               I32: "int32", I64: "int64", BOOL: "bool"}
_DTYPE_SIZES = {F32: 4, F16: 2, BF16: 2, I8: 1, I32: 4, I64: 8, BOOL: 1}
# Every spelling accepted where a dtype is named.
_DTYPE_ALIASES = {
    "float32": F32, "f32": F32, "float": F32,
    "float16": F16, "f16": F16, "half": F16,
    "bfloat16": BF16, "bf16": BF16,
    "int8": I8, "i8": I8,
    "int32": I32, "i32": I32, "int": I32,
    "int64": I64, "i64": I64, "long": I64,
    "bool": BOOL, "bool_": BOOL,
}
_LAYOUTS = {"bhsd": LAYOUT_BHSD, "bshd": LAYOUT_BSHD}
_LAYOUT_NAMES = {LAYOUT_BHSD: "bhsd", LAYOUT_BSHD: "bshd"}

# ---- errors ------------------------------------------------------------------


class HeedError(Exception):
    """An error reported by heed.

    ``status`` is the C API's ``heed_status`` (e.g. :data:`ERROR_SPEC` = 2) and
    ``message`` the text of ``heed_last_error()`` (for spec errors, compiler-style
    ``file:line:col: error: ...`` lines with the source line and a caret).
    """

    def __init__(self, status, message):
        self.status = int(status)
        self.message = message
        super().__init__(message)

    def __str__(self):
        return self.message


class InvalidArgumentError(HeedError, ValueError):
    """HEED_ERROR_INVALID_ARGUMENT: a tensor, an option or a pointer is wrong."""


class SpecError(HeedError):
    """HEED_ERROR_SPEC: the spec does not parse or check."""


class CompileError(HeedError):
    """HEED_ERROR_COMPILE: lowering or code generation failed."""


class LoadError(HeedError):
    """HEED_ERROR_LOAD: an artifact is corrupt or for another target."""


class RunError(HeedError):
    """HEED_ERROR_RUN: the kernel reported an error (e.g. a buffer read out of range)."""


class UnsupportedError(HeedError):
    """HEED_ERROR_UNSUPPORTED: valid, but not available in this build or machine
    (for example CUDA tensors where there is no CUDA driver or GPU)."""


class HeedIOError(HeedError):
    """HEED_ERROR_IO: a file could not be read or written."""


_ERROR_CLASSES = {
    ERROR_INVALID_ARGUMENT: InvalidArgumentError,
    ERROR_SPEC: SpecError,
    ERROR_COMPILE: CompileError,
    ERROR_LOAD: LoadError,
    ERROR_RUN: RunError,
    ERROR_UNSUPPORTED: UnsupportedError,
    ERROR_IO: HeedIOError,
}


def _error(status, message):
    """The HeedError subclass for `status`, carrying `message`."""
    return _ERROR_CLASSES.get(int(status), HeedError)(status, message)


def _invalid(message):
    """An InvalidArgumentError raised by the binding itself (before any C call)."""
    return InvalidArgumentError(ERROR_INVALID_ARGUMENT, message)


# ---- C structs (heed.h, field for field) ------------------------------------


class heed_tensor(ctypes.Structure):
    """``heed_tensor``: a DLPack-style view; strides count elements."""
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device_type", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
    ]


class heed_compile_options(ctypes.Structure):
    """``heed_compile_options``; set defaults with ``heed_compile_options_init``."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("dtype", ctypes.c_int32),
        ("head_dim", ctypes.c_int64),
        ("head_dim_v", ctypes.c_int64),
        ("layout", ctypes.c_int32),
        ("lse", ctypes.c_int32),
        ("scale", ctypes.c_double),
        ("variant", ctypes.c_char_p),
        ("params", ctypes.c_char_p),
        ("target", ctypes.c_char_p),
        ("analyze_mask", ctypes.c_int32),
        ("use_cache", ctypes.c_int32),
    ]


class heed_cache_stats(ctypes.Structure):
    """``heed_cache_stats``; set up with ``heed_cache_stats_init``."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("memory_hits", ctypes.c_uint64),
        ("disk_hits", ctypes.c_uint64),
        ("compiles", ctypes.c_uint64),
        ("rejected_entries", ctypes.c_uint64),
        ("store_failures", ctypes.c_uint64),
        ("disk_entries", ctypes.c_uint64),
        ("disk_bytes", ctypes.c_uint64),
        ("disk_limit_bytes", ctypes.c_uint64),
        ("directory", ctypes.c_char_p),
    ]


class heed_run_stats(ctypes.Structure):
    """``heed_run_stats``: KV blocks visited, proven full, partial, and in all."""
    _fields_ = [
        ("visited_blocks", ctypes.c_int64),
        ("full_blocks", ctypes.c_int64),
        ("partial_blocks", ctypes.c_int64),
        ("total_blocks", ctypes.c_int64),
    ]


class heed_attention_args(ctypes.Structure):
    """``heed_attention_args``; set up with ``heed_attention_args_init``."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("q", ctypes.POINTER(heed_tensor)),
        ("k", ctypes.POINTER(heed_tensor)),
        ("v", ctypes.POINTER(heed_tensor)),
        ("out", ctypes.POINTER(heed_tensor)),
        ("lse", ctypes.POINTER(heed_tensor)),
        ("buffers", ctypes.POINTER(heed_tensor)),
        ("num_buffers", ctypes.c_int32),
        ("num_threads", ctypes.c_int32),
        ("stream", ctypes.c_void_p),
        ("stats", ctypes.POINTER(heed_run_stats)),
    ]


# ---- the shared library ------------------------------------------------------

_kernel_p = ctypes.c_void_p  # heed_kernel * (opaque)
_status = ctypes.c_int       # heed_status (a C enum)

# name: (restype, argtypes, compiler_only)
_SIGNATURES = {
    "heed_last_error": (ctypes.c_char_p, [], False),
    "heed_status_string": (ctypes.c_char_p, [_status], False),
    "heed_abi_version": (ctypes.c_int, [], False),
    "heed_version": (ctypes.c_char_p, [], False),
    "heed_compile_options_init": (None, [ctypes.POINTER(heed_compile_options)], True),
    "heed_compile": (_status, [ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.POINTER(heed_compile_options),
                               ctypes.POINTER(_kernel_p)], True),
    "heed_compile_file": (_status, [ctypes.c_char_p, ctypes.POINTER(heed_compile_options),
                                    ctypes.POINTER(_kernel_p)], True),
    "heed_export": (_status, [ctypes.c_char_p, ctypes.c_char_p,
                              ctypes.POINTER(heed_compile_options), ctypes.c_char_p], True),
    "heed_cache_stats_init": (None, [ctypes.POINTER(heed_cache_stats)], True),
    "heed_cache_get_stats": (_status, [ctypes.POINTER(heed_cache_stats)], True),
    "heed_cache_set_directory": (_status, [ctypes.c_char_p], True),
    "heed_cache_clear": (_status, [], True),
    "heed_kernel_load": (_status, [ctypes.c_void_p, ctypes.c_size_t,
                                   ctypes.POINTER(_kernel_p)], False),
    "heed_kernel_load_file": (_status, [ctypes.c_char_p, ctypes.POINTER(_kernel_p)], False),
    "heed_kernel_release": (None, [_kernel_p], False),
    "heed_kernel_name": (ctypes.c_char_p, [_kernel_p], False),
    "heed_kernel_target": (ctypes.c_char_p, [_kernel_p], False),
    "heed_kernel_dtype": (ctypes.c_int32, [_kernel_p], False),
    "heed_kernel_head_dim": (ctypes.c_int64, [_kernel_p], False),
    "heed_kernel_head_dim_v": (ctypes.c_int64, [_kernel_p], False),
    "heed_kernel_layout": (ctypes.c_int32, [_kernel_p], False),
    "heed_kernel_has_lse": (ctypes.c_int32, [_kernel_p], False),
    "heed_kernel_scale": (ctypes.c_double, [_kernel_p], False),
    "heed_kernel_num_buffers": (ctypes.c_int32, [_kernel_p], False),
    "heed_kernel_buffer_name": (ctypes.c_char_p, [_kernel_p, ctypes.c_int32], False),
    "heed_kernel_buffer_dtype": (ctypes.c_int32, [_kernel_p, ctypes.c_int32], False),
    "heed_kernel_buffer_shape": (ctypes.c_char_p, [_kernel_p, ctypes.c_int32], False),
    "heed_attention_args_init": (None, [ctypes.POINTER(heed_attention_args)], False),
    "heed_attention": (_status, [_kernel_p, ctypes.POINTER(heed_attention_args)], False),
}


def _open_library():
    """Finds and opens libheed; returns (CDLL, path). Raises ImportError."""
    env = os.environ.get("HEED_LIBRARY")
    if env:
        try:
            return ctypes.CDLL(env), env
        except OSError as e:
            raise ImportError(
                "heed: cannot load the library named by $HEED_LIBRARY=%r: %s" % (env, e)) from e
    here = os.path.dirname(os.path.abspath(__file__))
    repo_lib = os.path.normpath(os.path.join(here, "..", "..", "build", "lib", "libheed.so"))
    tried = [repo_lib]
    if os.path.exists(repo_lib):
        try:
            return ctypes.CDLL(repo_lib), repo_lib
        except OSError as e:
            raise ImportError("heed: cannot load %s: %s" % (repo_lib, e)) from e
    found = ctypes.util.find_library("heed")
    tried.append('ctypes.util.find_library("heed") -> %s' % (found or "nothing"))
    if found:
        try:
            return ctypes.CDLL(found), found
        except OSError as e:
            raise ImportError("heed: cannot load %s: %s" % (found, e)) from e
    raise ImportError(
        "heed: libheed.so not found (tried $HEED_LIBRARY (unset), %s). Build it "
        "(./heed build, or ninja -C build heed) or set HEED_LIBRARY to its full path."
        % ", ".join(tried))


def _bind(lib):
    """Declares every heed.h function on `lib`; returns the names missing
    (compiler functions are absent from libheed_runtime)."""
    missing = []
    for name, (restype, argtypes, compiler_only) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if compiler_only:
                missing.append(name)
                continue
            raise ImportError("heed: %s lacks %s(); is it heed's library?" % (_lib_path, name))
        fn.restype = restype
        fn.argtypes = argtypes
    return missing


_lib, _lib_path = _open_library()
_missing = _bind(_lib)
_abi = _lib.heed_abi_version()
if _abi != ABI_VERSION:
    raise ImportError("heed: %s has ABI version %d, this binding speaks version %d"
                      % (_lib_path, _abi, ABI_VERSION))
del _abi

#: heed's version string (``heed_version()``).
__version__ = (_lib.heed_version() or b"").decode("utf-8", "replace")


def version():
    """heed's version string, from the loaded library."""
    return __version__


def abi_version():
    """The ABI version of the loaded library (1)."""
    return int(_lib.heed_abi_version())


def library_path():
    """The path (or name) of the loaded shared library."""
    return _lib_path


def _last_error():
    msg = _lib.heed_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def _check(status):
    """Raises the HeedError for a failed status, with heed_last_error()."""
    if status != OK:
        msg = _last_error()
        if not msg:
            s = _lib.heed_status_string(status)
            msg = s.decode() if s else "status %d" % status
        raise _error(status, msg)


def _need_compiler(fn):
    if fn in _missing:
        raise UnsupportedError(
            ERROR_UNSUPPORTED,
            "%s is not in %s (a runtime-only library: it loads and runs kernels but "
            "does not compile them; use libheed.so)" % (fn, _lib_path))


# ---- small conversions -----------------------------------------------------


def _encode(s, what="a string argument"):
    """The bytes of a C string argument. A NUL inside would end the string
    there and the rest would be silently ignored, so it is an error."""
    if s is None:
        return None
    if isinstance(s, bytes):
        data = s
    elif isinstance(s, os.PathLike):
        data = os.fsencode(s)
    else:
        data = str(s).encode("utf-8")
    if b"\0" in data:
        raise _invalid("%s contains a NUL character (at byte %d): C strings end there, so "
                       "the rest would be ignored" % (what, data.index(b"\0")))
    return data


def _dtype_code(dtype, what="dtype"):
    """A heed dtype code from a name ('float32', 'bf16'), a numpy or torch dtype,
    or a code."""
    if isinstance(dtype, bool):
        raise _invalid("%s: %r is not a dtype" % (what, dtype))
    if isinstance(dtype, int):
        if dtype in DTYPE_NAMES:
            return dtype
        raise _invalid("%s: unknown heed dtype code %d" % (what, dtype))
    name = getattr(dtype, "name", None)  # numpy dtype objects and scalar types
    if not isinstance(name, str):
        name = getattr(dtype, "__name__", None)
    if not isinstance(name, str):
        name = str(dtype)
    key = name.lower()
    if key.startswith("torch."):
        key = key[len("torch."):]
    if key in _DTYPE_ALIASES:
        return _DTYPE_ALIASES[key]
    raise _invalid("%s: %s is not supported by heed (supported: %s)"
                   % (what, name, ", ".join(DTYPE_NAMES.values())))


def _layout_code(layout):
    if isinstance(layout, int) and not isinstance(layout, bool) and layout in _LAYOUT_NAMES:
        return layout
    key = str(layout).lower()
    if key in _LAYOUTS:
        return _LAYOUTS[key]
    raise _invalid("layout must be 'bhsd' or 'bshd', got %r" % (layout,))


def _format_params(params):
    """'name=value,...' from a dict (or a string, passed through)."""
    if params is None:
        return None
    if isinstance(params, (str, bytes)):
        return _encode(params, "params")
    items = params.items() if hasattr(params, "items") else params
    parts = []
    for name, value in items:
        name = str(name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(value)
        for bad in (",", "="):
            if bad in name or bad in text:
                raise _invalid("params: %r=%r contains %r" % (name, value, bad))
        parts.append("%s=%s" % (name, text))
    return _encode(",".join(parts), "params") if parts else None


# ---- tensors -------------------------------------------------------------------

# Typestr of __array_interface__ / __cuda_array_interface__ -> heed dtype.
_TYPESTR = {"f4": F32, "f2": F16, "i1": I8, "i4": I32, "i8": I64, "b1": BOOL}
_LITTLE = sys.byteorder == "little"

# DLPack (dlpack.h) structs, for reading a __dlpack__ capsule directly: it
# keeps numpy out of the way and carries bfloat16 and bool, which numpy lacks.


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


# (DLPack type code, bits) -> heed dtype. Codes: 0 int, 1 uint, 2 float,
# 4 bfloat, 6 bool.
_DLPACK_TYPES = {(2, 32): F32, (2, 16): F16, (4, 16): BF16, (0, 8): I8, (0, 32): I32,
                 (0, 64): I64, (6, 8): BOOL}

try:
    _PyCapsule_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
    _PyCapsule_GetPointer.restype = ctypes.c_void_p
    _PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    _PyCapsule_IsValid = ctypes.pythonapi.PyCapsule_IsValid
    _PyCapsule_IsValid.restype = ctypes.c_int
    _PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
except AttributeError:  # not CPython
    _PyCapsule_GetPointer = _PyCapsule_IsValid = None


class _Tensor:
    """A heed_tensor viewing a Python tensor, with everything it points to
    (the object, its shape and stride arrays, a DLPack capsule) kept alive."""

    __slots__ = ("struct", "obj", "keep", "shape", "dtype", "device_type", "device_id",
                 "stream", "name")

    def __init__(self, obj, name, writable=False):
        self.obj = obj
        self.name = name
        self.keep = []
        self.stream = None  # a stream the producer named (__cuda_array_interface__ v3)
        if _is_torch_gpu(obj):
            # Before the interfaces: torch's __cuda_array_interface__ raises for
            # tensors that require grad, and old versions lack bfloat16 there.
            self._from_torch(obj)
        elif hasattr(obj, "__array_interface__"):
            self._from_interface(obj, obj.__array_interface__, DEVICE_CPU, writable)
        elif hasattr(obj, "__cuda_array_interface__"):
            self._from_interface(obj, obj.__cuda_array_interface__, DEVICE_CUDA, writable)
        elif hasattr(obj, "__dlpack__"):
            self._from_dlpack(obj)
        else:
            raise TypeError(
                "%s: expected a tensor (an object with __array_interface__, "
                "__cuda_array_interface__ or __dlpack__, e.g. a numpy array or a torch "
                "tensor), got %s" % (name, type(obj).__name__))

    # -- sources --

    def _from_interface(self, obj, iface, device_type, writable):
        name = self.name
        shape = tuple(int(s) for s in iface["shape"])
        typestr = iface["typestr"]
        dtype = self._typestr_dtype(obj, typestr)
        data = iface.get("data")
        if isinstance(data, tuple):
            ptr, readonly = int(data[0] or 0), bool(data[1])
        elif data is None and device_type == DEVICE_CPU:
            # The object exposes the buffer protocol instead of a pointer.
            try:
                import numpy
            except ImportError:
                raise _invalid("%s: this array interface has no data pointer" % name)
            arr = numpy.asarray(obj)
            self.keep.append(arr)
            return self._from_interface(arr, arr.__array_interface__, device_type, writable)
        else:
            raise _invalid("%s: unsupported array interface data %r" % (name, type(data)))
        if device_type == DEVICE_CPU:
            ptr += int(iface.get("offset", 0) or 0)
        if writable and readonly:
            raise _invalid("%s is read-only; heed writes into it" % name)
        if iface.get("mask") is not None:
            raise _invalid("%s: masked arrays are not supported" % name)
        itemsize = _DTYPE_SIZES[dtype]
        strides = iface.get("strides")
        if strides is not None:
            elems = []
            for s in strides:
                s = int(s)
                if s % itemsize:
                    raise _invalid(
                        "%s: byte stride %d is not a multiple of the element size %d "
                        "(strides %s)" % (name, s, itemsize, tuple(strides)))
                elems.append(s // itemsize)
            strides = elems
        device_id = 0
        if device_type == DEVICE_CUDA:
            device_id = self._cuda_device_id(obj)
            stream = iface.get("stream")
            if isinstance(stream, int) and not isinstance(stream, bool):
                self.stream = stream
        self._set(ptr, device_type, device_id, dtype, shape, strides)

    def _from_torch(self, t):
        torch = sys.modules["torch"]
        if t.layout != torch.strided:
            raise _invalid("%s: a %s torch tensor; heed takes dense (strided) tensors"
                           % (self.name, t.layout))
        dtype = _dtype_code(t.dtype, self.name)
        index = t.device.index
        if index is None:
            index = torch.cuda.current_device()
        # A ROCm build of torch calls its GPUs "cuda" too.
        device_type = DEVICE_ROCM if getattr(torch.version, "hip", None) else DEVICE_CUDA
        self._set(int(t.data_ptr()), device_type, int(index), dtype, tuple(t.shape),
                  list(t.stride()))

    def _typestr_dtype(self, obj, typestr):
        if len(typestr) >= 3 and typestr[1:] in _TYPESTR:
            order = typestr[0]
            if order not in ("|", "=", "<" if _LITTLE else ">") and typestr[2:] != "1":
                raise _invalid("%s: byte order %r is not this machine's" % (self.name, typestr))
            return _TYPESTR[typestr[1:]]
        if typestr[1:] == "V2":
            # bfloat16 (ml_dtypes, or a torch CUDA tensor) shows up as raw 2-byte voids.
            dt = getattr(obj, "dtype", None)
            if dt is not None and "bfloat16" in str(getattr(dt, "name", dt)):
                return BF16
        dt = getattr(obj, "dtype", None)
        shown = str(getattr(dt, "name", dt)) if dt is not None else typestr
        raise _invalid("%s: dtype %s is not supported by heed (supported: %s)"
                       % (self.name, shown, ", ".join(DTYPE_NAMES.values())))

    @staticmethod
    def _cuda_device_id(obj):
        device = getattr(obj, "device", None)
        index = getattr(device, "index", None)  # torch
        if isinstance(index, int):
            return index
        dev_id = getattr(device, "id", None)    # cupy
        if isinstance(dev_id, int):
            return dev_id
        return 0

    def _from_dlpack(self, obj):
        name = self.name
        if _PyCapsule_GetPointer is None:
            # Not CPython: let numpy read it (CPU tensors of numpy's dtypes only).
            import numpy
            arr = numpy.from_dlpack(obj)
            self.keep.append(arr)
            return self._from_interface(arr, arr.__array_interface__, DEVICE_CPU, False)
        device_type = None
        if hasattr(obj, "__dlpack_device__"):
            device_type, _ = obj.__dlpack_device__()
            device_type = int(device_type)
        try:
            capsule = obj.__dlpack__(stream=None) if device_type not in (None, DEVICE_CPU) \
                else obj.__dlpack__()
        except TypeError:
            capsule = obj.__dlpack__()
        # The capsule stays unconsumed ("dltensor"): when it is collected, its
        # destructor calls the producer's deleter. Kept alive for the call.
        self.keep.append(capsule)
        if not _PyCapsule_IsValid(capsule, b"dltensor"):
            raise _invalid("%s: __dlpack__ did not return a 'dltensor' capsule" % name)
        # DLManagedTensor starts with its DLTensor.
        dl = _DLTensor.from_address(_PyCapsule_GetPointer(capsule, b"dltensor"))
        code, bits, lanes = dl.dtype.code, dl.dtype.bits, dl.dtype.lanes
        if lanes != 1 or (code, bits) not in _DLPACK_TYPES:
            names = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 5: "complex", 6: "bool"}
            raise _invalid("%s: dtype %s%d%s is not supported by heed (supported: %s)"
                           % (name, names.get(code, "code%d" % code), bits,
                              "x%d" % lanes if lanes != 1 else "",
                              ", ".join(DTYPE_NAMES.values())))
        dtype = _DLPACK_TYPES[(code, bits)]
        ndim = int(dl.ndim)
        shape = tuple(int(dl.shape[i]) for i in range(ndim))
        strides = [int(dl.strides[i]) for i in range(ndim)] if dl.strides else None
        ptr = (dl.data or 0) + int(dl.byte_offset)
        self._set(ptr, int(dl.device.device_type), int(dl.device.device_id), dtype, shape,
                  strides)

    # -- the struct --

    def _set(self, ptr, device_type, device_id, dtype, shape, strides):
        self.shape = shape
        self.dtype = dtype
        self.device_type = device_type
        self.device_id = device_id
        ndim = len(shape)
        shape_arr = (ctypes.c_int64 * max(ndim, 1))(*shape)
        self.keep.append(shape_arr)
        strides_p = None
        if strides is not None:
            strides_arr = (ctypes.c_int64 * max(ndim, 1))(*strides)
            self.keep.append(strides_arr)
            strides_p = ctypes.cast(strides_arr, ctypes.POINTER(ctypes.c_int64))
        self.struct = heed_tensor(
            data=ptr or None, device_type=device_type, device_id=device_id, dtype=dtype,
            ndim=ndim, shape=ctypes.cast(shape_arr, ctypes.POINTER(ctypes.c_int64)),
            strides=strides_p)


def _is_torch_gpu(obj):
    """Whether `obj` is a torch tensor on a GPU (without importing torch)."""
    mod = type(obj).__module__ or ""
    return mod.split(".")[0] == "torch" and getattr(obj, "is_cuda", False) is True


def _stream_handle(stream, what="stream"):
    """A CUstream / hipStream_t handle (int) from an int, a torch.cuda.Stream
    (``cuda_stream``, a HIP stream on ROCm torch) or a cupy stream (``ptr``);
    None stays None (the default stream)."""
    if stream is None:
        return None
    if isinstance(stream, bool):
        raise _invalid("%s: %r is not a CUDA stream" % (what, stream))
    if isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr"):
        handle = getattr(stream, attr, None)
        if isinstance(handle, int) and not isinstance(handle, bool):
            return handle
    raise _invalid("%s: expected a CUDA stream (an int handle, a torch.cuda.Stream or a "
                   "cupy stream), got %s" % (what, type(stream).__name__))


def _current_stream(tensors):
    """The stream to launch on for GPU `tensors` when none was given: torch's
    current stream on their device for torch tensors, cupy's current stream for
    cupy arrays, a stream named by __cuda_array_interface__, else None."""
    first = tensors[0].obj
    if _is_torch_gpu(first):
        torch = sys.modules["torch"]
        return int(torch.cuda.current_stream(first.device).cuda_stream)
    if (type(first).__module__ or "").split(".")[0] == "cupy":
        cupy = sys.modules["cupy"]
        return int(cupy.cuda.get_current_stream().ptr)
    for t in tensors:
        if t.stream is not None:
            return t.stream
    return None


def _alloc(like, shape, dtype):
    """A new uninitialized tensor of heed dtype `dtype`, of the family of `like`
    (torch for torch tensors, on their device; numpy otherwise)."""
    mod = type(like).__module__ or ""
    if mod.split(".")[0] == "torch":
        torch = sys.modules["torch"]
        tdtype = {F32: torch.float32, F16: torch.float16, BF16: torch.bfloat16}[dtype]
        return torch.empty(tuple(shape), dtype=tdtype, device=like.device)
    if hasattr(like, "__cuda_array_interface__") and not hasattr(like, "__array_interface__"):
        if mod.split(".")[0] == "cupy":
            cupy = sys.modules["cupy"]
            return cupy.empty(tuple(shape), dtype=DTYPE_NAMES[dtype])
        raise _invalid("cannot allocate an output like a %s; pass out=" % type(like).__name__)
    try:
        import numpy
    except ImportError:
        raise ImportError("heed: allocating an output needs numpy; install it or pass out=")
    if dtype == BF16:
        ldt = getattr(like, "dtype", None)
        if ldt is not None and "bfloat16" in str(getattr(ldt, "name", "")):
            return numpy.empty(tuple(shape), dtype=ldt)
        try:
            import ml_dtypes
        except ImportError:
            raise _invalid("numpy has no bfloat16: pass out= (or install ml_dtypes)")
        return numpy.empty(tuple(shape), dtype=ml_dtypes.bfloat16)
    return numpy.empty(tuple(shape), dtype=DTYPE_NAMES[dtype])


# ---- kernels -------------------------------------------------------------------


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
        for i in range(int(_lib.heed_kernel_num_buffers(self._handle))):
            buffers.append((
                _lib.heed_kernel_buffer_name(self._handle, i).decode(),
                DTYPE_NAMES.get(int(_lib.heed_kernel_buffer_dtype(self._handle, i)), "unknown"),
                _lib.heed_kernel_buffer_shape(self._handle, i).decode(),
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
        return _lib.heed_kernel_name(self._h()).decode()

    @property
    def target(self):
        """The target it was compiled for: 'cpu:<arch>:<cpu>:<extensions>', e.g.
        'cpu:x86_64:x86-64-v3:sse4.1,...,fma,bmi,bmi2'."""
        return _lib.heed_kernel_target(self._h()).decode()

    @property
    def dtype(self):
        """The dtype of q, k, v and out: 'float32', 'float16' or 'bfloat16'."""
        return DTYPE_NAMES.get(int(_lib.heed_kernel_dtype(self._h())), "unknown")

    @property
    def dtype_code(self):
        """The dtype as heed's code (F32, F16, BF16)."""
        return int(_lib.heed_kernel_dtype(self._h()))

    @property
    def head_dim(self):
        """The head dim of q and k."""
        return int(_lib.heed_kernel_head_dim(self._h()))

    @property
    def head_dim_v(self):
        """The head dim of v and out."""
        return int(_lib.heed_kernel_head_dim_v(self._h()))

    @property
    def layout(self):
        """'bhsd' ([B, H, S, D]) or 'bshd' ([B, S, H, D])."""
        return _LAYOUT_NAMES.get(int(_lib.heed_kernel_layout(self._h())), "unknown")

    @property
    def has_lse(self):
        """Whether the kernel also writes the log-sum-exp, f32 [B, Hq, Sq]."""
        return bool(_lib.heed_kernel_has_lse(self._h()))

    @property
    def scale(self):
        """The score scale (1/sqrt(head_dim) unless set)."""
        return float(_lib.heed_kernel_scale(self._h()))

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
                raise _invalid("variant '%s' has no buffer %s (its buffers: %s)" % (
                    self.name, ", ".join("'%s'" % n for n in unknown),
                    ", ".join(names) or "none"))
            missing = [n for n in names if n not in buffers]
            if missing:
                raise _invalid("missing buffer %s for variant '%s' (its buffers: %s)" % (
                    ", ".join("'%s'" % n for n in missing), self.name, ", ".join(names)))
            return [buffers[n] for n in names]
        if hasattr(buffers, "__array_interface__") or hasattr(buffers, "__dlpack__") \
                or hasattr(buffers, "__cuda_array_interface__"):
            return [buffers]  # a single tensor
        return list(buffers)

    def _shape_out(self, qt, vt):
        """The logical sizes from q and v, for allocation: (out shape, lse shape)."""
        if len(qt.shape) != 4 or len(vt.shape) != 4:
            raise _invalid("q and v must have rank 4 (%s), got q %s and v %s" % (
                "[B, H, S, D]" if self.layout == "bhsd" else "[B, S, H, D]",
                list(qt.shape), list(vt.shape)))
        if self.layout == "bshd":
            b, sq, hq = qt.shape[0], qt.shape[1], qt.shape[2]
            out = (b, sq, hq, self.head_dim_v)
        else:
            b, hq, sq = qt.shape[0], qt.shape[1], qt.shape[2]
            out = (b, hq, sq, self.head_dim_v)
        return out, (b, hq, sq)

    def run(self, q, k, v, out=None, lse=None, buffers=(), num_threads=0, stream=None):
        """Runs the kernel: ``out = attention(q, k, v)``.

        q, k, v: tensors of the kernel's dtype and layout (k, v may have fewer
        heads than q: GQA/MQA). out: where to write ``[B, Hq, Sq, Dv]`` (or BSHD);
        allocated (numpy, or torch for torch inputs) when None. lse: f32
        ``[B, Hq, Sq]`` for a kernel compiled with ``lse=True``; allocated when
        None. buffers: the variant's run-time buffers, a dict name -> tensor or a
        sequence in declaration order. num_threads: 0 = all cores (CPU).
        stream: for GPU (CUDA or ROCm) tensors, the stream to launch on (an int
        handle, a torch.cuda.Stream or a cupy stream); None: torch's (or
        cupy's) current stream, else the default stream. The call returns when
        the kernel has finished.

        Returns out, or (out, lse) when the kernel writes the log-sum-exp.
        Raises HeedError (InvalidArgumentError for a tensor that does not fit or
        tensors on different devices, RunError for a buffer read out of range,
        UnsupportedError for tensors on a device heed cannot run on here, e.g.
        CUDA tensors without a CUDA driver, ROCm tensors without ROCm). ``last_stats`` then holds the block
        counts of a CPU run (None after a GPU run: the GPU kernels do not count).
        """
        handle = self._h()
        bufs = self._order_buffers(buffers)
        qt, kt, vt = _Tensor(q, "q"), _Tensor(k, "k"), _Tensor(v, "v")
        has_lse = self.has_lse
        if out is None or (has_lse and lse is None):
            out_shape, lse_shape = self._shape_out(qt, vt)
            if out is None:
                out = _alloc(q, out_shape, self.dtype_code)
            if has_lse and lse is None:
                lse = _alloc(q, lse_shape, F32)
        ot = _Tensor(out, "out", writable=True)
        lt = _Tensor(lse, "lse", writable=True) if lse is not None else None
        bts = [_Tensor(b, "buffer '%s'" % n if n else "buffer %d" % i)
               for i, (b, n) in enumerate(zip(bufs, self.buffer_names + [None] * len(bufs)))]
        if num_threads is None:
            num_threads = 0
        num_threads = int(num_threads)
        if num_threads < 0:
            raise _invalid("num_threads must be >= 0, got %d" % num_threads)

        args = heed_attention_args()
        _lib.heed_attention_args_init(ctypes.byref(args))
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
        if qt.device_type in (DEVICE_CUDA, DEVICE_ROCM):
            handle_s = _stream_handle(stream)
            if handle_s is None:
                handle_s = _current_stream([qt, kt, vt, ot])
            args.stream = handle_s
        elif stream is not None:
            _stream_handle(stream)  # a bad value is an error on every device
        stats = heed_run_stats()
        args.stats = ctypes.pointer(stats)
        status = _lib.heed_attention(handle, ctypes.byref(args))
        # Everything the call pointed into stays referenced until here.
        keep = (qt, kt, vt, ot, lt, bts, buf_array)
        del keep
        _check(status)
        self.last_stats = None if stats.visited_blocks < 0 else {
            "visited_blocks": int(stats.visited_blocks),
            "full_blocks": int(stats.full_blocks),
            "partial_blocks": int(stats.partial_blocks),
            "total_blocks": int(stats.total_blocks),
        }
        return (out, lse) if has_lse else out

    __call__ = run


Kernel._release = _lib.heed_kernel_release


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
             analyze_mask, use_cache):
    """A heed_compile_options (and the byte strings it points to)."""
    _need_compiler("heed_compile_options_init")
    o = heed_compile_options()
    _lib.heed_compile_options_init(ctypes.byref(o))
    o.dtype = _dtype_code(dtype)
    if o.dtype not in (F32, F16, BF16):
        raise _invalid("dtype must be float32, float16 or bfloat16, got %s"
                       % DTYPE_NAMES[o.dtype])
    o.head_dim = int(head_dim)
    o.head_dim_v = int(head_dim_v or 0)
    o.layout = _layout_code(layout)
    o.lse = 1 if lse else 0
    o.scale = 0.0 if scale is None else float(scale)
    keep = [_encode(variant, "variant"), _format_params(params), _encode(target, "target")]
    o.variant, o.params, o.target = keep
    o.analyze_mask = 1 if analyze_mask else 0
    o.use_cache = 1 if use_cache else 0
    return o, keep


def compile(spec, *, variant=None, dtype="float32", head_dim=64, head_dim_v=0,
            layout="bhsd", lse=False, scale=None, params=None, analyze_mask=True,
            use_cache=True, target=None):
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

    Raises SpecError (with ``file:line:col: error:`` messages) for a bad spec,
    InvalidArgumentError for bad options, CompileError if code generation fails.
    """
    _need_compiler("heed_compile")
    opts, keep = _options(dtype, head_dim, head_dim_v, layout, lse, scale, variant, params,
                          target, analyze_mask, use_cache)
    handle = _kernel_p()
    if _is_path(spec):
        status = _lib.heed_compile_file(_encode(os.fspath(spec), "spec path"),
                                        ctypes.byref(opts), ctypes.byref(handle))
    else:
        text = _encode(spec, "spec text")
        status = _lib.heed_compile(text, b"<spec>", ctypes.byref(opts), ctypes.byref(handle))
    del keep
    _check(status)
    return Kernel(handle)


def export(spec, artifact_path, *, variant=None, dtype="float32", head_dim=64, head_dim_v=0,
           layout="bhsd", lse=False, scale=None, params=None, analyze_mask=True, target=None):
    """Compiles `spec` (text or a ``.attn`` path) and writes an artifact to
    `artifact_path`, which :func:`load` (and AOT programs) can load. `target`:
    comma-separated; None or 'cpu' is the portable pair x86-64-v3 + x86-64,
    'cpu:native' this machine exactly, 'cpu:<LLVM CPU>' one CPU. Other arguments as
    in :func:`compile`."""
    _need_compiler("heed_export")
    opts, keep = _options(dtype, head_dim, head_dim_v, layout, lse, scale, variant, params,
                          target, analyze_mask, True)
    if _is_path(spec):
        path = os.fspath(spec)
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError as e:
            raise HeedIOError(ERROR_IO, "cannot read '%s': %s" % (path, e.strerror or e))
        text = _encode(text, "spec file '%s'" % path)
        source = _encode(path, "spec path")
    else:
        text = _encode(spec, "spec text")
        source = b"<spec>"
    status = _lib.heed_export(text, source, ctypes.byref(opts),
                              _encode(os.fspath(artifact_path), "artifact path"))
    del keep
    _check(status)


def load(path_or_bytes):
    """Loads a kernel from an artifact written by :func:`export` (or heed's
    tools): a path (str or os.PathLike) or the artifact's bytes
    (bytes, bytearray, memoryview). Raises LoadError / HeedIOError."""
    handle = _kernel_p()
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        status = _lib.heed_kernel_load(buf, len(data), ctypes.byref(handle))
        del buf
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        status = _lib.heed_kernel_load_file(_encode(os.fspath(path_or_bytes), "artifact path"),
                                            ctypes.byref(handle))
    else:
        raise TypeError("load() takes a path or bytes, got %s" % type(path_or_bytes).__name__)
    _check(status)
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
              stream=None):
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
    code is compiled.
    Kernels are kept in a small cache keyed by the spec and the options, so
    repeated calls compile nothing.
    """
    if lse is not None and not return_lse:
        raise _invalid("lse= was given but return_lse is False")
    qt = _Tensor(q, "q")
    vt = _Tensor(v, "v")
    if len(qt.shape) != 4 or len(vt.shape) != 4:
        raise _invalid("q and v must have rank 4 (%s), got q %s and v %s" % (
            "[B, S, H, D]" if _layout_code(layout) == LAYOUT_BSHD else "[B, H, S, D]",
            list(qt.shape), list(vt.shape)))
    if qt.dtype not in (F32, F16, BF16):
        raise _invalid("q: dtype %s is not supported for attention (float32, float16 or "
                       "bfloat16)" % DTYPE_NAMES[qt.dtype])
    head_dim, head_dim_v = qt.shape[3], vt.shape[3]
    layout_code = _layout_code(layout)
    # GPU tensors: a GPU-only kernel (no CPU code compiled for nothing).
    target = {DEVICE_CUDA: "cuda", DEVICE_ROCM: "rocm"}.get(qt.device_type)
    key = (_spec_key(spec), variant, qt.dtype, head_dim, head_dim_v, layout_code,
           bool(return_lse), None if scale is None else float(scale), _params_key(params),
           target)
    with _KERNELS_LOCK:
        kernel = _KERNELS.get(key)
        if kernel is not None:
            _KERNELS.move_to_end(key)
    if kernel is None:
        kernel = compile(spec, variant=variant, dtype=qt.dtype, head_dim=head_dim,
                         head_dim_v=head_dim_v, layout=layout_code, lse=return_lse,
                         scale=scale, params=params, target=target)
        with _KERNELS_LOCK:
            _KERNELS[key] = kernel
            while len(_KERNELS) > _KERNELS_MAX:
                _KERNELS.popitem(last=False)
    del qt, vt
    return kernel.run(q, k, v, out=out, lse=lse,
                      buffers=buffers if buffers is not None else (), num_threads=num_threads,
                      stream=stream)


# ---- the cache ---------------------------------------------------------------


def cache_stats():
    """The kernel cache's counters: a dict with memory_hits, disk_hits, compiles,
    rejected_entries, store_failures, disk_entries, disk_bytes, disk_limit_bytes
    and directory ('' when the disk cache is off)."""
    _need_compiler("heed_cache_get_stats")
    s = heed_cache_stats()
    _lib.heed_cache_stats_init(ctypes.byref(s))
    _check(_lib.heed_cache_get_stats(ctypes.byref(s)))
    result = {name: int(getattr(s, name)) for name, _ in heed_cache_stats._fields_
              if name not in ("struct_size", "directory")}
    result["directory"] = (s.directory or b"").decode("utf-8", "replace")
    return result


def cache_clear():
    """Empties the memory cache and removes every entry of the disk cache."""
    _need_compiler("heed_cache_clear")
    with _KERNELS_LOCK:
        _KERNELS.clear()
    _check(_lib.heed_cache_clear())


def cache_set_directory(path):
    """Uses `path` for the disk cache from now on (None or '': memory only)."""
    _need_compiler("heed_cache_set_directory")
    _check(_lib.heed_cache_set_directory(_encode(os.fspath(path), "cache directory")
                                         if path else b""))
