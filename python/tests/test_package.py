#!/usr/bin/env python3
"""`pip install ./python` into a fresh virtual environment, offline, then `import heed`
and one attention call there, with no HEED_* variable set: the wheel must carry libheed.so.

The library to bundle is named to the build (only) by $HEED_LIBRARY, as ctest sets it;
without it the backend takes build/lib/libheed.so. Reports SKIPPED (exit 77) where the
venv module or pip is missing.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_PYTHON_DIR = os.path.dirname(_HERE)

_CHECK = r'''
import math, os, sys
import numpy as np
import heed
lib = heed.library_path()
print("heed", heed.__version__, "from", heed.__file__, "library", lib)
site = os.path.dirname(os.path.dirname(heed.__file__))
assert os.path.realpath(lib).startswith(os.path.realpath(site)), (lib, site)
assert not heed.__file__.startswith(sys.argv[1]), "imported the source tree, not the install"
seed = int(sys.argv[2])
print("seed=%d" % seed)
rng = np.random.default_rng(seed)
q, k, v = (rng.standard_normal((1, 2, 37, 16)).astype(np.float32) for _ in range(3))
out = np.full_like(q, np.nan)
heed.attention(q, k, v, "variant c { mask = causal() }", out=out)
s = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k.astype(np.float64)) / math.sqrt(16)
s = np.where(np.tril(np.ones((37, 37), bool)), s, -np.inf)
p = np.exp(s - s.max(-1, keepdims=True))
want = (p / p.sum(-1, keepdims=True)) @ v.astype(np.float64)
err = float(np.abs(out - want).max())
print("max |error| vs float64: %.3g" % err)
assert err < 1e-4, err
print("version", heed.version())
'''


def run(cmd, env, cwd, label=None):
    print("$", label or " ".join(cmd), flush=True)
    t = time.time()
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    print(p.stdout.rstrip())
    print("  (%.1f s, exit %d)" % (time.time() - t, p.returncode), flush=True)
    return p.returncode


def main():
    missing = [m for m in ("venv", "ensurepip") if importlib.util.find_spec(m) is None]
    if missing:
        print("SKIPPED: no %s for %s" % (" or ".join(missing), sys.executable))
        return 77
    tmp = tempfile.mkdtemp(prefix="heed-venv-")
    try:
        env_dir = os.path.join(tmp, "venv")
        if run([sys.executable, "-m", "venv", "--system-site-packages", env_dir], os.environ,
               tmp) != 0:
            print("SKIPPED: python3 -m venv failed (no ensurepip?)")
            return 77
        py = os.path.join(env_dir, "bin", "python")
        if run([py, "-m", "pip", "--version"], os.environ, tmp) != 0:
            print("SKIPPED: no pip in the virtual environment")
            return 77
        build_env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        if run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation", _PYTHON_DIR],
               build_env, tmp) != 0:
            print("FAILED: pip install ./python")
            return 1
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("HEED_") and k != "PYTHONPATH"}
        clean["HEED_CACHE_DIR"] = os.path.join(tmp, "cache")
        seed = int.from_bytes(os.urandom(4), "little")
        if run([py, "-c", _CHECK, os.path.dirname(_PYTHON_DIR), str(seed)], clean, tmp,
               label="%s -c 'import heed; heed.attention(...)' (no HEED_* set)" % py) != 0:
            print("FAILED: import heed / attention in the virtual environment")
            return 1
        print("PASSED")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
