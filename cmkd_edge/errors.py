"""User-facing errors: one class per failure a user can fix, each with an exit code and a hint.

The CLI root turns a :class:`CmkdError` into one line ``error: <what>; <hint>`` and its exit code;
any other exception is a bug and keeps its traceback. Stdlib only: every layer, the runtime
included, may import this module.
"""

from __future__ import annotations


class CmkdError(Exception):
    """Base class of errors caused by input the user can fix (exit code 2 by default)."""

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """Return the message and hint as the single line the CLI prints."""
        text = " ".join(self.message.split())
        if self.hint:
            text += "; " + " ".join(self.hint.split())
        return text


class ConfigError(CmkdError):
    """An option or combination of options is invalid."""


class UnknownNameError(ConfigError):
    """A name looked up in a registry (arch, method, view, backend) does not exist."""


class DataError(CmkdError):
    """Input data is missing, unreadable, or inconsistent with what was asked."""


class CheckpointError(CmkdError):
    """A checkpoint is missing, not a cmkd-edge checkpoint, or inconsistent with the request."""


class BackendUnavailableError(CmkdError):
    """A requested backend (or device) is not installed or not present on this machine."""


class ExportValidationError(CmkdError):
    """An exported model failed a check (ONNX checker, opset, parity against torch)."""


class QuantizationError(CmkdError):
    """Quantization could not produce an acceptable model."""


class BundleError(CmkdError):
    """A bundle is missing, tampered with, unsafe to extract, or of an unknown schema."""


class InputMismatchError(CmkdError):
    """Input data does not match a model's input spec (bands, dtype, size, values)."""
