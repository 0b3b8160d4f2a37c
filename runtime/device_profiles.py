"""Target devices: the profiles a bundle is quantized and compiled for, and every device rule.

A bundle is usually quantized on a workstation and run on a board. What is device-specific (the
INT8 QDQ format ONNX Runtime runs fast and exactly there, whether an OpenVINO INT8 gate measured
elsewhere carries over) is decided here, from a :class:`DeviceProfile`: a named profile
(``cmkd-edge list devices``), the JSON that ``cmkd-edge device --json`` writes on the board itself,
or this machine (the default). Nothing else in cmkd-edge reads CPU flags to decide a format.

Stdlib only (the runtime reads profiles on the device to warn about a mismatch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmkd_edge._registry import Registry
from cmkd_edge.errors import ConfigError

from .contract.records import TargetDevice

#: the x86 8-bit dot-product instructions (any one makes ``vpdpbusd`` available)
_VNNI = ("avx512_vnni", "avx_vnni", "amx")
DEVICE_SCHEMA = "cmkd-edge.device/1"


@dataclass(frozen=True)
class DeviceProfile:
    """A device class: architecture and the ISA features the device rules read."""

    name: str
    machine: str
    features: frozenset[str]
    boards: str = ""
    source: str = "builtin"  # builtin | host | the path of a device JSON
    cpu_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def vnni(self) -> bool:
        return self.machine == "x86_64" and any(f in self.features for f in _VNNI)

    @property
    def dot_product(self) -> bool:
        """An 8-bit dot-product instruction: VNNI on x86, SDOT/UDOT (asimddp) on ARM."""
        return self.vnni or (self.machine == "aarch64" and "asimddp" in self.features)

    def record(self) -> TargetDevice:
        """What the manifest keeps of the profile a bundle was quantized or compiled for."""
        return TargetDevice(profile=self.name, machine=self.machine, features=tuple(sorted(self.features)),
                            source=self.source, cpu_model=self.cpu_model)


PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile("x86-64-vnni", "x86_64", frozenset({"avx2", "fma", "f16c", "avx512", "avx512_vnni"}),
                  "Intel Xeon Ice Lake and newer, Core 12th gen and newer (AVX-VNNI), AMD Zen 4 and newer"),
    DeviceProfile("x86-64-avx2", "x86_64", frozenset({"avx2", "fma", "f16c"}),
                  "x86-64 with AVX2 and no VNNI: Intel Haswell to Skylake client, AMD Zen 1 to 3"),
    DeviceProfile("aarch64-dotprod", "aarch64", frozenset({"neon", "asimddp", "asimdhp"}),
                  "Cortex-A76/A78 and newer: Raspberry Pi 5, Jetson Orin (Cortex-A78AE), RK3588"),
    DeviceProfile("aarch64", "aarch64", frozenset({"neon"}),
                  "no dot product: Cortex-A72/A53/A55-class boards such as Raspberry Pi 4 and 3, i.MX 8M"),
)}


#: ``cmkd-edge list devices``: the named profiles (help: the boards each stands for)
DEVICES: Registry[DeviceProfile] = Registry("device")
for _p in PROFILES.values():
    DEVICES.add(_p.name, _p, f"{_p.machine}, {'/'.join(sorted(_p.features))}: {_p.boards}")


def nearest_builtin(machine: str, features: frozenset[str]) -> str | None:
    """The built-in profile whose rules a device with these features follows (None: no rule set)."""
    probe = DeviceProfile("?", machine, features)
    if machine == "x86_64":
        return "x86-64-vnni" if probe.vnni else "x86-64-avx2"
    if machine == "aarch64":
        return "aarch64-dotprod" if probe.dot_product else "aarch64"
    return None


def host_profile() -> DeviceProfile:
    """This machine as a profile (the default target)."""
    from .backends.device import cpu_info

    cpu = cpu_info()
    machine = str(cpu["machine"])
    feats = frozenset(str(f) for f in cpu["flags_present"])  # type: ignore[attr-defined]
    return DeviceProfile(f"host ({nearest_builtin(machine, feats) or machine})", machine, feats,
                         source="host", cpu_model=str(cpu["model"]))


def describe_host() -> dict[str, Any]:
    """What ``cmkd-edge device --json`` writes on a board: read back by ``--for FILE``."""
    from . import backends
    from .backends.device import cpu_info, gpu_name, memory_mb, package_versions

    here = host_profile()
    # the backends' libraries come from their declarations (a registered backend is listed too)
    libs = ("cmkd-edge", "numpy", *backends.libraries(), "rasterio")
    return {"schema": DEVICE_SCHEMA, "cpu": cpu_info(), "memory_mb": memory_mb(), "gpu": gpu_name(),
            "profile": nearest_builtin(here.machine, here.features),
            "libraries": package_versions(tuple(dict.fromkeys(libs))),
            "backends": [s.name for s in backends.specs() if s.available()]}


def profile_from_device_json(path: Path) -> DeviceProfile:
    """The profile of a device described by ``cmkd-edge device --json`` (run on that device)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        cpu = d["cpu"]
        machine = str(cpu["machine"])
        feats = frozenset(str(f) for f in cpu["flags_present"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--for {path}: not a device description ({type(exc).__name__}: {exc})",
                        "write one on the board with `cmkd-edge device --json FILE`") from None
    if d.get("schema") != DEVICE_SCHEMA:
        raise ConfigError(f"--for {path}: schema {d.get('schema')!r}, expected {DEVICE_SCHEMA!r}",
                        "write it with `cmkd-edge device --json FILE`")
    return DeviceProfile(f"{path.stem} ({nearest_builtin(machine, feats) or machine})", machine, feats,
                         source=str(path), cpu_model=str(cpu.get("model") or "") or None)


def resolve(spec: str | None) -> DeviceProfile:
    """``--for``: None or ``host`` = this machine, a profile name, or a device JSON file."""
    if spec is None or spec == "host":
        return host_profile()
    if spec in PROFILES:
        return PROFILES[spec]
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise ConfigError(f"--for {spec}: no such file",
                              "write it on the board with `cmkd-edge device --json FILE`")
        return profile_from_device_json(path)
    raise ConfigError(f"unknown device {spec!r}",
                    f"choose one of {', '.join(PROFILES)}, host, or a JSON file written by "
                    "`cmkd-edge device --json` on the board (`cmkd-edge list devices`)")


# -- the device rules ------------------------------------------------------------------------------
def int8_format(p: DeviceProfile) -> dict[str, Any]:
    """ONNX Runtime's QDQ activation/weight types for a device, and why.

    x86 without VNNI: S8S8 gains nothing (measured 0.94x), U8S8 does (1.71x) but needs 7-bit weights
    (``reduce_range``) because the AVX2 ``vpmaddubsw`` path saturates its 16-bit sums. x86 with VNNI:
    ``vpdpbusd`` takes u8 x s8 natively (full 8-bit weights; measured 10-13 % faster than S8S8 on an
    AVX512-VNNI EPYC). aarch64: ONNX Runtime runs S8S8 on its SDOT kernel with the dot-product
    extension and on its NEON X8S8 kernel without it (where U8S8 adds an activation flip; onnxruntime
    PRs 9902 and 8695), and no saturation, so full 8-bit weights.
    """
    if p.machine == "x86_64" and not p.vnni:
        f = {"activation": "QUInt8", "weight": "QInt8", "name": "U8S8", "reduce_range": True,
             "reason": "x86 without VNNI: S8S8 gives no speed-up; U8S8 with 7-bit weights avoids "
                       "vpmaddubsw saturation"}
    elif p.machine == "x86_64":
        f = {"activation": "QUInt8", "weight": "QInt8", "name": "U8S8", "reduce_range": False,
             "reason": "x86 with VNNI/AMX: vpdpbusd takes u8 x s8 natively, full 8-bit weights; "
                       "faster than S8S8 here"}
    elif p.machine == "aarch64" and p.dot_product:
        f = {"activation": "QInt8", "weight": "QInt8", "name": "S8S8", "reduce_range": False,
             "reason": "aarch64 with the dot-product extension: S8S8 runs on ONNX Runtime's SDOT kernel"}
    elif p.machine == "aarch64":
        f = {"activation": "QInt8", "weight": "QInt8", "name": "S8S8", "reduce_range": False,
             "reason": "aarch64 without dot product (e.g. Cortex-A72): S8S8 on ONNX Runtime's NEON "
                       "kernel; INT8 gains little over FP32 here, so profile both on the board"}
    else:
        f = {"activation": "QInt8", "weight": "QInt8", "name": "S8S8", "reduce_range": False,
             "reason": f"{p.machine}: no device rule; ONNX's symmetric default"}
    return {**f, "profile": p.name, "machine": p.machine, "cpu_flags": sorted(p.features)}


def gate_arithmetic(target: DeviceProfile, here: DeviceProfile | None = None) -> tuple[str, str]:
    """How the accuracy gate must run a target's INT8 QDQ model on this host: ``native`` (this
    host's fused integer kernels compute what the target's do) or ``reference`` (ONNX Runtime's
    graph optimisations off: dequantize, float op, quantize, which the target's exact integer kernels
    match up to float rounding).

    Why: x86 without VNNI saturates 16-bit sums of 8-bit products (``vpmaddubsw``) unless weights
    are 7-bit, so an S8S8 model for an ARM board, run here fused, scores what the board never
    computes (measured on the test suite's tiny student: 96.0 % agreement with FP32 fused on this
    AVX2 host, 99.75 % in reference arithmetic, n = 400).
    """
    here = here or host_profile()
    want, have = int8_format(target), int8_format(here)
    if (want["name"], want["reduce_range"]) == (have["name"], have["reduce_range"]):
        return "native", f"this host takes the same INT8 format ({want['name']}) as {target.name}"
    return "reference", (f"{target.name} takes {want['name']}{' with 7-bit weights' if want['reduce_range'] else ''}, "
                         f"this host {have['name']}{' with 7-bit weights' if have['reduce_range'] else ''}: its fused "
                         "integer kernels would not compute what the target's do, so the gate ran the QDQ "
                         "model in reference arithmetic (ONNX Runtime graph optimisations off)")


def _int8_rule(backend: str) -> Any:
    """The backend's own INT8 device rule (``BackendSpec.int8_transfers``), or None (an unregistered
    backend has none): what a backend's kernels do on a device is written once, in its module."""
    from .backends import BACKENDS

    return BACKENDS.get(backend).int8_transfers if backend in BACKENDS else None


def int8_transfers(backend: str, p: DeviceProfile) -> tuple[bool, str]:
    """Whether an INT8 artifact of ``backend`` gated on this host holds on device ``p``, and why (the
    backend's rule, e.g. OpenVINO's ARM plugin; a backend without one runs INT8 as gated everywhere,
    because its format was chosen for the device at quantize time and the gate ran its arithmetic)."""
    rule = _int8_rule(backend)
    if rule is None:
        return True, f"{backend}: no device rule for its INT8 kernels"
    return rule(p.machine, p.features)


def gated_here(gated_for: TargetDevice | None, here: DeviceProfile) -> bool:
    """Whether the gate recorded with ``gated_for`` ran on a device of this class: only a target
    that *was* the quantizing host (``--for host``, the default) says where the gate ran."""
    if gated_for is None or gated_for.source != "host":
        return False
    return (nearest_builtin(gated_for.machine, frozenset(gated_for.features))
            == nearest_builtin(here.machine, here.features))


def gate_holds(backend: str, gated_for: TargetDevice | None, target: DeviceProfile) -> tuple[bool, str]:
    """Whether an INT8 artifact's gate, run where ``gated_for`` says, holds on ``target``; and why not."""
    rule = _int8_rule(backend)
    if rule is None or gated_here(gated_for, target):
        return True, ""
    return rule(target.machine, target.features)


def mismatch(recorded: TargetDevice | None, here: DeviceProfile | None = None) -> str | None:
    """Why a bundle quantized for ``recorded`` may not behave as gated on this device (None: fine).

    Only what a device rule reads counts: another architecture, or a device whose INT8 format
    decision differs from the one the bundle was built with.
    """
    if recorded is None:
        return None
    here = here or host_profile()
    built = DeviceProfile(recorded.profile, recorded.machine, frozenset(recorded.features))
    if built.machine != here.machine:
        return (f"quantized for {recorded.profile} ({recorded.machine}); this device is {here.machine}: "
                "check its accuracy here with `cmkd-edge evaluate`")
    want, have = int8_format(built), int8_format(here)

    def fmt(f: dict[str, Any]) -> str:
        return f["name"] + (" with 7-bit weights" if f["reduce_range"] else "")

    if fmt(want) != fmt(have):
        return (f"quantized for {recorded.profile} ({fmt(want)}); this device would take {fmt(have)}: "
                "re-quantize with `--for host` on this device for its fast path")
    if built.dot_product and not here.dot_product:
        return (f"quantized for {recorded.profile} (an 8-bit dot-product CPU); this one has none, "
                "so INT8 may be no faster than FP32 here")
    return None


# -- on the device ---------------------------------------------------------------------------------
_warned: set[tuple[str, str]] = set()


def artifact_target(manifest: Any, art: Any) -> TargetDevice | None:
    """The device an artifact was made for: its own ``target`` (``compile --for``), else its quantize
    record's, following ``source`` from a compiled artifact (an IR built from the QDQ model) to the
    quantized one."""
    seen: set[str] = set()
    while art is not None and art.id not in seen:
        seen.add(art.id)
        if art.target is not None and art.precision == "int8":  # compile (--for)
            return art.target
        rec = manifest.quant(art.backend, art.precision) if art.precision == "int8" else None
        if rec is not None and rec.target is not None:
            return rec.target
        art = manifest.find(art.source) if art.source else None
    return None


def warn_if_other_target(manifest: Any, art: Any, bundle_key: str) -> str | None:
    """Log once per bundle and artifact when this device is not the one the artifact was quantized for;
    returns the note (also for the caller's selection record)."""
    import logging

    note = mismatch(artifact_target(manifest, art))
    if note and (bundle_key, art.id) not in _warned:
        _warned.add((bundle_key, art.id))
        logging.getLogger("cmkd_edge.runtime").warning("%s: %s", art.id, note)
    return note
