"""``quantize_bundle``: calibrate, quantize, gate on the task metric, fall back rung by rung.

The run is a typed :class:`QuantizeRequest` and reads its data (``_read_data``), plans the QAT rung
(``_qat_plan``), climbs the ladder (``_climb``) and places the accepted artifact with its record
(``_place``). The first rung that passes the gate wins (field notes, complaint 1); each backend's
rungs are in ``rungs.py``, the gate's rules (paired interval, per-class rule where resolvable,
agreement on the training split outside the calibration sample, "cannot resolve" said plainly) in
``gate.py``. Every rung tried is recorded in ``manifest.quantization`` (a ``QuantRecord`` keyed
``<backend>:<precision>``) with its score, drop, 95 % interval, the evidence that decided and a
reason in words; the record also holds the outcome line (what was accepted, and whether that is a
lower rung than asked) and every artifact the run removed with why (issue 9: nothing is lost without
a word). Candidates are built in a scratch directory; only the accepted one is copied into the
bundle, whose update is atomic (``export.bundle.edit_bundle``; an archive input is never rewritten).
When no quantized rung passes, FP32 stays the only artifact for that backend and the record says so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from cmkd_edge.export.quantize.rungs import PRECISIONS, quantizers
from cmkd_edge.runtime.contract.records import (
    ONNX_FP32,
    Accuracy,
    GateRecord,
    QuantRecord,
    Removed,
    Rung,
    metric_of,
    quant_key,
)

from cmkd_edge.errors import QuantizationError


@dataclass(frozen=True)
class QuantizeRequest:
    """What one ``cmkd-edge quantize`` run asks for (the options of :func:`quantize_bundle`).

    Checked once, here, before anything is read.
    """

    backend: str = "onnxruntime"
    precision: str = "int8"
    calib_data: str | None = None
    calib_split: str = "train"
    calib_size: int = 128
    calib_method: str = "minmax"
    val_data: str | None = None
    val_split: str = "val"
    max_drop: float = 1.0
    max_class_drop: float | None = None
    seed: int = 0
    agreement_data: Any = "auto"
    agreement_size: int = 2000
    out: str | os.PathLike[str] | None = None
    checkpoint: str | None = None
    qat_epochs: int = 3
    only_rungs: Sequence[str] | None = None
    target: str | None = None  # ``--for``: a device profile name, a device JSON, or None (this machine)

    def __post_init__(self) -> None:
        from cmkd_edge.export.quantize import calib as calib_mod

        targets = quantizers()
        if self.backend not in targets:
            raise QuantizationError(f"unknown backend {self.backend!r}", f"choose {' or '.join(targets)}")
        if self.precision not in PRECISIONS:
            raise QuantizationError(f"unknown precision {self.precision!r}",
                                    f"choose {' or '.join(PRECISIONS)}")
        if self.calib_method not in calib_mod.CALIB_METHODS:
            raise QuantizationError(f"unknown calibration method {self.calib_method!r}",
                                    f"choose one of: {', '.join(calib_mod.CALIB_METHODS)}")
        if self.max_drop < 0:
            raise QuantizationError(f"--max-drop must be >= 0 (got {self.max_drop})")
        calib_mod.check_split(self.calib_split)
        from cmkd_edge.runtime.device_profiles import resolve

        resolve(self.target)  # an unknown device fails before any data is read


@dataclass(frozen=True)
class Quantized(QuantRecord):
    """The record a quantize run wrote into the manifest, plus where the bundle was written."""

    bundle: str | None = field(default=None, metadata={"omit_none": True})


@dataclass
class _Data:
    """The samples one run reads: calibration, the gate's labelled split, unlabelled agreement."""

    calib: Any
    val: Any
    extra_x: Any


