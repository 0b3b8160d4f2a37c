"""The preprocessing op chain is defined once; its numpy and torch renderings agree op by op.

``PreprocessSpec.ops()`` is the list; ``op.numpy`` (the runtime's reference, ``apply``) and
``export.onnx.torch_op`` (what the exported graph traces) are its two renderings. Each op of every
kind of spec gets the same input in both and must give the same output; the network's own part
(InputNorm: the clip when it clips, the normalisation) must equal the chain's rendering of it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cmkd_edge.export.onnx import _torch_renderings, build_deploy_module, torch_op
from cmkd_edge.runtime.contract.specs import OP_TYPES, Clip, Normalise, PreprocessSpec, net_clip, render_numpy

S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")

SPECS = {
    "optical rgb": PreprocessSpec(source="s2", source_bands=S2, source_units="reflectance_x1e4",
                                  select=(3, 2, 1), clip=(0.0, 10000.0),
                                  mean=(900.0, 1000.0, 1100.0), std=(300.0, 0.0, 500.0)),
    "sar linear": PreprocessSpec(source="s1", source_bands=("VV", "VH"), source_units="linear",
                                 select=(0, 1), to_db=True, clip=(-50.0, 30.0),
                                 mean=(-12.0, -19.0), std=(4.0, 5.0)),
    "chip db centred": PreprocessSpec(source="chip", source_bands=("MAG",), source_units="magnitude_u8",
                                      select=(0,), to_db=True, clip=(0.0, 48.2), centre=True,
                                      crop=(11, 9), mean=(0.0,), std=(6.0,)),
    "chip log1p": PreprocessSpec(source="chip", source_bands=("MAG",), source_units="magnitude_u8",
                                 select=(0,), to_log=True, clip=(0.0, 5.55), crop=(8, 8),
                                 mean=(3.0,), std=(1.0,)),
}


def _raw(spec: PreprocessSpec, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hi = {"reflectance_x1e4": 12000.0, "linear": 2.0, "magnitude_u8": 255.0}[spec.source_units]
    x = rng.uniform(0.0, hi, (3, len(spec.source_bands), 13, 12)).astype(np.float32)
    x[0, 0, 0, :3] = 0.0  # zero pixels: the dB floor and log1p(0)
    if spec.source_units == "reflectance_x1e4":
        x[1, :, 0, 0] = hi  # above the clip
    return x


@pytest.mark.parametrize("name", list(SPECS))
def test_numpy_and_torch_renderings_agree_op_by_op(name: str) -> None:
    spec = SPECS[name]
    y = _raw(spec)
    for op in spec.ops():
        want = op.numpy(y)
        with torch.no_grad():
            got = torch_op(op)(torch.from_numpy(y)).numpy()
        assert got.shape == want.shape and got.dtype == want.dtype == np.float32, op
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-5, err_msg=repr(op))
        y = want
    np.testing.assert_array_equal(y, spec.apply(_raw(spec)))  # apply is the numpy fold of the list


def test_the_specs_cover_every_op_and_each_has_a_torch_rendering() -> None:
    seen = {type(op) for spec in SPECS.values() for op in spec.ops()}
    assert seen == set(OP_TYPES) == set(_torch_renderings())


@pytest.mark.parametrize("name", list(SPECS))
def test_the_network_does_the_rest_of_the_chain(name: str) -> None:
    """graph_ops + the network's InputNorm = the whole chain: the clip once, where net_clip says."""
    from cmkd_edge.models.base import InputNorm

    spec = SPECS[name]
    graph, full = spec.graph_ops(), spec.ops()
    assert spec.clip_in_net == net_clip(spec.clip, spec.centre)
    rest = full[len(graph):]
    assert graph == full[:len(graph)] and isinstance(rest[-1], Normalise)
    assert [type(op) for op in rest] == ([Clip] if spec.clip_in_net else []) + [Normalise]
    norm = InputNorm(len(spec.select), spec.mean, spec.std, spec.clip_in_net)
    y = render_numpy(graph, _raw(spec))  # what the graph hands the network
    with torch.no_grad():
        got = norm(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(got, render_numpy(rest, y), rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(render_numpy(rest, y), spec.apply(_raw(spec)))


@pytest.mark.parametrize("name", list(SPECS))
def test_the_deploy_wrapper_renders_the_graph_ops(name: str) -> None:
    """The exported wrapper (before the network) is the chain's graph part, step for step."""
    from cmkd_edge.models.base import InputNorm

    spec = SPECS[name]

    class Net(torch.nn.Module):  # the network's input normalisation only
        def __init__(self) -> None:
            super().__init__()
            self.norm = InputNorm(len(spec.select), spec.mean, spec.std, spec.clip_in_net)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(x)

    module = build_deploy_module(Net(), spec)
    assert len(module.steps) == len(spec.graph_ops())
    with torch.no_grad():
        got = module(torch.from_numpy(_raw(spec))).numpy()
    np.testing.assert_allclose(got, spec.apply(_raw(spec)), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("view", ["rgb", "ms", "bands:B08,B04", "sar", "sar-sim", "chip:crop=10,scale=db",
                                  "chip:scale=log,norm=mean", "edge-radar:crop=12"])
def test_export_reads_the_sample_views_from_the_spec(view: str) -> None:
    """The view that makes a spec records how to read its raw input; export takes that, and for an
    older spec without it derives the same list from the view's name."""
    from dataclasses import replace

    from cmkd_edge.export.samples import _deploy_views

    from cmkd_edge.data.views import parse_view

    v = parse_view(view)
    source_bands = {"s2": S2, "s1": ("VV", "VH"), "chip": ("MAG",)}
    spec = v.deploy_input(source_bands)
    assert spec.sample_views and _deploy_views(spec, "") == list(spec.sample_views)
    older = replace(spec, sample_views=None)
    assert older == spec and "sample_views" not in older.to_dict()
    assert _deploy_views(older, view) == list(spec.sample_views)
    assert PreprocessSpec.from_dict(spec.to_dict()).sample_views == spec.sample_views
