"""The bundle writer: staged, atomic replacement; packed bundles edited in place."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
from cmkd_edge.export.bundle import edit_bundle, replace_dir, staged_dir
from cmkd_edge.runtime.contract.bundle import open_bundle, pack_bundle

from cmkd_edge.errors import BundleError


def test_replace_dir_swaps_whole_directories(tmp_path):
    old, new = tmp_path / "b", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "a").write_text("old")
    (new / "a").write_text("new")
    replace_dir(new, old)
    assert (old / "a").read_text() == "new" and not new.exists()


def test_staged_dir_error_keeps_target(tmp_path):
    target = tmp_path / "b"
    target.mkdir()
    (target / "f").write_text("keep")
    with pytest.raises(RuntimeError), staged_dir(target, copy_from=target) as tmp:
        (tmp / "f").write_text("half")
        raise RuntimeError("killed")
    assert (target / "f").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_edit_packed_bundle_writes_a_new_archive(optical_bundle, tmp_path):
    """An archive given as input is never rewritten (issue 9): the result goes beside it, or to out."""
    archive = pack_bundle(optical_bundle, tmp_path / "b.tar.gz")
    before = archive.read_bytes()
    with edit_bundle(archive) as edit:
        prov = edit.manifest.provenance
        edit.manifest = replace(edit.manifest, provenance=replace(prov, extra={**prov.extra, "note": "edited"}))
    assert edit.written == tmp_path / "b-edited.tar.gz" and archive.read_bytes() == before
    assert open_bundle(edit.written, cache_dir=tmp_path / "cache").manifest.provenance.extra["note"] == "edited"
    with edit_bundle(archive, out=tmp_path / "as-dir") as edit:
        pass
    assert (tmp_path / "as-dir" / "manifest.json").is_file() and archive.read_bytes() == before


def test_edit_refuses_tampered_bundle(optical_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(optical_bundle, b)
    with open(b / "model.onnx", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(BundleError, match="sha256"), edit_bundle(b):
        pass
