"""``compile_bundle``: target-specific artifacts (OpenVINO IR, TensorRT plan) from the bundle's ONNX.

Sources: FP32 -> ``onnx-fp32``; FP16 -> ``onnx-fp32`` (compressed by the target); INT8 ->
``onnx-int8``, the QDQ model written by ``cmkd-edge quantize`` (the one INT8 artifact every backend
accepts). Each result is added to the bundle atomically with the artifact it came from.

A target is a backend that declares a compile hook (``cmkd_edge.runtime.backends``); the hook
lives in the backend's export module (``export/targets/openvino.py``, ``export/targets/tensorrt.py``)
beside its converter and returns the new :class:`Artifact`. This module only picks sources, checks
options, calls the hook and re-gates.

Gating: the accuracy gate of ``quantize`` ran on ONNX Runtime, so a compiled artifact never inherits
``gate_passed``; it records its ``source`` and gets ``gate_passed`` only from its own evaluation
(``compile.regate``). Re-quantizing drops artifacts compiled from the old QDQ model.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cmkd_edge.runtime.contract.manifest import Artifact, Manifest
from cmkd_edge.runtime.contract.records import Removed, onnx_id
from cmkd_edge.runtime.contract.units import synthetic_batch

from cmkd_edge.errors import ConfigError, ExportValidationError


def compile_hooks() -> dict[str, str]:
    """Compile targets by name -> ``"module:function"`` of their hook, from the backends'
    declarations (a backend without a hook is not a compile target)."""
    from cmkd_edge.runtime.backends import backend_spec, compile_targets

    return {name: str(backend_spec(name).compile_hook) for name in compile_targets()}


def _hook(target: str) -> tuple[Callable[..., Artifact], tuple[str, ...]]:
    hooks = compile_hooks()
    if target not in hooks:
        raise ConfigError(f"unknown compile target {target!r}", f"choose {' or '.join(hooks)}")
    module, _, name = hooks[target].partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, name), tuple(mod.COMPILE_PRECISIONS)


@dataclass(frozen=True)
class Compiled:
    """An artifact one compile added, what it displaced (each with why) and where it was written."""

    artifact: Artifact
    replaced: tuple[Removed, ...]
    bundle: str
    notes: tuple[str, ...] = ()  # what the device rules say about this artifact on its target

    def to_dict(self) -> dict[str, Any]:
        """The ``compile --json`` entry: the artifact as manifest.json holds it, plus the rest."""
        return {**self.artifact.to_dict(), "replaced": [r.to_dict() for r in self.replaced],
                "bundle": self.bundle, "notes": list(self.notes)}


def _source(manifest: Manifest, precision: str) -> Artifact:
    want = onnx_id("int8" if precision == "int8" else "fp32")
    art = manifest.find(want)
    if art is None:
        hint = ("run `cmkd-edge quantize BUNDLE --backend onnxruntime --precision int8` first "
                "(INT8 comes from its QDQ model)") if precision == "int8" else "re-export the bundle"
        raise ExportValidationError(f"the bundle has no {want} artifact to compile {precision} from",
                                    hint)
    return art


def compile_bundle(bundle: str | os.PathLike[str], *, target: str = "openvino",
                   precisions: Sequence[str] | None = None, device: str = "CPU",
                   cache_dir: str | os.PathLike[str] | None = None, min_batch: int | None = None,
                   opt_batch: int | None = None, max_batch: int | None = None,
                   timing_cache: str | os.PathLike[str] | None = None,
                   strongly_typed: bool = False,
                   out: str | os.PathLike[str] | None = None,
                   for_device: str | None = None) -> list[Compiled]:
    """Compile the bundle for ``target`` (``precisions`` None: the target's default, the first of
    its hook module's ``COMPILE_PRECISIONS``); returns the artifacts added, each with ``replaced``
    (what it displaced: the same-id artifact of an earlier
    compile and anything built from it, each with whether it had passed its gate and why it went)
    and ``bundle`` (where the result was written: an archive input is never rewritten, ``out`` or
    ``<name>-<target>.tar.gz`` beside it).

    TensorRT: batch profile and timing cache default to the runtime builder's
    (``cmkd_edge.runtime.backends.trt_build``: min 1, opt = max, max 8; per-user, per-device timing cache).

    ``for_device`` (``--for``: a profile name, a device JSON or None for this machine) is recorded on
    every artifact compiled for another device and on every INT8 one; a device-bound format (a
    TensorRT plan) is refused for another device, and an INT8 artifact whose gate (run here) does
    not carry over to the target by its backend's device rule, or whose QDQ source was quantized
    for another device, gets a note saying so.

    Raises:
        ConfigError: unknown target/precision/device.
        ExportValidationError: missing source artifact, compile or check failure.
        BackendUnavailableError: the target's toolkit (or GPU) is missing.
    """
    from cmkd_edge.export.bundle import derived_archive, edit_bundle
    from cmkd_edge.export.compile.regate import regate

    hook, allowed = _hook(target)
    made_for, here = _target_device(target, for_device)
    if precisions is None:  # the target's own default: its COMPILE_PRECISIONS list it first
        precisions = allowed[:1]
    bad = [p for p in precisions if p not in allowed]
    if bad or not precisions:
        raise ConfigError(f"precision {','.join(bad) or 'none'} is not available for {target}",
                          f"choose from {', '.join(allowed)}")
    added: list[tuple[Artifact, tuple[Removed, ...]]] = []
    with edit_bundle(bundle, out=derived_archive(bundle, target, out)) as edit:
        inp = edit.manifest.input
        sample = synthetic_batch(inp.units, inp.channels, inp.shape[2:], 2, seed=0,
                                 expected_range=inp.expected_range or (0.0, 1.0))
        for precision in precisions:
            src = _source(edit.manifest, precision)
            art = hook(edit.root, src, precision, sample=sample, device=device,
                       cache_dir=Path(cache_dir) if cache_dir else None, input_shape=inp.shape,
                       min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                       timing_cache=Path(timing_cache) if timing_cache else None,
                       strongly_typed=strongly_typed)
            if for_device is not None or precision == "int8":
                art = replace(art, target=made_for.record())
            notes: tuple[str, ...] = ()
            if precision == "int8":
                art = replace(art, **regate(edit.root, edit.manifest, art))
                notes = _int8_notes(edit.manifest, src, art, made_for, here)
            before = {a.id: a for a in edit.manifest.artifacts}
            gone = ([art.id] if art.id in before else []) + edit.put(art)
            added.append((art, notes, tuple(
                Removed(id=i, gate_passed=before[i].gate_passed,
                        why=(f"replaced by this compile of {art.id} from {src.id}"
                             if i == art.id else f"built from the replaced {art.id}"))
                for i in gone if i in before)))
    return [Compiled(a, r, str(edit.written), n) for a, n, r in added]


def _target_device(target: str, for_device: str | None) -> tuple[Any, Any]:
    """(the device compiled for, this host) as profiles; a device-bound format for another device
    fails here, before anything is built."""
    from cmkd_edge.runtime.backends import backend_spec
    from cmkd_edge.runtime.device_profiles import host_profile, resolve

    device, here = resolve(for_device), host_profile()
    if backend_spec(target).device_bound and device.source != "host":
        raise ConfigError(f"--for {device.name}: a {target} engine runs only on the GPU and {target} "
                          "version that built it, so it cannot be compiled for another device here",
                          "copy the bundle to the device and run `cmkd-edge compile` there (or let "
                          "`cmkd-edge classify --rebuild` build it on first use)")
    return device, here


def _int8_notes(manifest: Manifest, src: Artifact, art: Artifact, device: Any, here: Any) -> tuple[str, ...]:
    """What the device rules say about an INT8 artifact compiled here for ``device``."""
    from cmkd_edge.runtime.device_profiles import artifact_target, gate_holds, mismatch

    notes = []
    holds, why = gate_holds(art.backend, here.record(), device)
    if not holds and art.gate_passed is not None:
        notes.append(f"its gate ran here ({here.name}) and does not carry over to {device.name}: {why}")
    made_for = artifact_target(manifest, src)
    if made_for is not None and mismatch(made_for, device):
        notes.append(f"its source {src.id} was quantized for {made_for.profile} ({made_for.machine}); "
                     f"re-quantize with `cmkd-edge quantize BUNDLE --for {device.name}` for that device's "
                     "INT8 format")
    return tuple(notes)
