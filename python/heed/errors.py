"""heed's exceptions: one class per heed_status of the C API, all HeedErrors."""

from . import _capi


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


_CLASSES = {
    _capi.ERROR_INVALID_ARGUMENT: InvalidArgumentError,
    _capi.ERROR_SPEC: SpecError,
    _capi.ERROR_COMPILE: CompileError,
    _capi.ERROR_LOAD: LoadError,
    _capi.ERROR_RUN: RunError,
    _capi.ERROR_UNSUPPORTED: UnsupportedError,
    _capi.ERROR_IO: HeedIOError,
}


def error(status, message):
    """The HeedError subclass for `status`, carrying `message`."""
    return _CLASSES.get(int(status), HeedError)(status, message)


def invalid(message):
    """An InvalidArgumentError raised by the binding itself (before any C call)."""
    return InvalidArgumentError(_capi.ERROR_INVALID_ARGUMENT, message)