def quantize_bundle(bundle: str | os.PathLike[str], request: QuantizeRequest | None = None, *,
                    progress: Callable[[str], None] | None = None, **options: Any) -> Quantized:
    """Quantize a bundle's FP32 ONNX for ``backend`` behind the accuracy gate.

    The request is a :class:`QuantizeRequest` or its fields as keywords:
        calib_data: dataset path; its ``calib_split`` (never test) is sampled. None = the training
            data export recorded in ``provenance.data`` (synthetic for bundles without a record).
        val_data: dataset for the gate (default ``calib_data``), split ``val_split``.
        seed: picks the stratified calibration subset. The split itself is always the training
            run's (its split.csv in the bundle, else drawn with the recorded training seed), so a
            "train" calibration sample cannot contain the run's test patches nor the "val" gate
            its training patches.
        max_drop: allowed drop in points (top-1, or micro-F1 for multi-label); ``max_class_drop``
            per class (default 3x), applied only where a class's samples can resolve it.
        agreement_data: unlabelled in-distribution inputs for the label-free agreement evidence
            (``gate.py``): "auto" = the training split of the calibration data outside the
            calibration sample (at most ``agreement_size``), None = none, or RawSamples.
        out: where the result goes when ``bundle`` is an archive (default: a new archive beside
            it, ``<name>-<backend>-<precision>.tar.gz``); a directory bundle is edited in place.
        checkpoint: the student checkpoint for the ``int8-qat`` rung (default: found beside the
            training run's split file and checked against ``provenance.student_checkpoint_sha256``).
        qat_epochs: QAT fine-tuning epochs; 0 leaves the rung out.
        only_rungs: INT8 rungs to try (e.g. ``["int8-qat"]`` alone); FP16/FP32 still close the ladder.
    Args:
        progress: optional callable(str) told about each rung.
    Returns:
        The backend's quantization record (also written to the manifest), with ``bundle`` (where
        the result was written) and ``replaced`` (artifacts this run removed, each with why).
    Raises:
        QuantizationError: bad options or calibration data (test split, wrong channels, units).
    """
    from cmkd_edge.export.bundle import derived_archive, edit_bundle
    from cmkd_edge.export.quantize.gate import Gate
    from cmkd_edge.runtime.device_profiles import resolve

    req = request if request is not None else QuantizeRequest(**options)
    target = resolve(req.target)
    say = progress or (lambda _msg: None)
    gate = Gate(req.max_drop, req.max_class_drop)
    dest = derived_archive(bundle, f"{req.backend}-{req.precision}", out=req.out)
    with edit_bundle(bundle, out=dest) as edit, \
            tempfile.TemporaryDirectory(prefix=".cmkd-quant-", dir=edit.work_parent) as scratch_dir:
        root, manifest = edit.root, edit.manifest
        fp32_art = manifest.find(ONNX_FP32)
        if fp32_art is None:
            raise QuantizationError(f"the bundle has no {ONNX_FP32} artifact to quantize",
                                    "re-export it with `cmkd-edge export`")
        calib_data, data = _read_data(manifest, root, req)
        qat_plan, qat_note = _qat_plan(manifest, root, req, calib_data, say)
        q = quantizers()[req.backend](root / fp32_art.path, Path(scratch_dir), data.calib, data.val,
                                      gate.max_drop, qat=qat_plan, target=target)
        rungs, accepted = _climb(q, _ladder(q, req), data, list(manifest.class_names), gate,
                                 req.val_split, manifest.output.thresholds, root / fp32_art.path, say)
        record = _place(edit, q, req, gate, fp32_art, data, rungs, accepted, qat_note)
        edit.manifest = replace(edit.manifest, quantization={
            **(edit.manifest.quantization or {}), quant_key(req.backend, req.precision): record})
    return Quantized(**{f: getattr(record, f) for f in record.__dataclass_fields__},
                     bundle=str(edit.written))


def _read_data(manifest: Any, root: Path, req: QuantizeRequest) -> tuple[str | None, _Data]:
    """Calibration (INT8 only), the gate's labelled split and the unlabelled agreement inputs."""
    from cmkd_edge.export.quantize import calib as calib_mod

    recorded = calib_mod.Recorded.from_manifest(manifest, root)
    calib_data = recorded.path if req.calib_data is None else req.calib_data
    calib = calib_mod.load_calibration(manifest, calib_data, req.calib_split, req.calib_size, req.seed,
                                       recorded) if req.precision == "int8" else None
    val = calib_mod.load_validation(manifest, req.val_data if req.val_data is not None else calib_data,
                                    req.val_split, req.seed, recorded)
    extra_x = None
    if manifest.task == "multiclass" and req.agreement_data is not None:
        src = calib_data if isinstance(req.agreement_data, str) and req.agreement_data == "auto" \
            else req.agreement_data
        extra_x = calib_mod.load_agreement(manifest, src, calib, req.agreement_size, req.seed, recorded)
    return calib_data, _Data(calib, val, extra_x)


