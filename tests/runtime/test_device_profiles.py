"""Device profiles: the board's real CPU read from /proc/cpuinfo, named profiles, device JSON, rules."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from cmkd_edge.runtime.backends.device import flag_groups, parse_cpuinfo
from cmkd_edge.runtime.contract.records import TargetDevice
from cmkd_edge.runtime.device_profiles import (
    DEVICES,
    DeviceProfile,
    int8_format,
    int8_transfers,
    mismatch,
    nearest_builtin,
    resolve,
)

from cmkd_edge.cli import main
from cmkd_edge.errors import ConfigError

# What these boards print (trimmed to the lines the parser reads; four identical cores each)
PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI5 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b
"""
X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 fma f16c avx512f avx512_vnni
"""


def test_arm_boards_are_named_by_board_and_core_not_by_soc_family():
    model, flags = parse_cpuinfo(PI4, board="Raspberry Pi 4 Model B Rev 1.4")
    assert model == "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)"  # not "BCM2835"
    assert not flag_groups(flags)["asimddp"] and flag_groups(flags)["neon"]
    model, flags = parse_cpuinfo(PI5)  # no device tree: the core alone, not "aarch64"
    assert model == "Cortex-A76"
    g = flag_groups(flags)
    assert g["asimddp"] and g["asimdhp"] and not g["i8mm"] and not g["sve"]
    model, flags = parse_cpuinfo(X86)
    assert model.startswith("AMD EPYC 9R14") and flag_groups(flags)["avx512_vnni"]


def test_each_board_falls_under_the_profile_its_rules_need():
    for text, board, want in ((PI4, None, "aarch64"), (PI5, None, "aarch64-dotprod"), (X86, None, "x86-64-vnni")):
        _, flags = parse_cpuinfo(text, board)
        present = frozenset(k for k, v in flag_groups(flags).items() if v)
        machine = "x86_64" if "avx2" in present else "aarch64"
        assert nearest_builtin(machine, present) == want


def test_named_profiles_and_their_int8_rules():
    assert set(DEVICES.names()) >= {"x86-64-vnni", "x86-64-avx2", "aarch64-dotprod", "aarch64"}
    fmt = {n: int8_format(resolve(n)) for n in DEVICES.names()}
    assert fmt["x86-64-avx2"]["name"] == "U8S8" and fmt["x86-64-avx2"]["reduce_range"]
    assert fmt["x86-64-vnni"]["name"] == "U8S8" and not fmt["x86-64-vnni"]["reduce_range"]
    assert fmt["aarch64-dotprod"]["name"] == "S8S8" and "SDOT" in fmt["aarch64-dotprod"]["reason"]
    assert fmt["aarch64"]["name"] == "S8S8" and "without dot product" in fmt["aarch64"]["reason"]
    assert not int8_transfers("openvino", resolve("aarch64-dotprod"))[0]  # the rule in OpenVINO's module
    assert int8_transfers("openvino", resolve("x86-64-vnni"))[0]
    assert int8_transfers("onnxruntime", resolve("aarch64-dotprod"))[0]  # no rule: INT8 as gated


def test_unknown_device_and_bad_device_files_fail_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="unknown device 'pi4'"):
        resolve("pi4")
    with pytest.raises(ConfigError, match="no such file"):
        resolve(str(tmp_path / "board.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a device description"):
        resolve(str(bad))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something/1", "cpu": {"machine": "x86_64", "flags_present": []}}))
    with pytest.raises(ConfigError, match="schema"):
        resolve(str(other))


def test_device_json_written_here_reads_back_as_this_device(tmp_path):
    out = tmp_path / "dev.json"
    r = CliRunner().invoke(main, ["device", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "int8 format" in r.output and f"wrote {out}" in r.output
    d = json.loads(out.read_text())
    assert d["schema"] == "cmkd-edge.device/1" and d["cpu"]["logical_cores"] >= 1
    assert "onnxruntime" in d["backends"] and "numpy" in d["libraries"]
    p = resolve(str(out))
    host = resolve("host")
    assert p.machine == host.machine and p.features == host.features and p.source == str(out)
    assert int8_format(p)["name"] == int8_format(host)["name"]
    r = CliRunner().invoke(main, ["quantize", str(tmp_path), "--for", "pi4"])
    assert r.exit_code == 2 and "unknown device 'pi4'" in r.output and "Traceback" not in r.output


def test_mismatch_names_only_what_a_device_rule_reads():
    x86_avx2 = DeviceProfile("h", "x86_64", frozenset({"avx2", "fma"}))
    x86_vnni = DeviceProfile("h", "x86_64", frozenset({"avx2", "avx512_vnni"}))
    pi5 = DeviceProfile("h", "aarch64", frozenset({"neon", "asimddp"}))
    pi4 = DeviceProfile("h", "aarch64", frozenset({"neon"}))
    rec = resolve("aarch64-dotprod").record()
    assert isinstance(rec, TargetDevice) and TargetDevice.from_dict(rec.to_dict()) == rec
    assert "this device is x86_64" in mismatch(rec, x86_avx2)
    assert mismatch(rec, pi5) is None
    assert "no faster than FP32" in mismatch(rec, pi4)
    assert mismatch(resolve("x86-64-avx2").record(), x86_avx2) is None
    note = mismatch(resolve("x86-64-avx2").record(), x86_vnni)  # 7-bit weights on a VNNI CPU
    assert "7-bit" in note and "--for host" in note
    assert mismatch(None, pi4) is None  # bundles quantized before --for existed
