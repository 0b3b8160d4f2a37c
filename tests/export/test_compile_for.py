"""compile --for (issue 21): the device an artifact is compiled for is recorded, a device-bound
engine is refused for another device, and an OpenVINO INT8 gate run on this x86 host is said not
to hold on an ARM board, where precision auto then ranks that artifact as ungated."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cmkd_edge.export.compile import compile_bundle
from cmkd_edge.export.quantize import quantize_bundle
from cmkd_edge.export.student import export_checkpoint
from cmkd_edge.runtime.classifier import select_artifacts
from cmkd_edge.runtime.contract.bundle import open_bundle
from cmkd_edge.runtime.device_gates import record, screen
from cmkd_edge.runtime.device_profiles import PROFILES, artifact_target, gate_holds, host_profile
from test_provenance_gating import _run_dir

from cmkd_edge.cli import main


@pytest.fixture(scope="module")
def gated_bundle(tmp_path_factory) -> Path:
    """A bundle whose ONNX Runtime INT8 was gated on re-readable data (so a compiled IR is re-gated)."""
    tmp = tmp_path_factory.mktemp("cf")
    run = _run_dir(tmp)
    b = export_checkpoint(run / "best.pt", tmp / "b", samples=4, batch=2)
    quantize_bundle(b, calib_size=8, max_drop=100.0, qat_epochs=0)
    return b


def test_gate_holds_reads_where_the_gate_ran():
    here = host_profile()
    assert here.machine == "x86_64"  # the rules below are measured from this host
    arm = PROFILES["aarch64-dotprod"]
    # holds on the other x86 class: gated here (AVX2 host: no reason) or by the x86 rule (VNNI host)
    assert gate_holds("openvino", here.record(), PROFILES["x86-64-avx2"])[0]
    holds, why = gate_holds("openvino", here.record(), arm)
    assert not holds and "FP16" in why
    assert gate_holds("onnxruntime", here.record(), arm) == (True, "")  # its format was chosen for the target
    # a gate run on an ARM board itself (quantize --for host there) holds on that class
    on_board = PROFILES["aarch64-dotprod"].record()
    assert not gate_holds("openvino", on_board, arm)[0]  # a named profile is not where a gate ran
    from dataclasses import replace

    assert gate_holds("openvino", replace(on_board, source="host"), arm) == (True, "")


def test_compile_for_an_arm_board_records_it_and_says_the_gate_does_not_carry(gated_bundle, tmp_path):
    pytest.importorskip("openvino")
    import shutil

    b = Path(shutil.copytree(gated_bundle, tmp_path / "b"))
    res = CliRunner().invoke(main, ["compile", str(b), "--target", "openvino", "--precision", "int8",
                                    "--precision", "fp32", "--for", "aarch64-dotprod"])
    assert res.exit_code == 0, res.output
    assert "added openvino-ir-int8 for aarch64-dotprod" in res.stdout
    assert "note: openvino-ir-int8: its gate ran here" in res.stdout and "does not carry over" in res.stdout
    assert "re-quantize with `cmkd-edge quantize BUNDLE --for aarch64-dotprod`" in res.stdout
    m = open_bundle(b).manifest
    ir8, ir32 = m.artifact("openvino-ir-int8"), m.artifact("openvino-ir-fp32")
    assert ir8.target.profile == ir32.target.profile == "aarch64-dotprod"  # survives the manifest round trip
    assert ir8.gate_passed is True  # what was measured here stays the record of here
    assert artifact_target(m, ir8).profile == "aarch64-dotprod"
    # on the board (its profile standing in for the device): the x86 gate does not count there, so
    # precision auto ranks the INT8 IR behind FP32 and says why
    bundle = open_bundle(b)
    pairs = select_artifacts(m, "openvino", backends=["openvino"])
    assert pairs[0][1].id == "openvino-ir-int8"  # the manifest alone ranks it first
    kept, note = screen(bundle, pairs, here=PROFILES["aarch64-dotprod"])
    order = [(a.id, a.precision, a.gate_passed) for _, a in kept]
    # both INT8 paths through OpenVINO (the IR, and the QDQ ONNX it reads) were gated on x86: last
    assert [p for _, p, _ in order] == ["fp32"] * (len(order) - 2) + ["int8", "int8"], order
    assert order[-2][0] == "openvino-ir-int8" and order[-2][2] is None and order[-1][2] is None
    assert note["device_class"] == "aarch64-dotprod"
    assert note["gate_does_not_hold_here"][0].startswith("openvino:openvino-ir-int8 (")
    assert "FP16" in note["gate_does_not_hold_here"][0]
    # here, on x86, it is still the gated first choice
    kept, note = screen(bundle, pairs)
    assert kept[0][1].id == "openvino-ir-int8" and "gate_does_not_hold_here" not in note
    # a regate that passed on the board lifts it back
    record(bundle, {"openvino:openvino-ir-int8": {"passed": True, "reason": "within the gate"}},
           cls="aarch64-dotprod")
    kept, note = screen(bundle, pairs, here=PROFILES["aarch64-dotprod"])
    assert kept[0][1].id == "openvino-ir-int8" and kept[0][1].gate_passed is True


def test_compile_for_host_and_no_for_keep_today_s_output(gated_bundle, tmp_path):
    pytest.importorskip("openvino")
    import shutil

    b = Path(shutil.copytree(gated_bundle, tmp_path / "b"))
    (c,) = compile_bundle(b, target="openvino", precisions=("int8",))
    assert c.notes == () and c.artifact.target.source == "host"  # INT8 always says where it was made
    (c,) = compile_bundle(b, target="openvino", precisions=("fp32",))
    assert c.artifact.target is None  # FP32 compiled for this machine: nothing device-specific


def test_a_device_bound_engine_for_another_device_is_one_line(gated_bundle):
    res = CliRunner().invoke(main, ["compile", str(gated_bundle), "--target", "tensorrt", "--for",
                                    "aarch64-dotprod"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--for aarch64-dotprod: a tensorrt engine runs only on the GPU" in res.output
    res = CliRunner().invoke(main, ["compile", str(gated_bundle), "--target", "openvino", "--for", "pi9"])
    assert res.exit_code == 2 and "unknown device 'pi9'" in res.output
