"""``quantize_bundle``: calibrate, quantize, gate on the task metric, fall back rung by rung.

The first rung that passes the gate wins (field notes, complaint 1); each backend's rungs are in
``rungs.py``, the gate's rules (paired interval, per-class rule where resolvable, agreement on the
training split outside the calibration sample, "cannot resolve" said plainly) in ``gate.py``. Every
rung tried is recorded in ``manifest.quantization["<backend>:<precision>"]`` with its score, drop,
95 % interval, the evidence that decided and a reason in words; the record also holds the outcome
line (what was accepted, and whether that is a lower rung than asked) and every artifact the run
removed with why (issue 9: nothing is lost without a word). Candidates are built in a scratch
directory; only the accepted one is copied into the bundle, whose update is atomic
(``export.bundle.edit_bundle``; an archive input is never rewritten). When no quantized rung
passes, FP32 stays the only artifact for that backend and the record says so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from cmkd_edge.export.quantize.rungs import PRECISIONS, quantizers

from cmkd_edge.errors import QuantizationError


def quantize_bundle(bundle: str | os.PathLike[str], *, backend: str = "onnxruntime",
                    precision: str = "int8", calib_data: str | None = None,
                    calib_split: str = "train", calib_size: int = 128,
                    calib_method: str = "minmax", val_data: str | None = None,
                    val_split: str = "val", max_drop: float = 1.0,
                    max_class_drop: float | None = None, seed: int = 0,
                    agreement_data: Any = "auto", agreement_size: int = 2000,
                    out: str | os.PathLike[str] | None = None,
                    progress: Any = None, checkpoint: str | None = None, qat_epochs: int = 3,
                    only_rungs: Sequence[str] | None = None) -> dict[str, Any]:
    """Quantize a bundle's FP32 ONNX for ``backend`` behind the accuracy gate.

    Args:
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
        progress: optional callable(str) told about each rung.
        checkpoint: the student checkpoint for the ``int8-qat`` rung (default: found beside the
            training run's split file and checked against ``provenance.student_checkpoint_sha256``).
        qat_epochs: QAT fine-tuning epochs; 0 leaves the rung out.
        only_rungs: INT8 rungs to try (e.g. ``["int8-qat"]`` alone); FP16/FP32 still close the ladder.
    Returns:
        The backend's quantization record (also written to the manifest), plus ``bundle`` (where
        the result was written) and ``replaced`` (artifacts this run removed, each with why).
    Raises:
        QuantizationError: bad options or calibration data (test split, wrong channels, units).
    """
    from cmkd_edge.export.bundle import derived_archive, edit_bundle
    from cmkd_edge.export.quantize import calib as calib_mod
    from cmkd_edge.export.quantize.calib import CALIB_METHODS
    from cmkd_edge.export.quantize.gate import Gate, judge, resolution

    targets = quantizers()
    if backend not in targets:
        raise QuantizationError(f"unknown backend {backend!r}", f"choose {' or '.join(targets)}")
    if precision not in PRECISIONS:
        raise QuantizationError(f"unknown precision {precision!r}", f"choose {' or '.join(PRECISIONS)}")
    if calib_method not in CALIB_METHODS:
        raise QuantizationError(f"unknown calibration method {calib_method!r}",
                                f"choose one of: {', '.join(CALIB_METHODS)}")
    if max_drop < 0:
        raise QuantizationError(f"--max-drop must be >= 0 (got {max_drop})")
    say = progress or (lambda _msg: None)
    gate = Gate(max_drop, max_class_drop)
    calib_mod.check_split(calib_split)
    dest = derived_archive(bundle, f"{backend}-{precision}", out)
    with edit_bundle(bundle, out=dest) as edit, \
            tempfile.TemporaryDirectory(prefix=".cmkd-quant-", dir=edit.work_parent) as scratch_dir:
        root, manifest = edit.root, edit.manifest
        fp32_art = manifest.find("onnx-fp32")
        if fp32_art is None:
            raise QuantizationError("the bundle has no onnx-fp32 artifact to quantize",
                                    "re-export it with `cmkd-edge export`")
        classes = list(manifest.class_names)
        recorded = calib_mod.Recorded.from_manifest(manifest, root)
        if calib_data is None:
            calib_data = recorded.path
        calib = calib_mod.load_calibration(manifest, calib_data, calib_split, calib_size, seed,
                                           recorded) if precision == "int8" else None
        val = calib_mod.load_validation(manifest, val_data if val_data is not None else calib_data,
                                        val_split, seed, recorded)
        extra_x = None
        if manifest.task == "multiclass" and agreement_data is not None:
            src = calib_data if isinstance(agreement_data, str) and agreement_data == "auto" \
                else agreement_data
            extra_x = calib_mod.load_agreement(manifest, src, calib, agreement_size, seed, recorded)
        qat_plan, qat_note = None, ("--qat-epochs 0" if precision == "int8" and qat_epochs <= 0
                                    else None)
        if precision == "int8" and qat_epochs > 0:
            from cmkd_edge.export.quantize.qat import QatConfig, QatPlan

            qat_plan = QatPlan.resolve(manifest, root, checkpoint, calib_data,
                                       QatConfig(epochs=qat_epochs, seed=seed))
            if qat_plan.missing:  # offered only when asked for by name; else a note in the record
                say(f"note: {qat_plan.missing}")
                qat_note, qat_plan = qat_plan.missing, (
                    qat_plan if only_rungs and "int8-qat" in only_rungs else None)
        q = targets[backend](root / fp32_art.path, Path(scratch_dir), calib, val, gate.max_drop,
                             qat=qat_plan)
        ladder = q.rungs(precision, calib_method)
        if only_rungs:
            unknown = sorted(set(only_rungs) - {r["rung"] for r in ladder})
            if unknown:
                raise QuantizationError(f"unknown rung(s) {', '.join(unknown)} for {backend} {precision}",
                                        "choose from " + ", ".join(r["rung"] for r in ladder))
            ladder = [r for r in ladder if r["rung"] in only_rungs or r["precision"] != "int8"]
        ref = q.reference()
        ref_extra = q.run(root / fp32_art.path, extra_x.x) if extra_x is not None else None
        thresholds = manifest.output.thresholds
        rungs, accepted = [], None
        for rung in ladder:
            say(f"rung {rung['rung']}")
            try:
                files, logits, info = q.build(rung)
            except QuantizationError as exc:
                rungs.append({**rung, "passed": False, "error": exc.message,
                              "reason": f"could not be built: {exc.message}"})
                continue
            cand_extra = None
            if ref_extra is not None:
                cand_extra = ref_extra if not files else q.run(files[0], extra_x.x)
            verdict = judge(ref, logits, val.labels, classes, gate, split=val_split,
                            thresholds=None if thresholds is None else np.asarray(thresholds),
                            extra=None if cand_extra is None else (ref_extra, cand_extra))
            rungs.append({**rung, **info, **verdict})
            say(f"  {verdict['metric']} {verdict['score']:.2f} (drop {verdict['drop']:+.2f}, "
                f"interval [{verdict['drop_lo']:+.1f}, {verdict['drop_hi']:+.1f}]) "
                f"{'PASS' if verdict['passed'] else 'fail'}: {verdict['reason']}")
            if verdict["passed"]:
                accepted = (rung, files, verdict)
                break
        before = {a.id: a for a in edit.manifest.artifacts}
        # a re-run replaces what the same request made before, and everything compiled from it
        # (an IR or plan built from the old QDQ model); other precisions stay. Each removal is
        # reported with its reason (issue 9: nothing is lost without a word).
        gone = edit.drop([q.artifact_id(precision)])
        fp32_verdict = judge(ref, ref, val.labels, classes, gate, split=val_split,
                             thresholds=None if thresholds is None else np.asarray(thresholds))
        fp32_score = fp32_verdict["score"]
        acc_key = "top1" if manifest.task == "multiclass" else "micro_f1"
        edit.update(replace(fp32_art, accuracy={acc_key: fp32_score, "split": val_split,
                                                "n": len(val), "backend": backend}))
        rung, files, verdict = accepted if accepted else ({"rung": "fp32", "precision": "fp32"},
                                                          [], None)
        art_id_placed = None
        if files:
            art = q.place(root, rung["precision"], files)
            gone += edit.put(replace(art, accuracy={acc_key: verdict["score"], "split": val_split,
                                                    "n": len(val), "fp32": fp32_score,
                                                    "drop": verdict["drop"],
                                                    "drop_interval": [verdict["drop_lo"],
                                                                      verdict["drop_hi"]],
                                                    "resolved": verdict["resolved"]},
                                     gate_passed=True, extra={**art.extra, "rung": rung["rung"]}))
            art_id_placed = art.id
        lower = rung["precision"] != precision
        replaced = [{"id": i, "gate_passed": before[i].gate_passed,
                     "why": _why_removed(i, before, art_id_placed, rung, precision, gate)}
                    for i in dict.fromkeys(gone) if i in before]
        res = resolution(val.top1_labels())
        unresolved = verdict is not None and not verdict["resolved"]
        record = {
            "backend": backend, "requested_precision": precision, "method": q.method,
            **q.record(precision),
            "calibration": calib_mod.record(calib, calib_method) if calib is not None else None,
            "gate": {"metric": "top1" if manifest.task == "multiclass" else "micro_f1",
                     "max_drop": gate.max_drop, "max_class_drop": gate.class_limit,
                     "confidence": gate.confidence,
                     "split": val_split, "n": len(val), "fp32_top1": fp32_score,
                     "fp32_score": fp32_score,
                     "thresholds": None if thresholds is None else list(thresholds),
                     "sha256": val.sha256(), "seed": val.info.get("seed"),
                     "sample_seed": val.info.get("sample_seed"),
                     "split_table": val.info.get("split_table"),
                     "resolution": res, "data": val.info.get("data"),
                     "synthetic": val.info.get("synthetic"),
                     "agreement_data": None if extra_x is None else {
                         k: extra_x.info.get(k) for k in ("data", "split", "n", "excluded")},
                     "resolved": None if verdict is None else verdict["resolved"],
                     "unresolved_note": verdict["reason"] if unresolved else None},
            "qat_not_offered": qat_note,
            "rungs": rungs, "accepted": rung["rung"], "accepted_precision": rung["precision"],
            "passed": accepted is not None and rung["precision"] != "fp32",
            "ended_lower": lower,
            "outcome": _outcome(backend, precision, rung, verdict, rungs),
            "replaced": replaced,
        }
        key = f"{backend}:{precision}"
        edit.manifest = replace(edit.manifest,
                                quantization={**(edit.manifest.quantization or {}), key: record})
    return {**record, "bundle": str(edit.written)}


def _why_removed(art_id: str, before: dict[str, Any], placed: str | None, rung: dict[str, Any],
                 precision: str, gate: Any) -> str:
    """Why this run took ``art_id`` out of the bundle, in words a user can act on."""
    old = before[art_id]
    if art_id == placed:
        return f"replaced by this run's {rung['rung']} (it passed the gate at --max-drop {gate.max_drop:g})"
    if old.source and old.source in before:
        return (f"compiled from {old.source}, which this run replaced or removed; compile it again "
                "from the new model")
    return (f"this run's gate (--max-drop {gate.max_drop:g}) accepted no {precision} rung, so the "
            f"earlier {precision} artifact no longer meets the request; re-run with the earlier "
            "limit to get it back")


def _outcome(backend: str, precision: str, rung: dict[str, Any], verdict: dict[str, Any] | None,
             rungs: list[dict[str, Any]]) -> str:
    """The one line a user reads last: what was accepted, what was asked, and why."""
    head = f"accepted: {rung['rung']} ({backend})"
    if verdict is None:
        return f"{head}; requested {precision}, no rung passed the gate, FP32 kept"
    if rung["precision"] != precision:
        failed = [r for r in rungs if r.get("precision") == precision]
        why = failed[-1].get("reason", "") if failed else ""
        return (f"{head}; requested {precision}, ended on a LOWER rung ({rung['precision']}): every "
                f"{precision} rung failed (last: {why})")
    return f"{head}; {verdict['reason']}"


def check_strict(record: dict[str, Any], strict: bool) -> None:
    """``--strict``: a request that ended on a lower rung than asked is an error (non-zero exit).

    Raises:
        QuantizationError: ``strict`` and the record's accepted precision is not the requested one.
    """
    if strict and record.get("ended_lower"):
        raise QuantizationError(f"--strict: {record['outcome']}",
                                "relax --max-drop, gate on more labelled data, or drop --strict")
