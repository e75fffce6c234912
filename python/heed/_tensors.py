"""Tensors as heed_tensor views: numpy (__array_interface__), DLPack capsules,
__cuda_array_interface__ and torch GPU tensors; dtype and layout names; outputs allocated
like the inputs; GPU streams."""

import ctypes
import os
import sys

from ._capi import (BF16, BOOL, DEVICE_CPU, DEVICE_CUDA, DEVICE_ROCM, F16, F32, I8, I32, I64,
                    LAYOUT_BHSD, LAYOUT_BSHD, heed_tensor)
from .errors import invalid

#: heed dtype code -> the name this package uses for it (numpy's names).
DTYPE_NAMES = {F32: "float32", F16: "float16", BF16: "bfloat16", I8: "int8",
               I32: "int32", I64: "int64", BOOL: "bool"}
DTYPE_SIZES = {F32: 4, F16: 2, BF16: 2, I8: 1, I32: 4, I64: 8, BOOL: 1}
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
LAYOUT_NAMES = {LAYOUT_BHSD: "bhsd", LAYOUT_BSHD: "bshd"}


# ---- strings and names -----------------------------------------------------------


def encode(s, what="a string"):
    """Bytes for a C string argument. A NUL inside would silently cut the text short
    where C reads it, so it is an error."""
    if s is None:
        return None
    if isinstance(s, bytes):
        data = s
    elif isinstance(s, os.PathLike):
        data = os.fsencode(s)
    else:
        data = str(s).encode("utf-8")
    if b"\0" in data:
        raise invalid("%s contains a NUL character at byte %d; heed's C API reads it as the "
                      "end of the text" % (what, data.index(b"\0")))
    return data


def dtype_code(dtype, what="dtype"):
    """A heed dtype code from a name ('float32', 'bf16'), a numpy or torch dtype,
    or a code."""
    if isinstance(dtype, bool):
        raise invalid("%s: %r is not a dtype" % (what, dtype))
    if isinstance(dtype, int):
        if dtype in DTYPE_NAMES:
            return dtype
        raise invalid("%s: unknown heed dtype code %d" % (what, dtype))
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
    raise invalid("%s: %s is not supported by heed (supported: %s)"
                  % (what, name, ", ".join(DTYPE_NAMES.values())))


def layout_code(layout):
    if isinstance(layout, int) and not isinstance(layout, bool) and layout in LAYOUT_NAMES:
        return layout
    key = str(layout).lower()
    if key in _LAYOUTS:
        return _LAYOUTS[key]
    raise invalid("layout must be 'bhsd' or 'bshd', got %r" % (layout,))


