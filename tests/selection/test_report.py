"""`cmkd-edge report`: one self-contained page, opened in a real browser, matching evaluate and profile."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from .conftest import cli_ok
from .test_select import run, tree_hashes

SECTIONS = ("warnings", "model-card", "accuracy", "per-class", "confusion", "calibration", "quantization",
            "latency", "device", "select", "files")


def chromium() -> str:
    """A headless Chromium, installed with apt-get where it is missing and we may (root, Debian)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, timeout=900)
        if shutil.which("chromium"):
            return shutil.which("chromium")  # type: ignore[return-value]
    pytest.skip("no Chromium here and none can be installed (not root or no apt-get); "
                ".ci/run installs Debian's chromium package")


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                 "--disable-background-networking", "--disable-extensions"]


class Tables(HTMLParser):
    """Section id -> list of tables (rows of cell texts); also every src/href and the svg count."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.refs: list[str] = []
        self.svgs = 0
        self.section = ""
        self.cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag == "section":
            self.section = a.get("id") or ""
        elif tag == "table":
            self.tables.setdefault(self.section, []).append([])
        elif tag == "tr":
            self.tables[self.section][-1].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "svg":
            self.svgs += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.tables[self.section][-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.cell is not None:
            self.cell.append(data)


def rows_by(table: list[list[str]], *keys: str) -> dict[tuple[str, ...], dict[str, str]]:
    head = table[0]
    return {tuple(r[head.index(k)] for k in keys): dict(zip(head, r, strict=True)) for r in table[1:]}


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    """A local server that records every path the browser asks for."""
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            asked.append(self.path)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, asked


def test_report_opens_in_chromium_with_every_section_and_the_measured_figures(pipeline_bundle: Path,
                                                                              tmp_path: Path) -> None:
    from PIL import Image

    bundle = Path(shutil.copytree(pipeline_bundle, tmp_path / "bundles" / "student"))
    before = tree_hashes(bundle)
    evaluation = json.loads(cli_ok("evaluate", bundle, "--split", "test", "--json"))
    cli_ok("profile", bundle, "--compare", "--iterations", "30", "--json", tmp_path / "latency.json")
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    latency = json.loads((tmp_path / "latency.json").read_text())
    res = run("select", bundle, "--split", "val", "--max-drop", "100", "--iterations", "30", "--threads", "1")
    assert res.exit_code == 0, res.output + res.stderr
    out = tmp_path / "site" / "report.html"
    cli_ok("report", bundle, "--evaluation", tmp_path / "eval.json", "--latency", tmp_path / "latency.json",
           "--out", out)
    assert tree_hashes(bundle) == before  # nothing in the bundle changed

    page = out.read_text()
    static = Tables()
    static.feed(page)
    assert all(r.startswith(("#", "data:")) for r in static.refs), static.refs
    stripped = re.sub(r'xmlns(:\w+)?="http://www\.w3\.org/[^"]*"', "", page)
    assert not re.search(r"(https?:)?//[\w.-]+\.\w+/", stripped), "an absolute URL in the page"

    browser = chromium()
    srv, asked = serve(out.parent)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/report.html"
        dom = subprocess.run([browser, *BROWSER_FLAGS, "--dump-dom", url], capture_output=True, text=True,
                             timeout=180).stdout
        shot = tmp_path / "report.png"
        subprocess.run([browser, *BROWSER_FLAGS, "--window-size=1300,6000", f"--screenshot={shot}", url],
                       capture_output=True, timeout=180, check=True)
    finally:
        srv.shutdown()
    assert set(asked) <= {"/report.html", "/favicon.ico"}, f"the page asked for more: {asked}"
    parsed = Tables()
    parsed.feed(dom)
    text = " ".join(parsed.text)
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in dom, sid
    assert parsed.svgs >= 5, "plots missing from the rendered page"
    assert "Water" in text and "resnet-narrow" in text and "int8-minmax (accepted)" in text
    assert "quantized for " in text  # the device class quantize chose the INT8 format for

    # accuracy: evaluate --json's figures, to the printed precision, with n and interval
    acc = rows_by(parsed.tables["accuracy"][0], "artifact", "backend")
    assert len(acc) == len(evaluation["rows"])
    for r in evaluation["rows"]:
        cell = acc[(r["artifact"], r["backend"])]
        assert cell["accuracy %"] == f"{100 * r['accuracy']:.2f}" and cell["n"] == str(r["n"])
        assert cell["95% interval"] == f"[{100 * r['interval'][0]:.2f}, {100 * r['interval'][1]:.2f}]"
        assert cell["drop [95%]"].startswith(f"{r['drop']:+.2f} [")
    # latency: profile --json's figures
    lat = rows_by(parsed.tables["latency"][0], "artifact", "backend")
    assert len(lat) == len(latency["reports"])
    for r in latency["reports"]:
        cell = lat[(r["artifact"], r["backend"])]
        e = r["end_to_end"]
        assert (cell["e2e p50"], cell["e2e p90"], cell["e2e p99"]) == (
            f"{e['p50_ms']:.3f}", f"{e['p90_ms']:.3f}", f"{e['p99_ms']:.3f}")
        assert cell["cold ms"] == f"{r['cold_start']['total_ms']:.0f}"
    # select's decision is shown
    sel = json.loads((bundle.parent / "selection.json").read_text())
    assert sel["chosen"] and "chosen: " + sel["why"] in text
    # every file with its sha256
    files = rows_by(parsed.tables["files"][0], "file")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert all(files[(rel,)]["sha256"] == digest for rel, digest in manifest["files"].items())

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[1] == 1300 and len(np.unique(img.reshape(-1, 3), axis=0)) > 200, "a blank page"
    blue = np.all(np.abs(img.astype(int) - [31, 119, 180]) < 40, axis=-1).sum()  # the fp32 colour of the plots
    assert blue > 500, "no plot drawn"


def test_markdown_has_the_same_sections_and_figure_files(pipeline_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(pipeline_bundle, tmp_path / "student"))
    out = tmp_path / "docs" / "student.md"
    doc = json.loads(cli_ok("report", bundle, "--format", "md", "--out", out, "--iterations", "20", "--json"))
    assert doc["written"] == str(out) and len(doc["sections"]) == len(SECTIONS)
    text = out.read_text()
    for title in doc["sections"]:
        assert f"## {title}" in text
    figs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(figs) >= 4 and all((out.parent / f).read_text().startswith("<svg") for f in figs)
    assert "| onnx-int8 | onnxruntime | int8 | pass |" in text


def test_report_without_readable_data_says_so_and_bad_files_are_one_line(pipeline_bundle: Path,
                                                                         tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(pipeline_bundle, tmp_path / "student"))
    (tmp_path / "junk.json").write_text('{"rows": 3}')
    for args, fragment in [(["--evaluation", tmp_path / "junk.json"], "is not the output of `cmkd-edge evaluate"),
                           (["--latency", tmp_path / "junk.json"], "is not a latency report"),
                           (["--data", tmp_path / "missing.npz"], "not a readable .npz"),
                           (["--out", bundle / "r.html"], "inside the bundle")]:
        res = run("report", bundle, *args, "--iterations", "5")
        lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("report: ")]
        assert res.exit_code == 2 and len(lines) == 1 and fragment in lines[0], (args, res.output)
    # an external .npz of another size: the bundle runs it; a split without labels is refused
    x = np.zeros((4, 13, 16, 16), np.float32)
    np.savez(tmp_path / "unlabelled.npz", x=x, labels=np.full(4, -1))
    res = run("report", bundle, "--data", tmp_path / "unlabelled.npz", "--iterations", "5")
    assert res.exit_code == 2 and "without a label" in res.stderr


def test_report_on_the_base_install_says_where_plots_would_be(two_bundles, tmp_path: Path) -> None:
    """No torch, matplotlib or openvino: the page still has every section, with a stated note per plot."""
    import sys
    import textwrap

    small, _, npz = two_bundles
    bundle = Path(shutil.copytree(small, tmp_path / "small"))
    out = tmp_path / "small.html"
    blocked = ("torch", "onnx", "matplotlib", "openvino", "nncf", "tensorrt", "cuda")
    code = textwrap.dedent(f"""
        import json, sys
        for name in {blocked!r}:
            sys.modules[name] = None  # = not installed
        from click.testing import CliRunner
        from cmkd_edge.cli import main
        res = CliRunner().invoke(main, ["report", {str(bundle)!r}, "--data", {str(npz)!r}, "--iterations", "5",
                                        "--out", {str(out)!r}])
        print(json.dumps({{"code": res.exit_code, "out": res.output,
                          "loaded": [m for m in {blocked!r} if sys.modules.get(m) is not None]}}))
    """)
    env = {"CMKD_EDGE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["code"] == 0 and res["loaded"] == [], res
    page = out.read_text()
    assert all(f'<section id="{sid}">' in page for sid in SECTIONS) and "<svg" not in page
    assert page.count("[plot not drawn: matplotlib is not installed") >= 4
    # what this device cannot run is a warning, for accuracy and for latency alike
    assert "not run here: openvino-fp32 on openvino: openvino is not installed" in page
    assert "latency not measured for openvino-fp32 on openvino: openvino is not installed" in page


def test_an_int8_artifact_quantized_for_another_device_is_a_warning(pipeline_bundle: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from cmkd_edge.runtime.contract.manifest import read_manifest, write_manifest
    from cmkd_edge.runtime.contract.records import TargetDevice

    bundle = Path(shutil.copytree(pipeline_bundle, tmp_path / "student"))
    m = read_manifest(bundle)
    key, q = next(iter(m.quantization.items()))
    from cmkd_edge.runtime.device_profiles import host_profile

    here = host_profile().machine
    name, machine, feature = (("x86-64-avx2", "x86_64", "avx2") if here == "aarch64"
                              else ("aarch64-dotprod", "aarch64", "asimddp"))
    other = TargetDevice(profile=name, machine=machine, features=(feature,))
    write_manifest(bundle, replace(m, quantization={**m.quantization, key: replace(q, target=other)}))
    out = tmp_path / "r.html"
    cli_ok("report", bundle, "--iterations", "5", "--out", out)
    page = out.read_text()
    assert f"quantized for {name} ({machine}: {feature}, builtin)" in page
    warnings = page.split('<section id="warnings">')[1].split("</section>")[0]
    assert f"onnx-int8: quantized for {name} ({machine}); this device is {here}" in warnings


def test_without_readable_data_the_report_says_so_and_shows_the_recorded_accuracies(two_bundles,
                                                                                   tmp_path: Path) -> None:
    """The factory bundle records no training data: the synthetic default has other classes, so
    the accuracy sections say why they were not measured; the rest of the page is there."""
    small, _, _ = two_bundles
    bundle = Path(shutil.copytree(small, tmp_path / "small"))
    res = run("report", bundle, "--iterations", "5", "--json")
    assert res.exit_code == 0, res.output + res.stderr
    doc = json.loads(res.stdout)
    page = Path(doc["written"]).read_text()
    assert Path(doc["written"]) == tmp_path / "small.report.html"
    assert "Not measured: the bundle&#x27;s recorded data could not be read here" in page
    assert "give --data" in page and "recorded score" in page
    assert any(w.startswith("accuracy not measured on this device:") for w in doc["warnings"])
    assert all(f'<section id="{sid}">' in page for sid in SECTIONS)
