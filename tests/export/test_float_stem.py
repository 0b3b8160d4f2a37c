"""ONNX Runtime INT8 keeps a single-channel stem float (it is slower in INT8) and records the graph
transformer its runner must skip so the stem's pool stays a float NCHWc pool."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_data_chips import make_chips  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def int8_chip_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cmkd_edge.export.quantize import quantize_bundle
    from cmkd_edge.export.student import export_checkpoint

    from cmkd_edge.distill.config import TrainConfig
    from cmkd_edge.distill.trainer import train

    root = tmp_path_factory.mktemp("stem")
    chips = make_chips(root / "chips", per_class=8)
    train(TrainConfig(out=root / "run", data=str(chips), input_size=24, arch_options={"width": 4},
                      epochs=1, batch_size=4, device="cpu", quiet=True))
    bundle = export_checkpoint(root / "run" / "best.pt", root / "bundle", samples=4, batch=2)
    quantize_bundle(bundle, backend="onnxruntime", precision="int8", calib_data=str(chips),
                    max_drop=100.0)
    return chips, bundle


def test_stem_nodes_are_the_single_channel_conv_and_its_pool(int8_chip_bundle: tuple[Path, Path]) -> None:
    from cmkd_edge.export.quantize.ort import float_stem_nodes

    _, bundle = int8_chip_bundle
    fp32 = onnx.load(str(bundle / "model.onnx"))
    stem = float_stem_nodes(fp32)
    ops = {n.name: n.op_type for n in fp32.graph.node}
    assert [ops[n] for n in stem] == ["Conv", "Relu", "MaxPool"]
    convs = [n for n in fp32.graph.node if n.op_type == "Conv"]
    assert stem[0] == convs[0].name and len(convs) > 1  # only the first (1-channel) convolution


def test_int8_artifact_keeps_the_stem_float_and_records_the_runner_option(
        int8_chip_bundle: tuple[Path, Path]) -> None:
    from cmkd_edge.runtime.backends.onnxruntime import OrtRunner
    from cmkd_edge.runtime.classifier import Classifier
    from cmkd_edge.runtime.contract.bundle import open_bundle

    chips, bundle = int8_chip_bundle
    opened = open_bundle(bundle)
    art = next(a for a in opened.manifest.artifacts if a.id == "onnx-int8")
    assert art.disabled_optimizers == ("QDQPropagationTransformer",)
    fp32_art = next(a for a in opened.manifest.artifacts if a.id == "onnx-fp32")
    assert fp32_art.disabled_optimizers is None
    q = onnx.load(str(bundle / art.path))
    first_conv = next(n for n in q.graph.node if n.op_type == "Conv")
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    assert producers.get(first_conv.input[1]) != "DequantizeLinear"  # float weights: not quantized
    assert sum(n.op_type == "Conv" for n in q.graph.node) > 1
    runner = OrtRunner.for_artifact(opened, art, threads=1)
    assert runner.options["disabled_optimizers"] == ("QDQPropagationTransformer",)
    # the option changes where ONNX Runtime quantizes, never the result: same logits either way
    x = np.random.default_rng(0).integers(0, 255, (4, 1, 32, 32)).astype(np.float32)
    with Classifier.open(bundle, backend="onnxruntime", artifact="onnx-int8") as clf:
        with_option = clf.infer_logits(x)
    plain = OrtRunner(bundle / art.path, threads=1).open()
    name = next(iter(plain.input_specs()))
    logits = next(iter(plain.infer({name: x}).values()))
    np.testing.assert_allclose(with_option, logits, rtol=0, atol=1e-5)