def _param_items(params):
    """(name, value text) pairs of params given as a dict, pairs or 'a=1,b=2' text."""
    if isinstance(params, (str, bytes)):
        text = params.decode("utf-8", "replace") if isinstance(params, bytes) else params
        items = []
        if not text.strip():
            return items
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep:
                raise invalid("params: %r is not name=value (in %r)" % (part, text))
            items.append((name.strip(), value.strip()))
        return items
    items = []
    for name, value in (params.items() if hasattr(params, "items") else params):
        name = str(name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(value)
        for bad in (",", "="):
            if bad in name or bad in text:
                raise invalid("params: %r=%r contains %r" % (name, value, bad))
        items.append((name, text))
    return items


def format_params(params):
    """'name=value,...' bytes from a dict, (name, value) pairs or such text; a param
    named twice is an error (the C API would take one of the two silently)."""
    if params is None:
        return None
    items = _param_items(params)
    seen = {}
    for name, text in items:
        if name in seen:
            raise invalid("params: '%s' is given twice (%s=%s and %s=%s)"
                          % (name, name, seen[name], name, text))
        seen[name] = text
    return encode(",".join("%s=%s" % kv for kv in items), "params") if items else None


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


class Tensor:
    """A heed_tensor viewing a Python tensor, with everything it points to
    (the object, its shape and stride arrays, a DLPack capsule) kept alive."""

    __slots__ = ("struct", "obj", "keep", "shape", "dtype", "device_type", "device_id",
                 "stream", "name")

    def __init__(self, obj, name, writable=False):
        if getattr(obj, "requires_grad", False) is True and \
                (type(obj).__module__ or "").split(".")[0] == "torch":
            obj = obj.detach()  # heed reads the data; torch refuses DLPack of grad tensors
        self.obj = obj
        self.name = name
        self.keep = []
        self.stream = None  # a stream the producer named (__cuda_array_interface__ v3)
        if is_torch_gpu(obj):
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
                raise invalid("%s: this array interface has no data pointer" % name)
            arr = numpy.asarray(obj)
            self.keep.append(arr)
            return self._from_interface(arr, arr.__array_interface__, device_type, writable)
        else:
            raise invalid("%s: unsupported array interface data %r" % (name, type(data)))
        if device_type == DEVICE_CPU:
            ptr += int(iface.get("offset", 0) or 0)
        if writable and readonly:
            raise invalid("%s is read-only; heed writes into it" % name)
        if iface.get("mask") is not None:
            raise invalid("%s: masked arrays are not supported" % name)
        itemsize = DTYPE_SIZES[dtype]
        strides = iface.get("strides")
        if strides is not None:
            elems = []
            for s in strides:
                s = int(s)
                if s % itemsize:
                    raise invalid(
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
            raise invalid("%s: a %s torch tensor; heed takes dense (strided) tensors"
                           % (self.name, t.layout))
        dtype = dtype_code(t.dtype, self.name)
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
                raise invalid("%s: byte order %r is not this machine's" % (self.name, typestr))
            return _TYPESTR[typestr[1:]]
        if typestr[1:] == "V2":
            # bfloat16 (ml_dtypes, or a torch CUDA tensor) shows up as raw 2-byte voids.
            dt = getattr(obj, "dtype", None)
            if dt is not None and "bfloat16" in str(getattr(dt, "name", dt)):
                return BF16
        dt = getattr(obj, "dtype", None)
        shown = str(getattr(dt, "name", dt)) if dt is not None else typestr
        raise invalid("%s: dtype %s is not supported by heed (supported: %s)"
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
            raise invalid("%s: __dlpack__ did not return a 'dltensor' capsule" % name)
        # DLManagedTensor starts with its DLTensor.
        dl = _DLTensor.from_address(_PyCapsule_GetPointer(capsule, b"dltensor"))
        code, bits, lanes = dl.dtype.code, dl.dtype.bits, dl.dtype.lanes
        if lanes != 1 or (code, bits) not in _DLPACK_TYPES:
            names = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 5: "complex", 6: "bool"}
            raise invalid("%s: dtype %s%d%s is not supported by heed (supported: %s)"
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


def is_torch_gpu(obj):
    """Whether `obj` is a torch tensor on a GPU (without importing torch)."""
    mod = type(obj).__module__ or ""
    return mod.split(".")[0] == "torch" and getattr(obj, "is_cuda", False) is True


def stream_handle(stream, what="stream"):
    """A CUstream / hipStream_t handle (int) from an int, a torch.cuda.Stream
    (``cuda_stream``, a HIP stream on ROCm torch) or a cupy stream (``ptr``);
    None stays None (the default stream)."""
    if stream is None:
        return None
    if isinstance(stream, bool):
        raise invalid("%s: %r is not a CUDA stream" % (what, stream))
    if isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr"):
        handle = getattr(stream, attr, None)
        if isinstance(handle, int) and not isinstance(handle, bool):
            return handle
    raise invalid("%s: expected a CUDA stream (an int handle, a torch.cuda.Stream or a "
                   "cupy stream), got %s" % (what, type(stream).__name__))


def current_stream(tensors):
    """The stream to launch on for GPU `tensors` when none was given: torch's
    current stream on their device for torch tensors, cupy's current stream for
    cupy arrays, a stream named by __cuda_array_interface__, else None."""
    first = tensors[0].obj
    if is_torch_gpu(first):
        torch = sys.modules["torch"]
        return int(torch.cuda.current_stream(first.device).cuda_stream)
    if (type(first).__module__ or "").split(".")[0] == "cupy":
        cupy = sys.modules["cupy"]
        return int(cupy.cuda.get_current_stream().ptr)
    for t in tensors:
        if t.stream is not None:
            return t.stream
    return None


def alloc(like, shape, dtype):
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
        raise invalid("cannot allocate an output like a %s; pass out=" % type(like).__name__)
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
            raise invalid("numpy has no bfloat16: pass out= (or install ml_dtypes)")
        return numpy.empty(tuple(shape), dtype=ml_dtypes.bfloat16)
    return numpy.empty(tuple(shape), dtype=DTYPE_NAMES[dtype])


