"""Build small but real bundles for tests and benchmarks (until `cmkd-edge export` exists).

The ONNX graph mirrors what export writes: raw sensor values in, in-graph preprocessing (Gather band
selection, Clip, Sub/Div normalisation), then a small conv classifier (Conv/Relu x depth,
GlobalAveragePool, Flatten, Gemm). The OpenVINO IR comes from ``openvino.convert_model`` +
``save_model``; the INT8 artifact from onnxruntime's static QDQ quantizer (U8S8). Uses onnx - fine in
tests, only the runtime must not import it. The manifest is written through the runtime's own
``write_manifest`` so the writer API is exercised too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cmkd_edge.runtime.contract.records import Accuracy, Provenance, QuantRecord

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
SELECT = [3, 2, 1, 7]


def build_onnx(path: Path, *, bands: int = 13, size: int = 16, classes: int = 4, width: int = 8,
               depth: int = 1, seed: int = 0, batch: int | None = None) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    sel = [i for i in SELECT if i < bands] or [0]
    c = len(sel)
    mean = rng.uniform(500, 2000, c).astype(np.float32).reshape(1, c, 1, 1)
    std = rng.uniform(300, 1500, c).astype(np.float32).reshape(1, c, 1, 1)
    inits = [numpy_helper.from_array(np.array(sel, np.int64), "select"),
             numpy_helper.from_array(np.array(0.0, np.float32), "clip_lo"),
             numpy_helper.from_array(np.array(10000.0, np.float32), "clip_hi"),
             numpy_helper.from_array(mean, "mean"), numpy_helper.from_array(std, "std")]
    nodes = [helper.make_node("Gather", ["input", "select"], ["sel"], axis=1),
             helper.make_node("Clip", ["sel", "clip_lo", "clip_hi"], ["clipped"]),
             helper.make_node("Sub", ["clipped", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "std"], ["x0"])]
    cin, prev = c, "x0"
    for d in range(depth):
        w = rng.normal(0, np.sqrt(2.0 / (cin * 9)), (width, cin, 3, 3)).astype(np.float32)
        b = rng.normal(0, 0.1, width).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{d}"), numpy_helper.from_array(b, f"b{d}")]
        stride = 1 if d == 0 else 2
        nodes += [helper.make_node("Conv", [prev, f"w{d}", f"b{d}"], [f"c{d}"], pads=[1, 1, 1, 1],
                                   strides=[stride, stride], kernel_shape=[3, 3]),
                  helper.make_node("Relu", [f"c{d}"], [f"r{d}"])]
        cin, prev = width, f"r{d}"
    fc = rng.normal(0, 1.0 / np.sqrt(width), (classes, width)).astype(np.float32)
    inits += [numpy_helper.from_array(fc, "fc_w"),
              numpy_helper.from_array(rng.normal(0, 0.1, classes).astype(np.float32), "fc_b")]
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1)]
    n = batch if batch is not None else "N"
    graph = helper.make_graph(
        nodes, "cmkd_test_student",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, bands, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="cmkd-edge-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def quantize_int8(src: Path, dst: Path, *, bands: int, size: int, seed: int = 0) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(seed)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": rng.uniform(0, 10000, (1, bands, size, size)).astype(np.float32)}
                            for _ in range(8)])

        def get_next(self):  # noqa: ANN201
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dst


def make_bundle(root: Path, *, bands: int = 13, size: int = 16, classes: int = 4, width: int = 8,
                depth: int = 1, openvino: bool = True, int8: bool = False, task: str = "multiclass",
                nodata: float | None = None, batch: int | None = None, seed: int = 0,
                class_names: tuple[str, ...] | None = None) -> Path:
    """Write a complete bundle directory at ``root`` and return it (``class_names``: default class_k)."""
    from cmkd_edge.runtime.contract.manifest import Artifact, Manifest, write_manifest
    from cmkd_edge.runtime.contract.specs import InputSpec, OutputSpec, PreprocessSpec

    root.mkdir(parents=True, exist_ok=True)
    build_onnx(root / "model.onnx", bands=bands, size=size, classes=classes, width=width,
               depth=depth, seed=seed, batch=batch)
    arts = [Artifact(id="onnx-fp32", path="model.onnx", format="onnx", precision="fp32",
                     backend="onnxruntime", files=("model.onnx",), opset=17, ir_version=8,
                     accuracy=Accuracy(top1=0.91, split="test"))]
    if openvino:
        import openvino as ov

        (root / "openvino").mkdir(exist_ok=True)
        ov.save_model(ov.convert_model(str(root / "model.onnx")), str(root / "openvino" / "model.xml"),
                      compress_to_fp16=False)
        arts.append(Artifact(id="openvino-fp32", path="openvino/model.xml", format="openvino-ir",
                             precision="fp32", backend="openvino",
                             files=("openvino/model.xml", "openvino/model.bin"),
                             accuracy=Accuracy(top1=0.91, split="test")))
    if int8:
        quantize_int8(root / "model.onnx", root / "model_int8.onnx", bands=bands, size=size, seed=seed)
        arts.append(Artifact(id="onnx-int8", path="model_int8.onnx", format="onnx", precision="int8",
                             backend="onnxruntime", files=("model_int8.onnx",), opset=17,
                             gate_passed=True, accuracy=Accuracy(top1=0.90, split="test")))
    band_names = (S2_BANDS + tuple(f"X{i}" for i in range(bands)))[:bands]
    sel = [i for i in SELECT if i < bands] or [0]
    m = Manifest(
        task=task, class_names=class_names or tuple(f"class_{k}" for k in range(classes)),
        input=InputSpec(modality="optical", band_names=band_names, units="reflectance_x1e4",
                        shape=(batch, bands, size, size), nodata=nodata, expected_range=(0.0, 10000.0)),
        output=OutputSpec(activation="softmax" if task == "multiclass" else "sigmoid"),
        preprocess=PreprocessSpec(source="s2", source_bands=band_names, source_units="reflectance_x1e4",
                                  select=tuple(sel), clip=(0.0, 10000.0)),
        artifacts=tuple(arts),
        quantization={"onnxruntime:int8": QuantRecord(method="ort-static-qdq", accepted="int8")} if int8 else None,
        provenance=Provenance(method="kd", tools={"builder": "tests/runtime/bundle_factory.py"},
                              extra={"synthetic": True}))
    write_manifest(root, m)
    return root


def write_scene(path: Path, height: int, width: int, *, bands: int = 13, nodata: float | None = None,
                seed: int = 0, dtype: str = "uint16", block: int | None = None) -> Path:
    """A synthetic GeoTIFF scene (UTM 33N, 10 m pixels) with smooth structure + noise, written in strips."""
    import rasterio

    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "height": height, "width": width, "count": bands, "dtype": dtype,
               "crs": "EPSG:32633", "transform": rasterio.Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0),
               "nodata": nodata}
    if block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    band_phase = rng.uniform(0, 2 * np.pi, bands)[:, None, None]
    step = 512
    with rasterio.open(path, "w", **profile) as dst:
        cols = np.arange(width, dtype=np.float32)[None, None, :]
        for r0 in range(0, height, step):
            rows = np.arange(r0, min(height, r0 + step), dtype=np.float32)[None, :, None]
            base = 3000 + 2000 * np.sin(rows / 97.0 + band_phase) * np.cos(cols / 131.0)
            noise = rng.normal(0, 150, (bands, rows.shape[1], width))
            data = np.clip(base + noise, 0, 10000).astype(dtype)
            dst.write(data, window=((r0, r0 + rows.shape[1]), (0, width)))
        dst.descriptions = S2_BANDS[:bands] if bands <= 13 else tuple(f"X{i}" for i in range(bands))
    return path
