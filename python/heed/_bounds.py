"""Interval bounds of a traced mask over a box of indices: can it be true anywhere?

Used by heed.distributed to skip a (query shard, key shard) pair without running a
kernel. Sound by construction: every operation maps intervals to intervals that contain
every value it can produce (integer overflow, division by an interval holding 0, NaN and
out-of-range buffer reads widen to "anything"), so "cannot be true" is a proof that the
pair is empty; "may be true" is only a maybe (then the kernel runs, and its own analysis
skips what it can). Buffer reads take the min and max of the buffer over the index box. Float intervals are
computed in float64 and widened past the f32 kernel's rounding.
"""

import math

from ._trace import BOOL

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_ANY = (-math.inf, math.inf)
_BOTH = (True, True)  # booleans: (can be false, can be true)


def _num(lo, hi, integer):
    """A numeric interval; an integer one that leaves i64 could have wrapped: anything."""
    if isinstance(lo, float) and math.isnan(lo) or isinstance(hi, float) and math.isnan(hi):
        return _ANY
    if integer and (lo < _I64_MIN or hi > _I64_MAX):
        return _ANY
    return (lo, hi)


def _products(a, b):
    out = []
    for x in a:
        for y in b:
            if (x == 0 and math.isinf(y)) or (y == 0 and math.isinf(x)):
                return None
            out.append(x * y)
    return out


