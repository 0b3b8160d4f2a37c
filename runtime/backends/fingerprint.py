"""TensorRT engine fingerprints: which TensorRT and GPU an engine was built for, and whether it fits.

A TensorRT plan only deserializes on the TensorRT version that built it and is tuned for (and, without
hardware-compatibility mode, only valid on) the GPU architecture it was built on; users meet this as
"version tag does not match". The bundle stores a fingerprint per engine; the runtime compares it with
this device *before* handing the plan to TensorRT and either refuses with a clear message or rebuilds
from the ONNX. The comparison is a pure function so it is tested without a GPU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FingerprintCheck:
    """Result of comparing an engine's fingerprint with the device's.

    ``errors`` make the engine unusable (TensorRT version, compute capability); ``warnings`` do not
    (a different GPU model of the same compute capability runs the plan, possibly slower).
    """

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.errors


def trt_version(v: object) -> str:
    """'10.3.0.26' -> '10.3.0': plans are tied to major.minor.patch, not the build number."""
    parts = re.findall(r"\d+", str(v))
    return ".".join((parts + ["0", "0"])[:3]) if parts else ""


def compute_capability(v: object) -> str:
    """Normalise a compute capability: '8.7', (8, 7), '87', 'sm_87' -> '8.7'."""
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return f"{int(v[0])}.{int(v[1])}"
    s = str(v).lower().removeprefix("sm_").strip()
    if re.fullmatch(r"\d+\.\d+", s):
        return s
    if re.fullmatch(r"\d{2,3}", s):
        return f"{s[:-1]}.{s[-1]}"
    return s


def check_fingerprint(expected: Mapping[str, object] | None,
                      actual: Mapping[str, object]) -> FingerprintCheck:
    """Compare a bundle engine's fingerprint (``expected``) with this device's (``actual``).

    Keys: ``tensorrt`` (version), ``compute_capability``, ``gpu`` (name). A missing expected key
    is an error: an engine whose origin cannot be confirmed is not trusted.
    """
    if not expected:
        return FingerprintCheck(errors=("the engine has no fingerprint",))
    errors, warnings = [], []
    want, have = trt_version(expected.get("tensorrt", "")), trt_version(actual.get("tensorrt", ""))
    if not want:
        errors.append("the engine's TensorRT version is not recorded")
    elif want != have:
        errors.append(f"engine built with TensorRT {want}, this device has {have or 'none'}")
    want_cc = compute_capability(expected.get("compute_capability", ""))
    have_cc = compute_capability(actual.get("compute_capability", ""))
    if not want_cc:
        errors.append("the engine's GPU compute capability is not recorded")
    elif want_cc != have_cc:
        errors.append(f"engine built for compute capability {want_cc}, this GPU is {have_cc or 'unknown'}")
    gpu_want, gpu_have = str(expected.get("gpu", "")).strip(), str(actual.get("gpu", "")).strip()
    if gpu_want and gpu_have and gpu_want.lower() != gpu_have.lower():
        warnings.append(f"engine built on {gpu_want!r}, running on {gpu_have!r}")
    return FingerprintCheck(tuple(errors), tuple(warnings))


def fingerprint_key(fingerprint: Mapping[str, object]) -> str:
    """A file-name-safe key of what a plan or timing cache is valid for: TensorRT + GPU arch.

    ``{"tensorrt": "10.3.0.30", "compute_capability": "8.7"}`` -> ``"trt10.3.0-sm8.7"``.
    """
    raw = (f"trt{trt_version(fingerprint.get('tensorrt', ''))}"
           f"-sm{compute_capability(fingerprint.get('compute_capability', ''))}")
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


def engine_key(onnx_sha256: str, precision: str, fingerprint: Mapping[str, object]) -> str:
    """File stem of a plan built on this device from the ONNX file with digest ``onnx_sha256``.

    A rebuilt plan is reused only for the same model, precision, TensorRT version and GPU arch.
    """
    return f"{onnx_sha256[:16]}-{precision}-{fingerprint_key(fingerprint)}"
