"""Symbolic tracing of FlexAttention-style Python functions into heed's spec language.

``score_mod(score, b, h, q_idx, kv_idx)`` and ``mask_mod(b, h, q_idx, kv_idx)`` are called
once with :class:`Value` proxies. Every operation on a proxy records an expression node
instead of computing: Python operators, ``torch.*`` functions (``__torch_function__``),
numpy ufuncs (``__array_ufunc__``, ``__array_function__``) and heed's own
:func:`where`/:func:`exp`/... Indexing a captured tensor with a proxy records a read of a
run-time ``buffer``: tensors the function reaches through its closure, globals or
defaults are swapped for :class:`Captured` wrappers while it runs (numpy arrays cannot
see a proxy index otherwise); torch tensors reached in other ways are caught by
``__torch_function__``. What cannot become spec text (a Python ``if`` on a proxy, an
unsupported function, a float ``%``...) raises :class:`TraceError` naming the construct
and the line of the user's code.

:func:`emit` turns the traced trees into the text of one ``.attn`` variant (with ``let``
statements for shared subexpressions), and can rewrite ``q``/``kv``/``b``/``h`` as
``q + heed_pos[0]`` ... so that a kernel evaluates the variant at global positions read
from a run-time buffer (ring attention, block pictures).
"""

import functools
import math
import os
import sys
import threading
import types

from ._capi import ERROR_SPEC
from .errors import SpecError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

I64, F32, BOOL = "i64", "f32", "bool"
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class TraceError(SpecError):
    """A score_mod / mask_mod that heed cannot turn into a spec: the message names the
    construct and the line of the function where it happened."""

    def __init__(self, message):
        super().__init__(ERROR_SPEC, message)


