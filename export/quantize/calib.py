"""Calibration data: the student's modality, a stratified sample of the *training* split, checked.

Field notes, complaint 2: users never know how much or which data to calibrate on. The default is a
stratified sample of the training split (per-class proportions kept); the test split is refused
because calibrating on it leaks the data the accuracy is reported on. The sample is checked against
the bundle's input spec (channel count, finite values, plausible range for the units) and its
sha256 goes into the manifest, so a calibration cache or a result can be tied to its exact data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from cmkd_edge.export.preprocess import check_raw_batch
from cmkd_edge.export.samples import RawSamples, load_raw_samples

from cmkd_edge.errors import QuantizationError

CALIB_METHODS = ("minmax", "entropy", "percentile")
REFUSED_SPLITS = ("test",)


def check_split(split: str) -> str:
    """Refuse calibrating on the test split (it is the data accuracy is reported on)."""
    if split.strip().lower() in REFUSED_SPLITS:
        raise QuantizationError(f"calibration from the {split!r} split is refused",
                                "calibrate on --calib-split train (or val); test is for reporting")
    return split


def load_calibration(manifest: Mapping[str, Any], data: str | RawSamples | None, split: str = "train",
                     size: int = 128, seed: int = 0) -> RawSamples:
    """A stratified sample of ``split`` as raw deploy inputs, checked against the input spec.

    Raises:
        QuantizationError: test split, wrong channel count, non-finite values or implausible units.
        DataError: the data cannot be read.
    """
    check_split(split)
    if size < 1:
        raise QuantizationError(f"--calib-size must be >= 1 (got {size})")
    if isinstance(data, RawSamples):  # library callers may pass arrays they already hold
        check_split(str(data.info.get("split", split)))
        samples = data
    else:
        spec, prov = manifest["preprocess"], manifest.get("provenance", {})
        samples = load_raw_samples(data, spec, prov.get("view") or "", split, n=size, seed=seed)
    return checked(samples, manifest["input"], f"calibration data ({samples.info.get('data', 'arrays')})",
                   manifest["class_names"])


def checked(samples: RawSamples, input_entry: Mapping[str, Any], what: str,
            class_names: list[str] | None = None) -> RawSamples:
    """Apply the input-spec checks; spatial size must match a fixed-size input too.

    Labels are class indices, so data whose class list differs from the bundle's would be scored
    against the wrong classes and could pass the gate by accident: it is refused.
    """
    from cmkd_edge.errors import ExportValidationError

    theirs = samples.info.get("class_names")
    if class_names is not None and theirs is not None and list(theirs) != list(class_names):
        raise QuantizationError(
            f"{what} has classes {', '.join(map(str, theirs))}; the bundle was trained on "
            f"{', '.join(map(str, class_names))}", "use the data (and class list) the student was trained on")
    try:
        stats = check_raw_batch(samples.x, input_entry, what)
    except ExportValidationError as exc:
        raise QuantizationError(exc.message, exc.hint) from None
    shape = input_entry.get("shape") or [None] * 4
    for axis, want in ((2, shape[2]), (3, shape[3])):
        if want is not None and samples.x.shape[axis] != want:
            raise QuantizationError(f"{what} has spatial size {samples.x.shape[2:]} "
                                    f"(the model takes {shape[2]}x{shape[3]})")
    samples.info["value_stats"] = stats
    return samples


def batches(x: np.ndarray, size: int = 8) -> Iterator[np.ndarray]:
    """Contiguous float32 batches of ``x``."""
    for i in range(0, len(x), size):
        yield np.ascontiguousarray(x[i:i + size], dtype=np.float32)


def record(samples: RawSamples, method: str) -> dict[str, Any]:
    """What the manifest stores about a calibration set."""
    return {"method": method, "size": len(samples), "sha256": samples.sha256(),
            **{k: v for k, v in samples.info.items() if k != "n"}}


def load_validation(manifest: Mapping[str, Any], data: str | RawSamples | None, split: str = "val",
                    seed: int = 0) -> RawSamples:
    """The whole validation split, for the accuracy gate (checked like calibration data)."""
    if split.strip().lower() in REFUSED_SPLITS:
        raise QuantizationError("the accuracy gate must not use the test split",
                                "gate on the validation split; report on test")
    if isinstance(data, RawSamples):
        if str(data.info.get("split", split)).lower() in REFUSED_SPLITS:
            raise QuantizationError("the accuracy gate must not use the test split")
        return checked(data, manifest["input"], "validation data", manifest["class_names"])
    spec, prov = manifest["preprocess"], manifest.get("provenance", {})
    samples = load_raw_samples(data, spec, prov.get("view") or "", split, seed=seed)
    return checked(samples, manifest["input"], f"validation data ({samples.info.get('data', 'arrays')})",
                   manifest["class_names"])
