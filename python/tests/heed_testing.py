"""What heed's Python tests share: a private kernel cache, the import path, numpy
(or SKIPPED), random inputs from a printed seed, NaN-poisoned outputs, the float64
reference and closeness assertions.

Import it before heed: it points $HEED_CACHE_DIR at a temporary directory first.
"""

import atexit
import math
import os
import shutil
import sys
import tempfile
import time
import unittest

# The disk cache goes to a private directory, never ~/.cache: set before the
# library is loaded (it reads $HEED_CACHE_DIR when the cache is first used).
# HEED_TEST_CACHE_DIR names one to use instead (the GPU session's, which pack.sh
# filled), kept after the run.
CACHE_DIR = os.environ.get("HEED_TEST_CACHE_DIR") or tempfile.mkdtemp(
    prefix="heed-py-test-cache-")
os.environ["HEED_CACHE_DIR"] = CACHE_DIR
if not os.environ.get("HEED_TEST_CACHE_DIR"):
    atexit.register(shutil.rmtree, CACHE_DIR, True)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "python"))
EXAMPLES = os.path.join(REPO, "examples")

try:
    import numpy as np
except ImportError:
    np = None


def require(main, **modules):
    """Exits 77 (SKIPPED, as ctest reads it) when numpy or one of `modules` (name:
    module or None) is missing; `main` is the caller's __name__ ('__main__' when run as
    a script, else unittest skips the module)."""
    missing = [name for name, mod in dict(numpy=np, **modules).items() if mod is None]
    if missing:
        message = "%s not installed" % ", ".join(missing)
        if main == "__main__":
            print("SKIPPED: " + message)
            sys.exit(77)
        raise unittest.SkipTest(message)


NEG_INF = -float("inf")


def make_rng(test):
    """A numpy Generator from a fresh seed (or $HEED_TEST_SEED), printed."""
    env = os.environ.get("HEED_TEST_SEED")
    if env:
        seed = int(env)
    else:
        seed = (int.from_bytes(os.urandom(4), "little") ^ time.time_ns()) & 0xFFFFFFFF
    print("\n[%s] seed=%d" % (test.id().rsplit(".", 1)[-1], seed), flush=True)
    return np.random.default_rng(seed)


def randn(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def nans(shape, dtype=np.float32):
    """An output poisoned with NaN, so that anything left unwritten shows."""
    return np.full(shape, np.nan, dtype=dtype)


def reference(q, k, v, mask_fn=None, scale=None, layout="bhsd", score_fn=None):
    """float64 attention: (out, lse).

    mask_fn(b, h, qi, kv) and score_fn(s, b, h, qi, kv) take broadcastable index
    arrays of shape [B,1,1,1], [1,H,1,1], [1,1,Sq,1], [1,1,1,Skv]. A query with
    no visible key gets out 0 and lse -inf (as docs/spec-language.md and
    runtime/Reference.cpp say); lse is the natural log of sum(exp(score)) over
    the visible keys, the score scaled and modified.
    """
    q, k, v = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    if layout == "bshd":
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
    B, Hq, Sq, D = q.shape
    Hkv, Skv = k.shape[1], k.shape[2]
    assert Hq % Hkv == 0
    group = Hq // Hkv
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    s = np.einsum("bhqd,bhkd->bhqk", q, k) * scale
    b_i = np.arange(B).reshape(B, 1, 1, 1)
    h_i = np.arange(Hq).reshape(1, Hq, 1, 1)
    q_i = np.arange(Sq).reshape(1, 1, Sq, 1)
    kv_i = np.arange(Skv).reshape(1, 1, 1, Skv)
    if score_fn is not None:
        s = score_fn(s, b_i, h_i, q_i, kv_i)
    if mask_fn is not None:
        mask = np.broadcast_to(mask_fn(b_i, h_i, q_i, kv_i), s.shape)
        s = np.where(mask, s, NEG_INF)
    m = s.max(axis=-1, keepdims=True) if Skv else np.full(s.shape[:-1] + (1,), NEG_INF)
    seen = np.isfinite(m)
    m0 = np.where(seen, m, 0.0)
    p = np.exp(s - m0)  # exp(-inf) = 0 for masked keys
    l = p.sum(axis=-1, keepdims=True)
    out = np.where(seen, (p @ v) / np.where(seen, l, 1.0), 0.0)
    lse = np.where(seen, m0 + np.log(np.where(seen, l, 1.0)), NEG_INF)[..., 0]
    if layout == "bshd":
        out = out.transpose(0, 2, 1, 3)
    return out, lse


class HeedTestCase(unittest.TestCase):
    atol = 1e-4
    rtol = 1e-4

    def assertClose(self, got, want, atol=None, rtol=None, what="out"):
        got = np.asarray(got, dtype=np.float64)
        self.assertEqual(got.shape, want.shape, what)
        self.assertFalse(np.isnan(got).any(), "%s: NaN left in the output" % what)
        atol = self.atol if atol is None else atol
        rtol = self.rtol if rtol is None else rtol
        if not np.allclose(got, want, atol=atol, rtol=rtol, equal_nan=False):
            diff = np.abs(got - want)
            diff[np.isinf(want) & (got == want)] = 0
            idx = np.unravel_index(np.nanargmax(diff), diff.shape)
            self.fail("%s: max |error| %.3g at %s (got %r, want %r; atol %g, rtol %g)"
                      % (what, diff[idx], idx, got[idx], want[idx], atol, rtol))

    def assertLse(self, got, want):
        got = np.asarray(got, dtype=np.float64)
        self.assertEqual(got.shape, want.shape, "lse")
        self.assertFalse(np.isnan(got).any(), "lse: NaN left")
        ninf = np.isneginf(want)
        np.testing.assert_array_equal(np.isneginf(got), ninf, "lse: -inf where no key is seen")
        self.assertClose(got[~ninf], want[~ninf], atol=1e-4, rtol=1e-5, what="lse")