def _user_location():
    """'file:line' of the innermost frame outside this package (the user's code)."""
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if os.path.dirname(path) != _PACKAGE_DIR:
            return "%s:%d" % (frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return "<unknown>"


def _traceback_location(tb):
    """'file:line' of the innermost frame of `tb` outside this package."""
    where = "<unknown>"
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if os.path.dirname(path) != _PACKAGE_DIR:
            where = "%s:%d" % (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


def _fail(what):
    raise TraceError("heed cannot trace %s (at %s)" % (what, _user_location()))


# ---- expression nodes ------------------------------------------------------------------


class Buffer:
    """A captured tensor read by the traced code: becomes ``buffer NAME: ELEM[dims]``.

    ``array`` is the user's object (numpy array or torch tensor); ``elem`` the spec
    element type it is passed as (float64 goes as f32, small integer types as i32...)."""

    __slots__ = ("array", "hint", "elem", "shape", "convert")

    def __init__(self, array, hint):
        self.array = array
        self.hint = hint
        self.shape = tuple(int(n) for n in array.shape)
        name = _dtype_name(array)
        if name not in _BUFFER_ELEMS:
            _fail("indexing a captured tensor of dtype %s (heed buffers hold %s)"
                  % (name, ", ".join(sorted(_BUFFER_ELEMS))))
        self.elem, self.convert = _BUFFER_ELEMS[name]
        if not self.shape or 0 in self.shape:
            _fail("indexing a captured tensor of shape %s" % (self.shape,))

    @property
    def value_type(self):
        return F32 if self.elem in ("f32", "f16", "bf16") else (BOOL if self.elem == "bool"
                                                                 else I64)


# dtype name -> (spec element type, numpy/torch dtype name to convert to or None).
_BUFFER_ELEMS = {
    "float32": ("f32", None), "float16": ("f16", None), "bfloat16": ("bf16", None),
    "int8": ("i8", None), "int32": ("i32", None), "int64": ("i64", None),
    "bool": ("bool", None),
    "float64": ("f32", "float32"), "uint8": ("i32", "int32"), "int16": ("i32", "int32"),
    "uint16": ("i32", "int32"), "uint32": ("i64", "int64"), "uint64": ("i64", "int64"),
}


def _dtype_name(array):
    dt = getattr(array, "dtype", None)
    name = getattr(dt, "name", None)
    if not isinstance(name, str):
        name = str(dt)
    return name[len("torch."):] if name.startswith("torch.") else name


class Value:
    """A traced value (the proxy the user's function computes with) and the expression
    node it stands for: ``op`` with ``args``, of spec type ``type`` (i64, f32, bool).

    Leaves: ``("var", name)``, ``("const", python value)``; a buffer read is
    ``("read", Buffer, index Values...)``."""

    __slots__ = ("op", "args", "kind", "__weakref__")
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, op, args, type_):
        self.op = op
        self.args = args
        self.kind = type_

    __hash__ = object.__hash__

    def __repr__(self):
        return "<heed traced %s: %s>" % (self.kind, to_text(self))

    # -- what Python cannot do symbolically --

    def __bool__(self):
        _fail("Python control flow on a traced value (`if`, `and`, `or`, `not`, `min()`, "
              "`max()` or a chained comparison such as `a < b < c`): use `&`, `|`, `~`, "
              "torch.where / heed.where or heed.minimum / heed.maximum instead")

    def __index__(self):
        _fail("a traced value used as a Python index: a tensor indexed with it is not one "
              "heed could see (it sees tensors captured in the function's closure, globals "
              "or defaults, and torch tensors); capture the tensor in a closure")

    def __int__(self):
        _fail("int() of a traced value (use .long() / heed.i64)")

    def __float__(self):
        _fail("float() of a traced value (use .float() / heed.f32)")

    def __iter__(self):
        _fail("iterating over a traced value")

    def __len__(self):
        _fail("len() of a traced value")

    def item(self):
        _fail(".item() of a traced value (its value is known only when the kernel runs)")

    def tolist(self):
        _fail(".tolist() of a traced value")

    # -- arithmetic --

    def __add__(self, o): return arith("+", self, o)
    def __radd__(self, o): return arith("+", o, self)
    def __sub__(self, o): return arith("-", self, o)
    def __rsub__(self, o): return arith("-", o, self)
    def __mul__(self, o): return arith("*", self, o)
    def __rmul__(self, o): return arith("*", o, self)
    def __truediv__(self, o): return true_div(self, o)
    def __rtruediv__(self, o): return true_div(o, self)
    def __floordiv__(self, o): return floor_div(self, o)
    def __rfloordiv__(self, o): return floor_div(o, self)
    def __mod__(self, o): return remainder(self, o)
    def __rmod__(self, o): return remainder(o, self)
    def __pow__(self, o): return power(self, o)
    def __rpow__(self, o): return power(o, self)
    def __neg__(self): return negate(self)
    def __pos__(self): return self
    def __abs__(self): return absolute(self)

    # -- comparisons --

    def __eq__(self, o): return compare("==", self, o)
    def __ne__(self, o): return compare("!=", self, o)
    def __lt__(self, o): return compare("<", self, o)
    def __le__(self, o): return compare("<=", self, o)
    def __gt__(self, o): return compare(">", self, o)
    def __ge__(self, o): return compare(">=", self, o)

    # -- booleans (torch's & | ~ on bool tensors) --

    def __and__(self, o): return logical("&&", self, o, "&")
    def __rand__(self, o): return logical("&&", o, self, "&")
    def __or__(self, o): return logical("||", self, o, "|")
    def __ror__(self, o): return logical("||", o, self, "|")
    def __xor__(self, o): return logical("!=", self, o, "^")
    def __rxor__(self, o): return logical("!=", o, self, "^")
    def __invert__(self): return logical_not(self, "~")

    def __lshift__(self, o): _fail("`<<` (shifts are not in heed's spec language)")
    __rshift__ = __rlshift__ = __rrshift__ = __lshift__

    def __getitem__(self, idx):
        _fail("indexing a traced value (index a captured tensor with it instead)")

    # -- tensor methods FlexAttention code calls --

    def abs(self): return absolute(self)
    def exp(self): return unary("exp", self)
    def log(self): return unary("log", self)
    def tanh(self): return unary("tanh", self)
    def sqrt(self): return unary("sqrt", self)
    def rsqrt(self): return rsqrt(self)
    def sigmoid(self): return sigmoid(self)
    def exp2(self): return exp2(self)
    def log2(self): return log2(self)
    def square(self): return arith("*", self, self)
    def neg(self): return negate(self)
    def clamp(self, min=None, max=None): return clamp(self, min, max)
    clip = clamp
    def clamp_min(self, min): return clamp(self, min, None)
    def clamp_max(self, max): return clamp(self, None, max)
    def minimum(self, o): return minimum(self, o)
    def maximum(self, o): return maximum(self, o)
    def where(self, cond, other): return where(cond, self, other)
    def logical_and(self, o): return logical("&&", self, o, "logical_and")
    def logical_or(self, o): return logical("||", self, o, "logical_or")
    def logical_not(self): return logical_not(self, "logical_not")
    def float(self): return f32(self)
    def half(self): return f32(self)
    def bfloat16(self): return f32(self)
    def double(self): return f32(self)
    def long(self): return i64(self)
    def int(self): return i64(self)
    def bool(self): return to_bool(self)
    def eq(self, o): return compare("==", self, o)
    def ne(self, o): return compare("!=", self, o)
    def lt(self, o): return compare("<", self, o)
    def le(self, o): return compare("<=", self, o)
    def gt(self, o): return compare(">", self, o)
    def ge(self, o): return compare(">=", self, o)
    def add(self, o, alpha=1): return arith("+", self, arith("*", o, alpha) if alpha != 1 else o)
    def sub(self, o, alpha=1): return arith("-", self, arith("*", o, alpha) if alpha != 1 else o)
    def mul(self, o): return arith("*", self, o)
    def div(self, o, rounding_mode=None): return divide(self, o, rounding_mode)
    def remainder(self, o): return remainder(self, o)
    def pow(self, o): return power(self, o)

    def to(self, *args, **kwargs):
        """``.to(dtype)``; a device or ``copy=`` changes nothing here."""
        dtype = kwargs.get("dtype")
        for a in args:
            if _dtype_kind(a) is not None:
                dtype = a
        return self if dtype is None else cast(self, dtype)

    def type(self, dtype=None):
        return self if dtype is None else cast(self, dtype)

    def new_ones(self, *args, **kwargs):
        return constant(True if _dtype_kind(kwargs.get("dtype")) == BOOL else 1)

    def new_zeros(self, *args, **kwargs):
        return constant(False if _dtype_kind(kwargs.get("dtype")) == BOOL else 0)

    def new_tensor(self, data, *args, **kwargs):
        return constant(data)

    @property
    def shape(self):
        return ()

    @property
    def ndim(self):
        return 0

    def dim(self):
        return 0

    def numel(self):
        return 1

    def size(self, dim=None):
        return () if dim is None else _fail("size(%r) of a 0-d traced value" % dim)

    @property
    def dtype(self):
        return {I64: "int64", F32: "float32", BOOL: "bool"}[self.kind]

    @property
    def device(self):
        return "cpu"

    # -- the foreign protocols --

    @classmethod
    def __torch_function__(cls, func, types_, args=(), kwargs=None):
        return _torch_function(func, args, kwargs or {})

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs.get("out") is not None:
            _fail("numpy.%s.%s with a traced value" % (ufunc.__name__, method))
        handler = _NUMPY_UFUNCS.get(ufunc.__name__)
        if handler is None:
            _fail("numpy.%s (not in heed's spec language; supported: %s)"
                  % (ufunc.__name__, ", ".join(sorted(_NUMPY_UFUNCS))))
        return handler(*inputs)

    def __array_function__(self, func, types_, args, kwargs):
        handler = _NUMPY_FUNCTIONS.get(func.__name__)
        if handler is None:
            _fail("numpy.%s with a traced value (supported: %s)"
                  % (func.__name__, ", ".join(sorted(_NUMPY_FUNCTIONS))))
        return handler(*args, **kwargs)


def var(name, type_):
    return Value("var", (name,), type_)


def constant(x):
    """A Value for a Python / numpy / 0-d torch scalar."""
    if isinstance(x, Value):
        return x
    if hasattr(x, "shape") and not isinstance(x, (int, float, bool)):
        shape = tuple(x.shape)
        n = 1
        for s in shape:
            n *= int(s)
        if n != 1:
            _fail("a tensor of shape %s used whole with a traced value (index it, e.g. "
                  "t[q_idx], to read one element)" % (shape,))
        x = x.item() if hasattr(x, "item") else x
    if isinstance(x, bool) or type(x).__name__ in ("bool_", "bool"):
        return Value("const", (bool(x),), BOOL)
    if isinstance(x, int) or (hasattr(x, "__index__") and not isinstance(x, float)
                              and type(x).__module__ == "numpy"):
        x = int(x)
        if not _I64_MIN <= x <= _I64_MAX:
            _fail("the integer constant %d (outside i64)" % x)
        return Value("const", (x,), I64)
    if isinstance(x, float) or type(x).__module__ == "numpy":
        try:
            return Value("const", (float(x),), F32)
        except (TypeError, ValueError):
            pass
    if isinstance(x, Captured):
        _fail("a captured tensor used whole with a traced value (index it, e.g. t[q_idx])")
    _fail("a %s used with a traced value" % type(x).__name__)


def _dtype_kind(dtype):
    """I64 / F32 / BOOL for a torch or numpy dtype (or its name); None if not a dtype."""
    if dtype is None or isinstance(dtype, (Value, int, float)) and not isinstance(dtype, type):
        return None
    if dtype is bool:
        return BOOL
    if dtype is int:
        return I64
    if dtype is float:
        return F32
    name = getattr(dtype, "name", None)
    if not isinstance(name, str):
        name = getattr(dtype, "__name__", None) if isinstance(dtype, type) else None
    if not isinstance(name, str):
        name = str(dtype)
    name = name[len("torch."):] if name.startswith("torch.") else name
    if name in ("bool", "bool_"):
        return BOOL
    if name.startswith(("int", "uint", "long", "short")):
        return I64
    if name.startswith(("float", "half", "bfloat", "double")):
        return F32
    return None


# ---- operations ----------------------------------------------------------------------


def _num(x, what):
    """A numeric Value (i64 or f32) from x; bools become i64 0/1 as in torch."""
    v = constant(x)
    if v.kind == BOOL:
        return i64(v)
    return v


def _fold(op, args, type_):
    """A node, with constant operands folded where Python computes the same thing."""
    return Value(op, tuple(args), type_)


def arith(op, a, b):
    a, b = _num(a, op), _num(b, op)
    type_ = F32 if F32 in (a.kind, b.kind) else I64
    return _fold(op, (a, b), type_)


def true_div(a, b):
    a, b = _num(a, "/"), _num(b, "/")
    return _fold("/", (f32(a), f32(b)), F32)


def floor_div(a, b):
    a, b = _num(a, "//"), _num(b, "//")
    if F32 in (a.kind, b.kind):
        _fail("`//` on floats (heed's spec language floors only integer division)")
    return _fold("/", (a, b), I64)


def divide(a, b, rounding_mode=None):
    if rounding_mode is None:
        return true_div(a, b)
    if rounding_mode == "floor":
        return floor_div(a, b)
    _fail("division with rounding_mode=%r (only None and 'floor')" % (rounding_mode,))


def remainder(a, b):
    a, b = _num(a, "%"), _num(b, "%")
    if F32 in (a.kind, b.kind):
        _fail("`%` on floats (heed's spec language has `%` on integers only)")
    return _fold("%", (a, b), I64)


def power(a, b):
    a = _num(a, "**")
    if isinstance(b, Value) or isinstance(constant(b).args[0], bool):
        _fail("`**` with a traced or boolean exponent (only constant exponents)")
    e = constant(b).args[0]
    if e == 0.5:
        return unary("sqrt", a)
    if e == -0.5:
        return rsqrt(a)
    if float(e).is_integer() and -8 <= e <= 8 and e != 0:
        n = int(abs(e))
        result = a
        for _ in range(n - 1):
            result = arith("*", result, a)
        if isinstance(e, float):
            result = f32(result)
        return true_div(1.0, result) if e < 0 else result
    if e == 0:
        return constant(1.0 if isinstance(e, float) or a.kind == F32 else 1)
    _fail("`**` %r (constant exponents: 0.5, -0.5 and integers from -8 to 8)" % (e,))


def negate(a):
    a = constant(a)
    if a.kind == BOOL:
        _fail("unary `-` on a bool (use `~`)")
    return _fold("neg", (a,), a.kind)


def absolute(a):
    a = _num(a, "abs")
    return _fold("abs", (a,), a.kind)


def unary(fn, a):
    a = _num(a, fn)
    return _fold(fn, (f32(a),), F32)


def rsqrt(a):
    return true_div(1.0, unary("sqrt", a))


def sigmoid(a):
    return true_div(1.0, arith("+", 1.0, unary("exp", negate(f32(_num(a, "sigmoid"))))))


def exp2(a):
    return unary("exp", arith("*", f32(_num(a, "exp2")), math.log(2.0)))


def log2(a):
    return true_div(unary("log", a), math.log(2.0))


def minimum(a, b):
    a, b = _num(a, "minimum"), _num(b, "minimum")
    return _fold("min", (a, b), F32 if F32 in (a.kind, b.kind) else I64)


def maximum(a, b):
    a, b = _num(a, "maximum"), _num(b, "maximum")
    return _fold("max", (a, b), F32 if F32 in (a.kind, b.kind) else I64)


def clamp(x, lo=None, hi=None):
    x = _num(x, "clamp")
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def compare(op, a, b):
    a, b = constant(a), constant(b)
    if (a.kind == BOOL) != (b.kind == BOOL):
        a, b = _num(a, op), _num(b, op)
    elif a.kind == BOOL and op not in ("==", "!="):
        a, b = i64(a), i64(b)
    return _fold(op, (a, b), BOOL)


def logical(op, a, b, spelled):
    a, b = constant(a), constant(b)
    if a.kind != BOOL or b.kind != BOOL:
        _fail("`%s` on %s and %s (heed has `%s` on booleans only; bitwise integer "
              "operations are not in its spec language)" % (spelled, a.kind, b.kind, spelled))
    return _fold(op, (a, b), BOOL)


def logical_not(a, spelled="~"):
    a = constant(a)
    if a.kind != BOOL:
        _fail("`%s` on %s (heed negates booleans only)" % (spelled, a.kind))
    return _fold("!", (a,), BOOL)


def where(cond, a, b):
    cond = constant(cond)
    if cond.kind != BOOL:
        cond = compare("!=", cond, 0)
    a, b = constant(a), constant(b)
    if a.kind != b.kind:
        if BOOL in (a.kind, b.kind):
            a, b = _num(a, "where"), _num(b, "where")
        if a.kind != b.kind:
            a, b = f32(a), f32(b)
    return _fold("select", (cond, a, b), a.kind)


def f32(a):
    a = constant(a)
    if a.op == "const":
        return constant(float(a.args[0]))
    return a if a.kind == F32 else _fold("f32", (a,), F32)


def i64(a):
    a = constant(a)
    if a.op == "const" and (a.kind == BOOL or math.isfinite(a.args[0])):
        return constant(int(a.args[0]))  # toward zero, as the language's i64()
    return a if a.kind == I64 else _fold("i64", (a,), I64)


def to_bool(a):
    a = constant(a)
    return a if a.kind == BOOL else compare("!=", a, 0)


def cast(a, dtype):
    kind = _dtype_kind(dtype)
    if kind is None:
        _fail("a conversion to %r" % (dtype,))
    return {F32: f32, I64: i64, BOOL: to_bool}[kind](a)


# ---- captured tensors and buffer reads -----------------------------------------------------


class _Tracer(threading.local):
    """The trace in progress on this thread: buffers by id of the user's tensor."""

    def __init__(self):
        self.buffers = None

    def buffer(self, array, hint):
        if self.buffers is None:
            _fail("a tensor indexed by a traced value outside a trace")
        buf = self.buffers.get(id(array))
        if buf is None:
            buf = Buffer(array, hint)
            self.buffers[id(array)] = buf
        return buf


_TRACER = _Tracer()


def _is_tensor(x):
    """numpy arrays and torch tensors (and other array-likes) of rank >= 1."""
    if isinstance(x, (Value, Captured, type)):
        return False
    shape = getattr(x, "shape", None)
    if not isinstance(shape, tuple) and type(shape).__name__ != "Size":
        return False
    if len(shape) == 0:
        return False
    return (hasattr(x, "__array_interface__") or hasattr(x, "__dlpack__")
            or hasattr(x, "__cuda_array_interface__"))


def read(array, idx, hint):
    """``array[idx]`` with traced indexes: a buffer read (or a partial one)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    buf = _TRACER.buffer(array, hint)
    return _PartialRead(buf, ())[idx]


class _PartialRead:
    """``table[h]`` of a rank-2 table: waits for the remaining indexes."""

    __slots__ = ("buf", "idx")

    def __init__(self, buf, idx):
        self.buf = buf
        self.idx = idx

    def __getitem__(self, more):
        if not isinstance(more, tuple):
            more = (more,)
        idx = list(self.idx)
        rank = len(self.buf.shape)
        for i in more:
            if i is Ellipsis or isinstance(i, slice) or i is None:
                _fail("slicing a captured tensor (%s) in a traced function: heed reads "
                      "single elements, index every dimension" % self.buf.hint)
            d = len(idx)
            if d >= rank:
                _fail("%d indexes into the rank-%d tensor '%s'" % (len(idx) + 1, rank,
                                                                  self.buf.hint))
            v = constant(i)
            if v.kind == BOOL:
                v = i64(v)
            if v.kind != I64:
                _fail("a float index into '%s' (use .long())" % self.buf.hint)
            if v.op == "const":
                n = v.args[0]
                if n < 0:
                    n += self.buf.shape[d]
                if not 0 <= n < self.buf.shape[d]:
                    _fail("the constant index %d into dimension %d (of size %d) of '%s'"
                          % (v.args[0], d, self.buf.shape[d], self.buf.hint))
                v = constant(n)
            idx.append(v)
        if len(idx) < rank:
            return _PartialRead(self.buf, tuple(idx))
        return Value("read", (self.buf,) + tuple(idx), self.buf.value_type)

    def _partial(self, *args, **kwargs):
        _fail("a partly indexed tensor '%s' (%d of %d indexes) used as a value"
              % (self.buf.hint, len(self.idx), len(self.buf.shape)))

    def __getattr__(self, name):
        self._partial()

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _partial
    __floordiv__ = __mod__ = __neg__ = __abs__ = __and__ = __or__ = __invert__ = _partial
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = _partial
    __hash__ = object.__hash__


class Captured:
    """A tensor captured by a traced function, standing in for it while the function
    runs: indexing it with traced values reads a buffer; anything else is passed to the
    tensor itself."""

    __slots__ = ("array", "hint")

    def __init__(self, array, hint):
        self.array = array
        self.hint = hint

    def __getitem__(self, idx):
        parts = idx if isinstance(idx, tuple) else (idx,)
        if any(isinstance(p, Value) or isinstance(p, slice) and any(
                isinstance(x, Value) for x in (p.start, p.stop, p.step)) for p in parts):
            return read(self.array, idx, self.hint)
        return self.array[idx]

    def __getattr__(self, name):
        return getattr(self.array, name)

    def __len__(self):
        return len(self.array)

    def __iter__(self):
        return iter(self.array)

    def __array__(self, *args, **kwargs):
        import numpy
        return numpy.asarray(self.array, *args, **kwargs)

    @classmethod
    def __torch_function__(cls, func, types_, args=(), kwargs=None):
        unwrap = _unwrap_captured
        return func(*unwrap(args), **unwrap(kwargs or {}))


def _unwrap_captured(x):
    if isinstance(x, Captured):
        return x.array
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap_captured(i) for i in x)
    if isinstance(x, dict):
        return {k: _unwrap_captured(v) for k, v in x.items()}
    return x


def _capture(value, name, memo):
    """`value` as the traced function should see it: tensors wrapped, functions rebound."""
    if _is_tensor(value):
        key = ("t", id(value))
        if key not in memo:
            memo[key] = Captured(value, name)
        return memo[key]
    if isinstance(value, (types.FunctionType, functools.partial, types.MethodType)):
        return rebind(value, memo)
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple) and len(value) < 256:
        items = [_capture(v, "%s_%d" % (name, i), memo) for i, v in enumerate(value)]
        if any(a is not b for a, b in zip(items, value)):
            return type(value)(items)
    return value


def _global_names(code, out=None):
    """The names `code` (and the code nested in it) may read as globals."""
    out = set() if out is None else out
    out.update(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _global_names(c, out)
    return out


def rebind(fn, memo=None):
    """A copy of `fn` whose closure, globals and defaults show captured tensors as
    :class:`Captured` (and the functions it calls, rebound the same way)."""
    memo = {} if memo is None else memo
    key = ("f", id(fn))
    if key in memo:
        return memo[key] or fn  # None: being rebound (recursion): the original
    memo[key] = None
    if isinstance(fn, functools.partial):
        new = functools.partial(rebind(fn.func, memo),
                                *[_capture(a, "arg%d" % i, memo) for i, a in enumerate(fn.args)],
                                **{k: _capture(v, k, memo) for k, v in fn.keywords.items()})
    elif isinstance(fn, types.MethodType):
        new = types.MethodType(rebind(fn.__func__, memo), fn.__self__)
    elif isinstance(fn, types.FunctionType):
        code = fn.__code__
        closure = fn.__closure__
        if closure:
            cells = []
            for name, cell in zip(code.co_freevars, closure):
                try:
                    contents = cell.cell_contents
                except ValueError:  # an empty cell
                    cells.append(cell)
                    continue
                new_contents = _capture(contents, name, memo)
                cells.append(cell if new_contents is contents else types.CellType(new_contents))
            closure = tuple(cells)
        globs = fn.__globals__
        replaced = {}
        for name in _global_names(code):
            if name in globs:
                new_value = _capture(globs[name], name, memo)
                if new_value is not globs[name]:
                    replaced[name] = new_value
        if replaced:
            globs = dict(globs)
            globs.update(replaced)
        defaults = fn.__defaults__
        if defaults:
            names = code.co_varnames[code.co_argcount - len(defaults):code.co_argcount]
            defaults = tuple(_capture(d, n, memo) for d, n in zip(defaults, names))
        new = types.FunctionType(code, globs, fn.__name__, defaults, closure)
        if fn.__kwdefaults__:
            new.__kwdefaults__ = {k: _capture(v, k, memo) for k, v in fn.__kwdefaults__.items()}
        new.__dict__.update(fn.__dict__)
        new.__qualname__ = fn.__qualname__
    else:
        new = fn
    memo[key] = new
    return new


class Trace:
    """The result of tracing one function: its Value (or None for 'no function') and the
    buffers it reads (by id of the user's tensor)."""

    __slots__ = ("value", "buffers", "fn")

    def __init__(self, value, buffers, fn):
        self.value = value
        self.buffers = buffers
        self.fn = fn


def _function_name(fn):
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def trace(fn, args, kind):
    """Calls `fn(*args)` with the proxies `args` and returns a :class:`Trace`. `kind` is
    'mask_mod' (a bool result) or 'score_mod' (a number)."""
    if not callable(fn):
        raise TypeError("%s must be callable, got %s" % (kind, type(fn).__name__))
    previous = _TRACER.buffers
    _TRACER.buffers = {}
    try:
        try:
            result = rebind(fn)(*args)
        except TraceError:
            raise
        except IndexError as e:
            # numpy refuses a proxy index before asking it anything.
            raise TraceError(
                "heed cannot trace %s %s: indexing a tensor it could not see with a traced "
                "value (at %s: %s); heed sees the tensors captured in the function's closure, "
                "globals or defaults, and torch tensors" % (
                    kind, _function_name(fn), _traceback_location(e.__traceback__), e)) from e
        except TypeError as e:
            raise TraceError("heed cannot trace %s %s (at %s): %s" % (
                kind, _function_name(fn), _traceback_location(e.__traceback__), e)) from e
        if isinstance(result, _PartialRead):
            _fail("a partly indexed tensor '%s' returned by %s" % (result.buf.hint, kind))
        value = constant(result)
        buffers = _TRACER.buffers
    finally:
        _TRACER.buffers = previous
    if kind == "mask_mod" and value.kind != BOOL:
        raise TraceError("mask_mod %s returned %s, not a bool (a mask_mod returns "
                         "q_idx >= kv_idx-style comparisons)" % (_function_name(fn), value.kind))
    if kind == "score_mod" and value.kind == BOOL:
        raise TraceError("score_mod %s returned a bool, not a score" % _function_name(fn))
    return Trace(value, buffers, fn)


def trace_mask(mask_mod):
    return trace(mask_mod, (var("b", I64), var("h", I64), var("q", I64), var("kv", I64)),
                 "mask_mod")


def trace_score(score_mod):
    return trace(score_mod, (var("score", F32), var("b", I64), var("h", I64), var("q", I64),
                             var("kv", I64)), "score_mod")


# ---- the foreign function tables ---------------------------------------------------------


def _rev(fn):
    return lambda a, b: fn(b, a)


_OPS = {
    "add": lambda a, b, alpha=1: arith("+", a, arith("*", b, alpha) if alpha != 1 else b),
    "sub": lambda a, b, alpha=1: arith("-", a, arith("*", b, alpha) if alpha != 1 else b),
    "subtract": lambda a, b, alpha=1: arith("-", a, arith("*", b, alpha) if alpha != 1 else b),
    "rsub": lambda a, b, alpha=1: arith("-", b, arith("*", a, alpha) if alpha != 1 else a),
    "mul": lambda a, b: arith("*", a, b), "multiply": lambda a, b: arith("*", a, b),
    "div": divide, "divide": divide, "true_divide": true_div, "floor_divide": floor_div,
    "remainder": remainder, "fmod": remainder, "pow": power,
    "neg": negate, "negative": negate, "abs": absolute, "absolute": absolute,
    "exp": lambda a: unary("exp", a), "log": lambda a: unary("log", a),
    "tanh": lambda a: unary("tanh", a), "sqrt": lambda a: unary("sqrt", a),
    "rsqrt": rsqrt, "sigmoid": sigmoid, "exp2": exp2, "log2": log2,
    "square": lambda a: arith("*", a, a),
    "minimum": minimum, "maximum": maximum, "fmin": minimum, "fmax": maximum,
    "clamp": clamp, "clip": clamp, "clamp_min": lambda a, m: clamp(a, m, None),
    "clamp_max": lambda a, m: clamp(a, None, m),
    "where": where,
    "eq": lambda a, b: compare("==", a, b), "ne": lambda a, b: compare("!=", a, b),
    "lt": lambda a, b: compare("<", a, b), "le": lambda a, b: compare("<=", a, b),
    "gt": lambda a, b: compare(">", a, b), "ge": lambda a, b: compare(">=", a, b),
    "logical_and": lambda a, b: logical("&&", a, b, "logical_and"),
    "logical_or": lambda a, b: logical("||", a, b, "logical_or"),
    "logical_xor": lambda a, b: logical("!=", a, b, "logical_xor"),
    "logical_not": lambda a: logical_not(a, "logical_not"),
    "bitwise_and": lambda a, b: logical("&&", a, b, "&"),
    "bitwise_or": lambda a, b: logical("||", a, b, "|"),
    "bitwise_not": lambda a: logical_not(a, "~"),
}
_OPS.update({"greater": _OPS["gt"], "greater_equal": _OPS["ge"], "less": _OPS["lt"],
             "less_equal": _OPS["le"], "equal": _OPS["eq"], "not_equal": _OPS["ne"]})

# Tensor dunders torch routes through __torch_function__ when a real tensor is the
# left operand of an operation with a traced value.
_DUNDERS = {
    "__add__": _OPS["add"], "__radd__": _rev(_OPS["add"]),
    "__sub__": _OPS["sub"], "__rsub__": _rev(_OPS["sub"]),
    "__mul__": _OPS["mul"], "__rmul__": _OPS["mul"],
    "__truediv__": true_div, "__rtruediv__": _rev(true_div), "__div__": true_div,
    "__floordiv__": floor_div, "__rfloordiv__": _rev(floor_div),
    "__mod__": remainder, "__rmod__": _rev(remainder),
    "__pow__": power, "__rpow__": _rev(power),
    "__and__": _OPS["bitwise_and"], "__rand__": _rev(_OPS["bitwise_and"]),
    "__or__": _OPS["bitwise_or"], "__ror__": _rev(_OPS["bitwise_or"]),
    "__xor__": _OPS["logical_xor"], "__rxor__": _rev(_OPS["logical_xor"]),
    "__invert__": _OPS["bitwise_not"], "__neg__": negate, "__abs__": absolute,
    "__eq__": _OPS["eq"], "__ne__": _OPS["ne"], "__lt__": _OPS["lt"], "__le__": _OPS["le"],
    "__gt__": _OPS["gt"], "__ge__": _OPS["ge"],
}


_CASTS = ("to", "type", "float", "long", "int", "bool", "half", "double", "bfloat16")


def _torch_function(func, args, kwargs):
    name = getattr(func, "__name__", str(func))
    qual = getattr(func, "__qualname__", "") or ""
    is_method = qual.split(".")[0] in ("Tensor", "TensorBase", "_TensorBase")
    args, kw = list(args), dict(kwargs)
    if name == "__getitem__" and not isinstance(args[0], Value):
        array = args[0].array if isinstance(args[0], Captured) else args[0]
        return read(array, args[1], getattr(args[0], "hint", "buf"))
    if name.endswith("_") and not name.startswith("_"):
        _fail("the in-place torch operation %s on a traced value" % name)
    if kw.pop("out", None) is not None:
        _fail("torch.%s(out=...) with a traced value" % name)
    if name == "where":
        if is_method:  # x.where(condition, y)
            cond = args[1] if len(args) > 1 else kw.pop("condition")
            other = args[2] if len(args) > 2 else kw.pop("other")
            return where(cond, args[0], other)
        cond = args[0] if args else kw.pop("condition")
        a = args[1] if len(args) > 1 else kw.pop("input")
        b = args[2] if len(args) > 2 else kw.pop("other")
        return where(cond, a, b)
    if name in ("clamp", "clip"):
        x = args[0] if args else kw.pop("input")
        lo = args[1] if len(args) > 1 else kw.pop("min", None)
        hi = args[2] if len(args) > 2 else kw.pop("max", None)
        return clamp(x, lo, hi)
    if name in _CASTS and is_method:
        return getattr(constant(args[0]), name)(*args[1:], **kw)
    if name in ("full_like", "ones_like", "zeros_like") and args:
        fill = {"ones_like": 1, "zeros_like": 0}.get(name)
        fill = (args[1] if len(args) > 1 else kw.pop("fill_value")) if fill is None else fill
        kind = _dtype_kind(kw.get("dtype")) or constant(args[0]).kind
        return cast(constant(fill), {I64: "int64", F32: "float32", BOOL: "bool"}[kind])
    if name in ("tensor", "as_tensor", "scalar_tensor") and args:
        return constant(args[0])
    handler = _DUNDERS.get(name) or _OPS.get(name)
    if handler is None:
        _fail("torch.%s (not in heed's spec language; supported: %s)"
              % (name, ", ".join(sorted((set(_OPS) - {"rsub"}) | {"where", "clamp", "to"}))))
    if "input" in kw:
        args.insert(0, kw.pop("input"))
    if "other" in kw:
        args.append(kw.pop("other"))
    if "exponent" in kw:
        args.append(kw.pop("exponent"))
    kw.pop("dtype", None)
    return handler(*args, **kw)


_NUMPY_UFUNCS = {
    "add": _OPS["add"], "subtract": _OPS["sub"], "multiply": _OPS["mul"],
    "true_divide": true_div, "divide": true_div, "floor_divide": floor_div,
    "remainder": remainder, "mod": remainder, "negative": negate, "positive": lambda a: a,
    "absolute": absolute, "fabs": absolute, "exp": _OPS["exp"], "exp2": exp2,
    "log": _OPS["log"], "log2": log2, "tanh": _OPS["tanh"], "sqrt": _OPS["sqrt"],
    "square": _OPS["square"], "power": power, "minimum": minimum, "maximum": maximum,
    "fmin": minimum, "fmax": maximum,
    "greater": _OPS["gt"], "greater_equal": _OPS["ge"], "less": _OPS["lt"],
    "less_equal": _OPS["le"], "equal": _OPS["eq"], "not_equal": _OPS["ne"],
    "logical_and": _OPS["logical_and"], "logical_or": _OPS["logical_or"],
    "logical_xor": _OPS["logical_xor"], "logical_not": _OPS["logical_not"],
    "bitwise_and": _OPS["bitwise_and"], "bitwise_or": _OPS["bitwise_or"],
    "invert": _OPS["bitwise_not"], "bitwise_not": _OPS["bitwise_not"],
}

_NUMPY_FUNCTIONS = {
    "where": where, "clip": lambda a, a_min=None, a_max=None, **kw: clamp(a, a_min, a_max),
    "minimum": minimum, "maximum": maximum, "abs": absolute, "absolute": absolute,
}


# ---- emitting spec text ---------------------------------------------------------------------

_RESERVED = {
    # keywords, reserved words, built-ins and the prelude's functions (docs/spec-language.md)
    "def", "variant", "param", "buffer", "let", "true", "false", "score", "mask", "b", "h",
    "q", "kv", "gate", "route", "case", "min", "max", "abs", "exp", "log", "tanh", "sqrt",
    "select", "clamp", "f32", "i64", "bool", "causal", "sliding_window", "band",
    "prefix_lm", "sinks", "document", "block_sparse", "neighborhood_1d", "neighborhood_2d",
    "neighborhood_3d", "alibi", "softcap", "relative_bias", "B", "H", "Hkv", "Sq", "Skv",
}

_BINARY = {"+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||"}
_CALLS = {"min": "min", "max": "max", "abs": "abs", "exp": "exp", "log": "log",
          "tanh": "tanh", "sqrt": "sqrt", "f32": "f32", "i64": "i64", "select": "select"}
POS = "heed_pos"  # the buffer of global offsets: [q, kv, b, h]


def _format_const(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value >= 0 else (
            "(-9223372036854775807 - 1)" if value == _I64_MIN else "(-%d)" % -value)
    if math.isnan(value):
        return "(0.0 / 0.0)"
    if math.isinf(value):
        return "(1.0 / 0.0)" if value > 0 else "(-1.0 / 0.0)"
    text = repr(float(value))
    if "e" not in text and "." not in text:
        text += ".0"
    return text if value >= 0 else "(%s)" % text


def _sanitize(hint):
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in str(hint or "buf"))
    if not name or not (name[0].isalpha() or name[0] == "_") or not name.isascii():
        name = "buf_" + name if name and name.isascii() else "buf"
    return name


class Emitted:
    """The text of a traced variant and the tensors to pass as its buffers, in order."""

    __slots__ = ("text", "buffers")

    def __init__(self, text, buffers):
        self.text = text
        self.buffers = buffers


def emit(mask=None, score=None, positions=False, name="flex", sinks=None):
    """The ``.attn`` text of one variant with mask and score given as Values (None: the
    default), and its :class:`Buffer` list in declaration order. With `positions`, the
    indices are read at global positions: ``q`` is ``q + heed_pos[0]``, ``kv`` is
    ``kv + heed_pos[1]``, ``b`` is ``b + heed_pos[2]``, ``h`` is ``h + heed_pos[3]``, with
    ``buffer heed_pos: i64[4]`` declared first. `sinks`, a rank-1 :class:`Buffer` of one
    logit per query head, declares it last and adds ``normalize = softmax(sink =
    NAME[h])`` (learned attention sinks, docs/spec-language.md "Normalization")."""
    roots = [v for v in (mask, score) if v is not None]
    uses = {}
    order = []  # nodes, children first

    def visit(node):
        stack = [(node, False)]
        while stack:
            n, done = stack.pop()
            if done:
                order.append(n)
                continue
            uses[id(n)] = uses.get(id(n), 0) + 1
            if uses[id(n)] > 1:
                continue
            stack.append((n, True))
            if n.op == "read":
                children = n.args[1:]
            elif n.op in ("var", "const"):
                children = ()
            else:
                children = n.args
            for c in reversed(children):
                stack.append((c, False))

    for r in roots:
        visit(r)

    taken = set(_RESERVED) | {POS}
    buffers = []

    def fresh(hint):
        base = _sanitize(hint)
        cand, i = base, 2
        while cand in taken:
            cand, i = "%s_%d" % (base, i), i + 1
        taken.add(cand)
        return cand

    buffer_names = {}
    for n in order:
        if n.op == "read" and id(n.args[0]) not in buffer_names:
            buffer_names[id(n.args[0])] = fresh(n.args[0].hint)
            buffers.append(n.args[0])
    if sinks is not None:
        buffer_names[id(sinks)] = fresh(sinks.hint)
        buffers.append(sinks)
    depth = {}
    lets = []
    text = {}
    reads_score = {}
    let_count = [0]

    def render(n):
        if n.op == "var":
            nm = n.args[0]
            if positions and nm != "score":
                return "(%s + %s[%d])" % (nm, POS, {"q": 0, "kv": 1, "b": 2, "h": 3}[nm])
            return nm
        if n.op == "const":
            return _format_const(n.args[0])
        if n.op == "read":
            return "%s[%s]" % (buffer_names[id(n.args[0])], ", ".join(text[id(a)]
                                                                     for a in n.args[1:]))
        a = [text[id(x)] for x in n.args]
        if n.op in _BINARY:
            return "(%s %s %s)" % (a[0], n.op, a[1])
        if n.op == "neg":
            return "(-%s)" % a[0]
        if n.op == "!":
            return "(!%s)" % a[0]
        return "%s(%s)" % (_CALLS[n.op], ", ".join(a))

    for n in order:
        kids = () if n.op in ("var", "const") else (n.args[1:] if n.op == "read" else n.args)
        depth[id(n)] = 1 + max((depth[id(c)] for c in kids), default=0)
        reads_score[id(n)] = (n.op == "var" and n.args[0] == "score") or any(
            reads_score[id(c)] for c in kids)
        t = render(n)
        leaf = n.op in ("var", "const") and not (positions and n.op == "var")
        # Shared subexpressions and deep chains become lets: smaller text, bounded nesting.
        if not leaf and (uses[id(n)] > 1 and len(t) > 12 or depth[id(n)] > 48) \
                and n is not mask and n is not score:
            let_name = fresh("t%d" % let_count[0])
            let_count[0] += 1
            lets.append("  let %s = %s" % (let_name, t))
            t = let_name
            depth[id(n)] = 1
        text[id(n)] = t

    lines = ["variant %s {" % name]
    if positions:
        lines.append("  buffer %s: i64[4]" % POS)
    for buf in buffers:
        lines.append("  buffer %s: %s[%s]" % (buffer_names[id(buf)], buf.elem,
                                              ", ".join(str(d) for d in buf.shape)))
    lines.extend(lets)
    if score is not None:
        lines.append("  score = %s" % text[id(score)])
    if mask is not None:
        lines.append("  mask = %s" % text[id(mask)])
    if sinks is not None:
        head = "(h + %s[3])" % POS if positions else "h"
        lines.append("  normalize = softmax(sink = %s[%s])" % (buffer_names[id(sinks)], head))
    lines.append("}")
    return Emitted("\n".join(lines) + "\n", buffers)


def to_text(value):
    """A Value as one expression (no lets), for messages and repr."""
    try:
        e = emit(mask=value if value.kind == BOOL else None,
                 score=None if value.kind == BOOL else value)
    except Exception:  # repr must not fail
        return "?"
    body = [ln.strip() for ln in e.text.splitlines() if ln.strip().startswith(("mask", "score",
                                                                             "let"))]
    return "; ".join(body)
