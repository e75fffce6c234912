"""Finding, opening and declaring libheed: the one ctypes handle every module calls.

The library is looked for, in order, at ``$HEED_LIBRARY`` (a full path), inside the
installed package (``heed/lib/libheed.so``, put there by ``pip install ./python``), in the
build tree next to a source checkout (``python/heed/../../build/lib/libheed.so``), then
through ``ctypes.util.find_library("heed")``.
"""

import ctypes
import ctypes.util
import os

from . import _capi
from .errors import UnsupportedError, error

_HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """(path, how it was found) in search order, after $HEED_LIBRARY."""
    yield os.path.join(_HERE, "lib", "libheed.so"), "bundled with the package"
    yield (os.path.normpath(os.path.join(_HERE, "..", "..", "build", "lib", "libheed.so")),
           "the build tree of this checkout")


def _open():
    """Finds and opens libheed; returns (CDLL, path). Raises ImportError."""
    env = os.environ.get("HEED_LIBRARY")
    if env:
        try:
            return ctypes.CDLL(env), env
        except OSError as e:
            raise ImportError(
                "heed: cannot load the library named by $HEED_LIBRARY=%r: %s" % (env, e)) from e
    tried = []
    for path, how in _candidates():
        tried.append("%s (%s)" % (path, how))
        if os.path.exists(path):
            try:
                return ctypes.CDLL(path), path
            except OSError as e:
                raise ImportError("heed: cannot load %s (%s): %s" % (path, how, e)) from e
    found = ctypes.util.find_library("heed")
    tried.append('ctypes.util.find_library("heed") -> %s' % (found or "nothing"))
    if found:
        try:
            return ctypes.CDLL(found), found
        except OSError as e:
            raise ImportError("heed: cannot load %s: %s" % (found, e)) from e
    raise ImportError(
        "heed: libheed.so not found (tried $HEED_LIBRARY (unset), %s). Install the package "
        "with `pip install ./python` after `./heed build`, build it (./heed build), or set "
        "HEED_LIBRARY to its full path." % ", ".join(tried))


def _bind(lib, path):
    """Declares every heed.h function on `lib`; returns the names missing
    (compiler functions are absent from libheed_runtime)."""
    missing = []
    for name, (restype, argtypes, compiler_only) in _capi.SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if compiler_only:
                missing.append(name)
                continue
            raise ImportError("heed: %s lacks %s(); is it heed's library?" % (path, name))
        fn.restype = restype
        fn.argtypes = argtypes
    return missing


lib, path = _open()
missing = _bind(lib, path)
_abi = lib.heed_abi_version()
if _abi != _capi.ABI_VERSION:
    raise ImportError("heed: %s has ABI version %d, this binding speaks version %d"
                      % (path, _abi, _capi.ABI_VERSION))
del _abi

#: heed's version string (``heed_version()``).
version = (lib.heed_version() or b"").decode("utf-8", "replace")


def last_error():
    msg = lib.heed_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def check(status):
    """Raises the HeedError for a failed status, with heed_last_error()."""
    if status != _capi.OK:
        msg = last_error()
        if not msg:
            s = lib.heed_status_string(status)
            msg = s.decode() if s else "status %d" % status
        raise error(status, msg)


def need_compiler(fn):
    """Raises UnsupportedError when `fn` is missing (a runtime-only library)."""
    if fn in missing:
        raise UnsupportedError(
            _capi.ERROR_UNSUPPORTED,
            "%s is not in %s (a runtime-only library: it loads and runs kernels but "
            "does not compile them; use libheed.so)" % (fn, path))
