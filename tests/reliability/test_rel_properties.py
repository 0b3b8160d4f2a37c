"""Properties (hypothesis): the manifest reader never fails with anything but BundleError and
round-trips through disk; the exported graph's preprocessing equals the numpy reference.

Scene tiling ("every pixel of any scene size and stride, exactly as documented") is already a
property test in tests/runtime/test_scene.py (test_tiling_covers_every_pixel_exactly_once,
test_grid_partitions_the_scene); docs/reliability.md points there.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from cmkd_edge.runtime.contract.manifest import Manifest, read_manifest, write_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmkd_edge.errors import BundleError

# -- manifest: any damage is a BundleError naming the problem, never another exception ---------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**12) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@pytest.fixture(scope="module")
def manifest_dict(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from bundle_factory import make_bundle

    root = make_bundle(tmp_path_factory.mktemp("prop") / "b", openvino=True, int8=False)
    d = json.loads((root / "manifest.json").read_text())
    d["artifacts"].append({"id": "trt-fp16", "path": "engine.plan", "format": "tensorrt-plan",
                           "precision": "fp16", "backend": "tensorrt", "files": ["engine.plan"],
                           "max_batch": 8, "gate_passed": True,
                           "fingerprint": {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}})
    d["files"]["engine.plan"] = "0" * 64
    d["quantization"] = {"onnxruntime": {"accepted": "fp32"}}
    return d


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_manifest_is_bundle_error_or_valid(manifest_dict: dict, data: st.DataObject) -> None:
    d = copy.deepcopy(manifest_dict)
    paths = [p for p in _paths(d) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = d
        try:
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    try:
        m = Manifest.from_dict(json.loads(json.dumps(d)))
    except BundleError as exc:
        line = exc.one_line()
        assert line and "\n" not in line
        return
    # accepted: then it must be usable the way the runtime uses it, and round-trip exactly
    again = Manifest.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    from cmkd_edge.runtime.classifier import select_artifacts

    try:
        select_artifacts(m, backends=["onnxruntime", "openvino", "tensorrt"], rebuild=True)
    except BundleError:
        pass


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.text("abcxyz_", min_size=1, max_size=6).filter(
           lambda k: k not in Manifest.__dataclass_fields__), json_values.filter(
           lambda v: v == v and "NaN" not in json.dumps(v)), max_size=3),
       classes=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=6, unique=True),
       nodata=st.one_of(st.none(), st.integers(-9999, 65535), st.floats(-1e6, 1e6, allow_nan=False)),
       payload=st.binary(min_size=1, max_size=64))
def test_manifest_write_read_round_trip_on_disk(tmp_path_factory: pytest.TempPathFactory,
                                                manifest_dict: dict, extra: dict, classes: list,
                                                nodata, payload: bytes) -> None:
    root = tmp_path_factory.mktemp("rt")
    (root / "model.onnx").write_bytes(payload)
    d = {k: v for k, v in copy.deepcopy(manifest_dict).items() if k != "files"}
    d["artifacts"] = [a for a in d["artifacts"] if a["id"] == "onnx-fp32"]
    d["class_names"] = classes
    d["input"]["nodata"] = nodata
    d.update(extra)
    written = write_manifest(root, Manifest.from_dict({**d, "files": {}}))
    assert read_manifest(root) == written
    assert read_manifest(root).to_dict() == json.loads((root / "manifest.json").read_text())
    assert written.extra == extra and list(written.class_names) == classes
    assert set(written.files) == {"model.onnx"}


# -- in-graph preprocessing == numpy reference -------------------------------------------------------
@pytest.fixture(scope="module")
def exported_graphs(tmp_path_factory: pytest.TempPathFactory):
    """One exported student per preprocessing kind, cut at the network body's first Conv."""
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    import torch
    from cmkd_edge.export.student import export_checkpoint
    from onnx.utils import Extractor

    from cmkd_edge.checkpoint import Checkpoint, save_checkpoint
    from cmkd_edge.models import build_model

    torch.set_num_threads(1)
    eurosat = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
    specs = {
        "optical-rgb": ({"source": "s2", "source_bands": eurosat, "source_units": "reflectance_x1e4",
                         "select": [3, 2, 1], "to_db": False, "clip": [0.0, 20000.0],
                         "mean": [1000.0, 1100.0, 1300.0], "std": [600.0, 500.0, 450.0]}, "rgb", False),
        "sar-linear": ({"source": "s1", "source_bands": ["VV", "VH"], "source_units": "linear",
                        "select": [1, 0], "to_db": True, "clip": [-50.0, 30.0],
                        "mean": [-19.0, -12.0], "std": [5.0, 4.0]}, "sar", True),
    }
    out = {}
    d = tmp_path_factory.mktemp("pre")
    for name, (spec, view, net_clip) in specs.items():
        torch.manual_seed(0)
        net = build_model("resnet-narrow", len(spec["select"]), 3, mean=spec["mean"], std=spec["std"],
                          clip=spec["clip"] if net_clip else None, width=4)
        modality = "sar" if spec["source"] == "s1" else "optical"
        save_checkpoint(d / f"{name}.pt", Checkpoint.of(
            net.state_dict(), model=net.config, role="student",
            task="multiclass", class_names=["a", "b", "c"], view=view,
            view_info={"modality": modality, "band_names": [spec["source_bands"][i] for i in spec["select"]],
                       "units": "db" if modality == "sar" else "reflectance_x1e4", "synthetic": False},
            preprocess=spec, method="kd", method_options={}, teacher=None, seed=0,
            command="test", epoch=1, metrics={}, data={"path": None}))
        bundle = export_checkpoint(d / f"{name}.pt", d / name, samples=4, batch=2, hw=(8, 8),
                                   data="/nonexistent")
        model = onnx.load(str(bundle / "model.onnx"))
        first = next(n for n in model.graph.node if n.op_type == "Conv")
        sub = Extractor(model).extract_model([model.graph.input[0].name], [first.input[0]])
        sess = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
        manifest = json.loads((bundle / "manifest.json").read_text())
        out[name] = (sess, manifest["preprocess"])
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["optical-rgb", "sar-linear"]), n=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1),
       specials=st.lists(st.sampled_from([0.0, 1e-12, 20000.0, 25000.0, 65535.0, 1e-3, 1e4]),
                         max_size=4))
def test_in_graph_preprocessing_equals_numpy_reference(exported_graphs, kind: str, n: int,
                                                       seed: int,
                                                       specials: list[float]) -> None:
    """Random valid raw inputs (incl. values at/over the clip and near the dB floor); the graph
    has a dynamic batch and the fixed patch size it was exported with."""
    from cmkd_edge.runtime.contract.specs import PreprocessSpec

    sess, spec = exported_graphs[kind]
    h, w = 8, 8
    rng = np.random.default_rng(seed)
    bands = 13 if kind == "optical-rgb" else 2
    if kind == "optical-rgb":
        x = rng.uniform(0, 30000, (n, bands, h, w))
    else:
        x = 10 ** (rng.uniform(-6, 2, (n, bands, h, w)))  # linear power, -60..+20 dB
    flat = x.reshape(-1)
    for v in specials:
        flat[rng.integers(0, flat.size)] = v if kind == "optical-rgb" or v > 0 else 1e-12
    x = x.astype(np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    want = PreprocessSpec.from_dict(spec).apply(x)
    assert got.shape == want.shape == (n, len(spec["select"]), h, w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
