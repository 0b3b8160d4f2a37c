"""Calibration data: the student's modality, a stratified sample of the *training* split, checked.

Field notes, complaint 2: users never know how much or which data to calibrate on. The default is a
stratified sample of the training split (per-class proportions kept); the test split is refused
because calibrating on it leaks the data the accuracy is reported on. The sample is checked against
the bundle's input spec (channel count, finite values, plausible range for the units) and its
sha256 goes into the manifest, so a calibration cache or a result can be tied to its exact data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from cmkd_edge.export.samples import RawSamples, Recorded, check_raw_batch, load_raw_samples
from cmkd_edge.runtime.contract.manifest import Manifest
from cmkd_edge.runtime.contract.specs import InputSpec
from cmkd_edge.runtime.metrics import require_class_names

from cmkd_edge.errors import DataError, QuantizationError

CALIB_METHODS = ("minmax", "entropy", "percentile")
REFUSED_SPLITS = ("test",)


def check_split(split: str) -> str:
    """Refuse calibrating on the test split (it is the data accuracy is reported on)."""
    if split.strip().lower() in REFUSED_SPLITS:
        raise QuantizationError(f"calibration from the {split!r} split is refused",
                                "calibrate on --calib-split train (or val); test is for reporting")
    return split


def _read(manifest: Manifest, data: str | None, split: str, n: int | None,
          seed: int, recorded: Recorded) -> RawSamples:
    """Read ``split`` with the training run's split table and seed.

    The recorded split table is tried first: its sample ids only match the data it was drawn from,
    so it also tells whether ``data`` is the training data. For other data (ids do not match) the
    data's own split is used, drawn with the recorded seed; ``check_split`` still keeps test out.
    """
    spec, view = manifest.preprocess, manifest.provenance.view or ""
    if recorded.split_file is not None:
        try:
            out = load_raw_samples(data, spec, view, split, n=n, seed=recorded.seed,
                                   split_file=str(recorded.split_file), sample_seed=seed)
            out.info["split_table"] = "training run (bundle split.csv)"
            return out
        except DataError:
            pass  # not the training data (or unreadable: the read below says why)
    out = load_raw_samples(data, spec, view, split, n=n, seed=recorded.seed, sample_seed=seed)
    out.info["split_table"] = "the data's own" if recorded.known else "the data's own (no record)"
    return out


def load_calibration(manifest: Manifest, data: str | RawSamples | None, split: str = "train",
                     size: int = 128, seed: int = 0, recorded: Recorded | None = None
                     ) -> RawSamples:
    """A stratified sample of ``split`` as raw deploy inputs, checked against the input spec.

    ``recorded`` (export's record of the training data) supplies the split table and split seed;
    ``seed`` only picks the stratified subset.

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
        samples = _read(manifest, data, split, size, seed, recorded or Recorded())
    return checked(samples, manifest.input, f"calibration data ({samples.info.get('data', 'arrays')})",
                   manifest.class_names)


def checked(samples: RawSamples, inp: InputSpec, what: str,
            class_names: Sequence[str] | None = None) -> RawSamples:
    """Apply the input-spec checks; spatial size must match a fixed-size input too.

    Labels are class indices, so data whose class list differs from the bundle's would be scored
    against the wrong classes and could pass the gate by accident: it is refused.
    """
    from cmkd_edge.errors import ExportValidationError

    require_class_names(samples.info.get("class_names"), class_names, QuantizationError,
                        what + " has classes {got}; the bundle was trained on {want}",
                        "use the data (and class list) the student was trained on")
    try:
        stats = check_raw_batch(samples.x, inp, what)
    except ExportValidationError as exc:
        raise QuantizationError(exc.message, exc.hint) from None
    shape = inp.shape
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


def load_validation(manifest: Manifest, data: str | RawSamples | None, split: str = "val",
                    seed: int = 0, recorded: Recorded | None = None) -> RawSamples:
    """The whole validation split, for the accuracy gate (checked like calibration data)."""
    if split.strip().lower() in REFUSED_SPLITS:
        raise QuantizationError("the accuracy gate must not use the test split",
                                "gate on the validation split; report on test")
    if isinstance(data, RawSamples):
        if str(data.info.get("split", split)).lower() in REFUSED_SPLITS:
            raise QuantizationError("the accuracy gate must not use the test split")
        return checked(data, manifest.input, "validation data", manifest.class_names)
    samples = _read(manifest, data, split, None, seed, recorded or Recorded())
    return checked(samples, manifest.input, f"validation data ({samples.info.get('data', 'arrays')})",
                   manifest.class_names)


def load_agreement(manifest: Manifest, data: str | RawSamples | None, calib: RawSamples | None,
                   size: int = 2000, seed: int = 0, recorded: Recorded | None = None
                   ) -> RawSamples | None:
    """Unlabelled in-distribution inputs for the gate's agreement evidence, or None.

    The training split outside the calibration sample: the model has seen these patches in
    training, but the quantized model has not been calibrated on them, and agreement with FP32 needs
    no labels (``gate.py`` says why it bounds the drop). At most ``size`` rows (a seeded subset), so
    the gate's time stays bounded on large data. Arrays the caller passed as calibration data give
    no extra data (there is nothing beside them); data that cannot be read gives None, not an error.
    """
    if isinstance(data, RawSamples):
        if calib is not None and data is calib:
            return None
        return checked(data, manifest.input, "agreement data", None)
    try:
        train = _read(manifest, data, "train", None, seed, recorded or Recorded())
    except (DataError, QuantizationError):
        return None
    used = set() if calib is None else {bytes(np.ascontiguousarray(r).data) for r in calib.x}
    keep = np.asarray([bytes(np.ascontiguousarray(r).data) not in used for r in train.x], bool)
    idx = np.flatnonzero(keep)
    if len(idx) > size:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size, replace=False))
    if not len(idx):
        return None
    info = {**train.info, "n": int(len(idx)), "excluded": int((~keep).sum()),
            "split": "train (outside the calibration sample)"}
    out = RawSamples(x=train.x[idx], labels=train.labels[idx], info=info)
    try:
        return checked(out, manifest.input, "agreement data", manifest.class_names)
    except QuantizationError:
        return None