def _floor_div(a, b):
    lo, hi = b
    if lo <= 0 <= hi:
        return _ANY
    cands = []
    for x in a:
        for y in b:
            if math.isinf(x) or math.isinf(y):
                return _ANY
            cands.append(x // y)
    return (min(cands), max(cands))


def _true_div(a, b):
    lo, hi = b
    if lo <= 0 <= hi:
        return _ANY
    cands = [x / y for x in a for y in b if not (math.isinf(x) and math.isinf(y))]
    if len(cands) < 4:
        return _ANY
    return (min(cands), max(cands))


def _remainder(a, b):
    lo, hi = b
    if lo == hi and lo != 0 and not math.isinf(a[0]) and not math.isinf(a[1]):
        c = lo
        if a[0] // c == a[1] // c:  # one period: the remainder is monotone there
            r0, r1 = a[0] % c, a[1] % c
            return (min(r0, r1), max(r0, r1))
    if lo > 0:
        return (0, hi - 1)
    if hi < 0:
        return (lo + 1, 0)
    return _ANY  # a zero divisor gives 0: inside "anything"


def _monotone(fn, a):
    try:
        lo, hi = fn(a[0]), fn(a[1])
    except (ValueError, OverflowError):
        return _ANY
    if math.isnan(lo) or math.isnan(hi):
        return _ANY
    return (min(lo, hi), max(lo, hi))


def _exp(x):
    return math.exp(x) if x < 709 else math.inf


def _log(x):
    if x < 0 or math.isnan(x):
        raise ValueError
    return math.log(x) if x > 0 else -math.inf


def _sqrt(x):
    if x < 0:
        raise ValueError
    return math.sqrt(x)


def _compare(op, a, b):
    (a0, a1), (b0, b1) = a, b
    if op == "<":
        return (a1 >= b0, a0 < b1)
    if op == "<=":
        return (a1 > b0, a0 <= b1)
    if op == ">":
        return (a0 <= b1, a1 > b0)
    if op == ">=":
        return (a0 < b1, a1 >= b0)
    overlap = a0 <= b1 and b0 <= a1
    single = a0 == a1 == b0 == b1
    if op == "==":
        return (not single, overlap)
    return (overlap, not single)  # !=


def _compare_bool(op, a, b):
    can_equal = (a[0] and b[0]) or (a[1] and b[1])
    can_differ = (a[0] and b[1]) or (a[1] and b[0])
    return (can_differ, can_equal) if op == "==" else (can_equal, can_differ)


def _buffer_range(buf, idx):
    """The values of `buf` over the index intervals `idx` (a read outside reads 0)."""
    import numpy
    array = buf.array
    if (type(array).__module__ or "").split(".")[0] == "torch":
        array = array.detach().cpu()
        if str(array.dtype) == "torch.bfloat16":
            array = array.float()
        array = array.numpy()
    array = numpy.asarray(array)
    slices = []
    outside = False
    for (lo, hi), n in zip(idx, array.shape):
        if math.isinf(lo) or math.isinf(hi):
            lo, hi = -1, n  # unknown index: any element, and maybe none
        if lo < 0 or hi >= n:
            outside = True
        lo, hi = max(int(lo), 0), min(int(hi), n - 1)
        if lo > hi:
            return None, True
        slices.append(slice(lo, hi + 1))
    part = array[tuple(slices)]
    if part.dtype == bool:
        return (bool((~part).any()), bool(part.any())), outside
    lo, hi = part.min(), part.max()
    if part.dtype.kind == "f":
        if numpy.isnan(lo) or numpy.isnan(hi):
            return _ANY, outside
        return (float(lo), float(hi)), outside
    return (int(lo), int(hi)), outside


def bounds(value, ranges):
    """The interval of `value` (a traced Value) when each index lies in its interval:
    ``ranges`` maps 'b', 'h', 'q', 'kv' (and 'score') to (lo, hi), inclusive; a missing
    one is unbounded. Booleans come as (can be false, can be true)."""
    memo = {}
    stack = [(value, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in memo:
            continue
        if ready:
            memo[id(node)] = _eval(node, memo, ranges)
            continue
        stack.append((node, True))
        kids = () if node.op in ("var", "const") else (
            node.args[1:] if node.op == "read" else node.args)
        for k in kids:
            if id(k) not in memo:
                stack.append((k, False))
    return memo[id(value)]


def _widen(interval, rel, absolute):
    lo, hi = interval
    return (lo - abs(lo) * rel - absolute, hi + abs(hi) * rel + absolute)


def _eval(n, memo, ranges):
    """The interval of node `n`. The kernel computes floats in f32 (constants, buffer
    values, each operation rounded; exp/log/tanh/sqrt approximated), this in float64:
    every f32 interval is widened by more than those errors, so that comparisons of
    floats stay sound."""
    result = _eval_exact(n, memo, ranges)
    if n.kind == "f32" and n.op != "var":
        if n.op in ("exp", "log", "tanh", "sqrt"):
            return _widen(result, 1e-4, 1e-6)
        return _widen(result, 2.0 ** -20, 1e-37)
    return result


def _eval_exact(n, memo, ranges):
    op, kind = n.op, n.kind
    integer = kind == "i64"
    if op == "var":
        return tuple(ranges.get(n.args[0], _ANY))
    if op == "const":
        v = n.args[0]
        return (not v, bool(v)) if kind == BOOL else (v, v)
    if op == "read":
        buf = n.args[0]
        values, outside = _buffer_range(buf, [memo[id(i)] for i in n.args[1:]])
        if kind == BOOL:
            values = values or (False, False)
            return (values[0] or outside, values[1])
        if values is None:
            return (0, 0)
        return (min(values[0], 0), max(values[1], 0)) if outside else values
    a = [memo[id(x)] for x in n.args]
    if op in ("+", "-"):
        (a0, a1), (b0, b1) = a
        if op == "+":
            lo, hi = a0 + b0, a1 + b1
        else:
            lo, hi = a0 - b1, a1 - b0
        if isinstance(lo, float) and math.isnan(lo) or isinstance(hi, float) and math.isnan(hi):
            return _ANY
        return _num(lo, hi, integer)
    if op == "*":
        p = _products(*a)
        return _ANY if p is None else _num(min(p), max(p), integer)
    if op == "/":
        return _num(*(_floor_div(*a) if integer else _true_div(*a)), integer)
    if op == "%":
        return _num(*_remainder(*a), integer)
    if op == "neg":
        return _num(-a[0][1], -a[0][0], integer)
    if op == "abs":
        lo, hi = a[0]
        if lo >= 0:
            return (lo, hi)
        if hi <= 0:
            return _num(-hi, -lo, integer)
        return _num(0, max(-lo, hi), integer)
    if op == "min":
        return (min(a[0][0], a[1][0]), min(a[0][1], a[1][1]))
    if op == "max":
        return (max(a[0][0], a[1][0]), max(a[0][1], a[1][1]))
    if op == "exp":
        return _monotone(_exp, a[0])
    if op == "log":
        return _monotone(_log, a[0])
    if op == "sqrt":
        return _monotone(_sqrt, a[0])
    if op == "tanh":
        return _monotone(math.tanh, a[0])
    if op == "f32":
        src = n.args[0]
        return (0 if a[0][0] else 1, 1 if a[0][1] else 0) if src.kind == BOOL else a[0]
    if op == "i64":
        src = n.args[0]
        if src.kind == BOOL:
            return (0 if a[0][0] else 1, 1 if a[0][1] else 0)
        lo, hi = a[0]
        if math.isinf(lo) or math.isinf(hi):
            return _ANY
        return _num(math.trunc(lo), math.trunc(hi), True)
    if op in ("<", "<=", ">", ">=", "==", "!="):
        if n.args[0].kind == BOOL:
            return _compare_bool(op, *a)
        return _compare(op, *a)
    if op == "&&":
        return (a[0][0] or a[1][0], a[0][1] and a[1][1])
    if op == "||":
        return (a[0][0] and a[1][0], a[0][1] or a[1][1])
    if op == "!":
        return (a[0][1], a[0][0])
    if op == "select":
        c, x, y = a
        if not c[0]:
            return x
        if not c[1]:
            return y
        if kind == BOOL:
            return (x[0] or y[0], x[1] or y[1])
        return (min(x[0], y[0]), max(x[1], y[1]))
    return _ANY if kind != BOOL else _BOTH


def may_be_true(mask, ranges):
    """False only when `mask` is false for every index in `ranges` (a proof)."""
    if mask is None:
        return True
    return bool(bounds(mask, ranges)[1])
