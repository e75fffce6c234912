"""heed's in-tree PEP 517/660 build backend: wheels of python/heed with libheed.so inside.

Needs nothing beyond the standard library, so ``pip install ./python`` works offline
(no setuptools download, no build isolation needed). The wheel bundles the libheed.so
of a build tree, found from, in order: ``--config-settings libheed=PATH``, ``$HEED_LIBRARY``,
``$HEED_BUILD_DIR/lib/libheed.so``, then ``<repo>/build/lib/libheed.so``. The version is
the project's, read from ``<repo>/CMakeLists.txt`` (``project(heed VERSION x.y.z ...)``),
else from the library (``heed_version()``). An editable install (``pip install -e``)
puts python/ on the path instead and loads the build tree's library.
"""

import base64
import ctypes
import hashlib
import io
import os
import re
import sysconfig
import tarfile
import zipfile

_PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REPO = os.path.dirname(_PYTHON_DIR)
_PACKAGE = os.path.join(_PYTHON_DIR, "heed")
_NAME = "heed"
_SUMMARY = "Compile and run attention variants (FlexAttention-compatible front door)"


class BuildError(RuntimeError):
    pass


def _library(config_settings):
    """The libheed.so to bundle, with how it was found."""
    settings = config_settings or {}
    tried = []
    for path, how in ((settings.get("libheed"), "--config-settings libheed="),
                      (os.environ.get("HEED_LIBRARY"), "$HEED_LIBRARY"),
                      (os.path.join(os.environ["HEED_BUILD_DIR"], "lib", "libheed.so")
                       if os.environ.get("HEED_BUILD_DIR") else None, "$HEED_BUILD_DIR"),
                      (os.path.join(_REPO, "build", "lib", "libheed.so"), "the build tree")):
        if not path:
            continue
        tried.append("%s (%s)" % (path, how))
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise BuildError("heed: no libheed.so to put in the wheel (tried %s). Build it first "
                     "(./heed build), or name it with --config-settings libheed=PATH."
                     % ", ".join(tried))


def _version(lib_path=None):
    pkg_info = os.path.join(_PYTHON_DIR, "PKG-INFO")  # in an sdist
    if os.path.isfile(pkg_info):
        with open(pkg_info) as f:
            m = re.search(r"^Version: (\S+)$", f.read(), flags=re.M)
        if m:
            return m.group(1)
    cmake = os.path.join(_REPO, "CMakeLists.txt")
    try:
        with open(cmake) as f:
            m = re.search(r"project\s*\(\s*heed\s+VERSION\s+([0-9][0-9.]*)", f.read())
        if m:
            return m.group(1)
    except OSError:
        pass
    if lib_path:
        lib = ctypes.CDLL(lib_path)
        lib.heed_version.restype = ctypes.c_char_p
        return lib.heed_version().decode()
    raise BuildError("heed: cannot tell the version: %s has no project(heed VERSION ...)"
                     % cmake)


def _tag(pure):
    if pure:
        return "py3-none-any"
    return "py3-none-" + re.sub(r"[^A-Za-z0-9]", "_", sysconfig.get_platform())


def _metadata(version):
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\n"
            "Requires-Python: >=3.8\nProvides-Extra: numpy\n"
            "Requires-Dist: numpy; extra == \"numpy\"\n" % (_NAME, version, _SUMMARY))


def _wheel_file(tag):
    return ("Wheel-Version: 1.0\nGenerator: heed_build\nRoot-Is-Purelib: %s\nTag: %s\n"
            % ("true" if tag.endswith("-any") else "false", tag))


def _dist_info(version):
    return "%s-%s.dist-info" % (_NAME, version)


def _write_metadata_dir(directory, version, tag):
    info = os.path.join(directory, _dist_info(version))
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(_metadata(version))
    with open(os.path.join(info, "WHEEL"), "w") as f:
        f.write(_wheel_file(tag))
    return os.path.basename(info)


class _Wheel:
    """A wheel being written: files and their RECORD lines."""

    def __init__(self, path):
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self.records = []

    def add(self, arcname, data, mode=0o644):
        info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.records.append("%s,sha256=%s,%d" % (arcname, digest, len(data)))

    def close(self, dist_info):
        record = dist_info + "/RECORD"
        lines = self.records + [record + ",,"]
        self.zip.writestr(zipfile.ZipInfo(record, date_time=(2020, 1, 1, 0, 0, 0)),
                          "\n".join(lines) + "\n")
        self.zip.close()


def _package_files():
    """(path on disk, name in the wheel) of heed's Python sources."""
    for root, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "lib"))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                yield path, os.path.relpath(path, _PYTHON_DIR).replace(os.sep, "/")


def _read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- PEP 517 -------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    lib = _library(config_settings)
    return _write_metadata_dir(metadata_directory, _version(lib), _tag(pure=False))


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    lib = _library(config_settings)
    version = _version(lib)
    tag = _tag(pure=False)
    filename = "%s-%s-%s.whl" % (_NAME, version, tag)
    wheel = _Wheel(os.path.join(wheel_directory, filename))
    for path, arcname in _package_files():
        wheel.add(arcname, _read(path))
    wheel.add("heed/lib/libheed.so", _read(lib), mode=0o755)
    info = _dist_info(version)
    wheel.add(info + "/METADATA", _metadata(version).encode())
    wheel.add(info + "/WHEEL", _wheel_file(tag).encode())
    wheel.close(info)
    return filename


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_sdist(sdist_directory, config_settings=None):
    """The Python sources with PKG-INFO (a wheel built from it needs libheed.so named by
    --config-settings libheed=PATH or $HEED_LIBRARY)."""
    version = _version()
    base = "%s-%s" % (_NAME, version)
    filename = base + ".tar.gz"
    files = [(os.path.join(_PYTHON_DIR, "pyproject.toml"), "pyproject.toml"),
             (os.path.abspath(__file__), "build_backend/heed_build.py")]
    files += list(_package_files())
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) \
            as tar:
        for path, arcname in files + [(None, "PKG-INFO")]:
            data = _metadata(version).encode() if path is None else _read(path)
            info = tarfile.TarInfo("%s/%s" % (base, arcname))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return filename


# ---- PEP 660 (pip install -e) ------------------------------------------------------------


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _write_metadata_dir(metadata_directory, _version(), _tag(pure=True))


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    version = _version()
    tag = _tag(pure=True)
    filename = "%s-%s-%s.whl" % (_NAME, version, tag)
    wheel = _Wheel(os.path.join(wheel_directory, filename))
    wheel.add("heed_editable.pth", (_PYTHON_DIR + "\n").encode())
    info = _dist_info(version)
    wheel.add(info + "/METADATA", _metadata(version).encode())
    wheel.add(info + "/WHEEL", _wheel_file(tag).encode())
    wheel.close(info)
    return filename