def _qat_plan(manifest: Any, root: Path, req: QuantizeRequest, calib_data: str | None,
              say: Callable[[str], None]) -> tuple[Any, str | None]:
    """The int8-qat rung's plan (None: not offered) and, when it is not offered, why."""
    if req.precision != "int8":
        return None, None
    if req.qat_epochs <= 0:
        return None, "--qat-epochs 0"
    from cmkd_edge.export.quantize.qat import QatConfig, QatPlan

    plan = QatPlan.resolve(manifest, root, req.checkpoint, calib_data,
                           QatConfig(epochs=req.qat_epochs, seed=req.seed))
    if not plan.missing:
        return plan, None
    say(f"note: {plan.missing}")  # offered only when asked for by name; else a note in the record
    return (plan if req.only_rungs and "int8-qat" in req.only_rungs else None), plan.missing


def _ladder(q: Any, req: QuantizeRequest) -> list[dict[str, Any]]:
    """The rungs to try, best first (``--rung`` keeps the named INT8 ones and the closing rungs)."""
    ladder = q.rungs(req.precision, req.calib_method)
    if req.only_rungs:
        unknown = sorted(set(req.only_rungs) - {r["rung"] for r in ladder})
        if unknown:
            raise QuantizationError(f"unknown rung(s) {', '.join(unknown)} for {req.backend} {req.precision}",
                                    "choose from " + ", ".join(r["rung"] for r in ladder))
        ladder = [r for r in ladder if r["rung"] in req.only_rungs or r["precision"] != "int8"]
    return ladder


def _climb(q: Any, ladder: list[dict[str, Any]], data: _Data, classes: list[str], gate: Any,
           split: str, thresholds: Any, fp32: Path,
           say: Callable[[str], None]) -> tuple[list[Rung], tuple[Rung, list[Path]] | None]:
    """Build and gate each rung until one passes; every rung tried becomes a :class:`Rung`."""
    from cmkd_edge.export.quantize.gate import judge

    th = None if thresholds is None else np.asarray(thresholds)
    ref = q.reference()
    ref_extra = q.run(fp32, data.extra_x.x) if data.extra_x is not None else None
    rungs: list[Rung] = []
    for rung in ladder:
        say(f"rung {rung['rung']}")
        try:
            files, logits, info = q.build(rung)
        except QuantizationError as exc:
            rungs.append(Rung.from_dict({**rung, "passed": False, "error": exc.message,
                                         "reason": f"could not be built: {exc.message}"}))
            continue
        cand_extra = None
        if ref_extra is not None:
            cand_extra = ref_extra if not files else q.run(files[0], data.extra_x.x)
        verdict = judge(ref, logits, data.val.labels, classes, gate, split=split, thresholds=th,
                        extra=None if cand_extra is None else (ref_extra, cand_extra))
        tried = Rung.from_dict({**rung, **info, **verdict})
        rungs.append(tried)
        say(f"  {tried.metric} {tried.score:.2f} (drop {tried.drop:+.2f}, "
            f"interval [{tried.drop_lo:+.1f}, {tried.drop_hi:+.1f}]) "
            f"{'PASS' if tried.passed else 'fail'}: {tried.reason}")
        if tried.passed:
            return rungs, (tried, files)
    return rungs, None


def _place(edit: Any, q: Any, req: QuantizeRequest, gate: Any, fp32_art: Any, data: _Data,
           rungs: list[Rung], accepted: tuple[Rung, list[Path]] | None,
           qat_note: str | None) -> QuantRecord:
    """Put the accepted rung's artifact into the bundle, record FP32's score, and build the record
    (its gate part: :func:`_gate_record`)."""
    from cmkd_edge.export.quantize import calib as calib_mod
    from cmkd_edge.export.quantize.gate import judge

    manifest, val = edit.manifest, data.val
    th = manifest.output.thresholds
    before = {a.id: a for a in manifest.artifacts}
    # a re-run replaces what the same request made before, and everything compiled from it
    # (an IR or plan built from the old QDQ model); other precisions stay. Each removal is
    # reported with its reason (issue 9: nothing is lost without a word).
    gone = edit.drop([q.artifact_id(req.precision)])
    fp32_score = judge(q.ref, q.ref, val.labels, list(manifest.class_names), gate, split=req.val_split,
                       thresholds=None if th is None else np.asarray(th))["score"]
    edit.update(replace(fp32_art, accuracy=Accuracy.scored(manifest.task, fp32_score, split=req.val_split,
                                                           n=len(val), backend=req.backend)))
    rung, files = accepted if accepted else (Rung(rung="fp32", precision="fp32"), [])
    placed = None
    if files:
        art = q.place(edit.root, rung.precision, files)
        gone += edit.put(replace(art, accuracy=Accuracy.scored(
            manifest.task, rung.score, split=req.val_split, n=len(val), fp32=fp32_score, drop=rung.drop,
            drop_interval=(rung.drop_lo, rung.drop_hi), resolved=rung.resolved),
            gate_passed=True, rung=rung.rung))
        placed = art.id
    verdict = rung if accepted else None
    return QuantRecord(
        backend=req.backend, requested_precision=req.precision, method=q.method,
        calibration=calib_mod.record(data.calib, req.calib_method) if data.calib is not None else None,
        gate=_gate_record(manifest, gate, req.val_split, data, fp32_score, verdict),
        qat_not_offered=qat_note, rungs=tuple(rungs), accepted=rung.rung,
        accepted_precision=rung.precision, passed=accepted is not None and rung.precision != "fp32",
        ended_lower=rung.precision != req.precision,
        outcome=_outcome(req.backend, req.precision, rung, verdict, rungs),
        replaced=tuple(Removed(id=i, gate_passed=before[i].gate_passed,
                               why=_why_removed(i, before, placed, rung, req.precision, gate))
                       for i in dict.fromkeys(gone) if i in before),
        target=q.target.record() if q.target is not None else None,
        extra=q.record(req.precision))


def _gate_record(manifest: Any, gate: Any, split: str, data: _Data, fp32_score: float,
                 verdict: Rung | None) -> GateRecord:
    """What the gate measured on (data, split, seeds, resolution) and what it decided, for the record."""
    from cmkd_edge.export.quantize.gate import resolution

    val, th = data.val, manifest.output.thresholds
    unresolved = verdict is not None and not verdict.resolved
    return GateRecord(
        metric=metric_of(manifest.task), max_drop=gate.max_drop, max_class_drop=gate.class_limit,
        confidence=gate.confidence, split=split, n=len(val), fp32_top1=fp32_score,
        fp32_score=fp32_score, thresholds=None if th is None else tuple(th), sha256=val.sha256(),
        seed=val.info.get("seed"), sample_seed=val.info.get("sample_seed"),
        split_table=val.info.get("split_table"), resolution=resolution(val.top1_labels()),
        data=val.info.get("data"), synthetic=val.info.get("synthetic"),
        agreement_data=None if data.extra_x is None else {
            k: data.extra_x.info.get(k) for k in ("data", "split", "n", "excluded")},
        resolved=None if verdict is None else verdict.resolved,
        unresolved_note=verdict.reason if unresolved else None)


def _why_removed(art_id: str, before: dict[str, Any], placed: str | None, rung: Rung,
                 precision: str, gate: Any) -> str:
    """Why this run took ``art_id`` out of the bundle, in words a user can act on."""
    old = before[art_id]
    if art_id == placed:
        return f"replaced by this run's {rung.rung} (it passed the gate at --max-drop {gate.max_drop:g})"
    if old.source and old.source in before:
        return (f"compiled from {old.source}, which this run replaced or removed; compile it again "
                "from the new model")
    return (f"this run's gate (--max-drop {gate.max_drop:g}) accepted no {precision} rung, so the "
            f"earlier {precision} artifact no longer meets the request; re-run with the earlier "
            "limit to get it back")


def _outcome(backend: str, precision: str, rung: Rung, verdict: Rung | None, rungs: list[Rung]) -> str:
    """The one line a user reads last: what was accepted, what was asked, and why."""
    head = f"accepted: {rung.rung} ({backend})"
    if verdict is None:
        return f"{head}; requested {precision}, no rung passed the gate, FP32 kept"
    if rung.precision != precision:
        failed = [r for r in rungs if r.precision == precision]
        why = (failed[-1].reason or "") if failed else ""
        return (f"{head}; requested {precision}, ended on a LOWER rung ({rung.precision}): every "
                f"{precision} rung failed (last: {why})")
    return f"{head}; {verdict.reason}"


def check_strict(record: QuantRecord, strict: bool) -> None:
    """``--strict``: a request that ended on a lower rung than asked is an error (non-zero exit).

    Raises:
        QuantizationError: ``strict`` and the record's accepted precision is not the requested one.
    """
    if strict and record.ended_lower:
        raise QuantizationError(f"--strict: {record.outcome}",
                                "relax --max-drop, gate on more labelled data, or drop --strict")
