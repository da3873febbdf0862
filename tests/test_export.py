"""ONNX export: parity in ONNX Runtime for a representative pruned set, dynamic batch, exporter
choice, clear errors, and the user's model left untouched."""
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import fxprune
from tests.ir.test_zoo import build

warnings.filterwarnings("ignore")

REPRESENTATIVE = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "densenet121",
                  "shufflenet_v2_x1_0", "regnet_y_400mf", "googlenet", "squeezenet1_0", "convnext_tiny",
                  "vit_b_16"]


def _ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_pruned_model_parity_in_onnxruntime(name, tmp_path):
    model, x = build(name)
    r = fxprune.prune(model, 0.5, example_inputs=x)
    res = fxprune.export_onnx(r, tmp_path / f"{name}.onnx", example_inputs=x)
    assert res.exporter in fxprune.export.EXPORTERS
    onnx.checker.check_model(str(res.path))
    # an independent check: a fresh session at batch 2 (the batch dim is dynamic)
    x2 = torch.randn(2, *x.shape[1:])
    with torch.no_grad():
        want = r.model.eval()(x2).numpy()
    got = _ort(res.path, x2)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-3 * max(1.0, np.abs(want).max())
    # the pruned ONNX graph is genuinely smaller than the original's
    orig = fxprune.export_onnx(model, tmp_path / "orig.onnx", example_inputs=x, checks=1)
    size = lambda p: sum(np.prod(t.dims) for t in onnx.load(str(p)).graph.initializer)  # noqa: E731
    assert size(res.path) < size(orig.path)


def test_dynamo_exporter_and_static_batch(tmp_path):
    pytest.importorskip("onnxscript")
    model, x = build("resnet18")
    r = fxprune.prune(model, 0.5, example_inputs=x)
    res = fxprune.export_onnx(r, tmp_path / "d.onnx", exporter="dynamo", dynamic_batch=False)
    assert res.exporter == "dynamo" and res.fallback_reason is None
    assert res.max_rel_err < 1e-3
    dims = onnx.load(str(res.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == list(x.shape)


class _Noisy(nn.Module):
    def forward(self, x):
        return x + torch.rand_like(x)  # ONNX Runtime draws other random numbers than torch


class _NotTensor(nn.Module):
    def forward(self, x):
        return x.shape[1]


class _Broken(nn.Module):
    def forward(self, x):
        return x @ torch.ones(5, 5)


def test_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(fxprune.ExportError, match="max abs err .* max rel err"):
        fxprune.export_onnx(_Noisy(), tmp_path / "n.onnx", example_inputs=(1, 3, 4, 4), exporter="torchscript")


@pytest.mark.parametrize("model,match", [(_NotTensor(), "returns int"), (_Broken(), "fails on example input")])
def test_unexportable_models(model, match, tmp_path):
    with pytest.raises(fxprune.ExportError, match=match):
        fxprune.export_onnx(model, tmp_path / "x.onnx", example_inputs=(1, 3, 4, 4))


def test_bad_arguments(tmp_path):
    m = nn.Conv2d(3, 4, 3)
    with pytest.raises(fxprune.FxpruneError, match="does not exist"):
        fxprune.export_onnx(m, tmp_path / "no" / "such" / "x.onnx", example_inputs=(1, 3, 8, 8))
    with pytest.raises(fxprune.FxpruneError, match="exporter"):
        fxprune.export_onnx(m, tmp_path / "x.onnx", example_inputs=(1, 3, 8, 8), exporter="tflite")
    with pytest.raises(fxprune.FxpruneError, match="nn.Module or a PruneResult"):
        fxprune.export_onnx("resnet18", tmp_path / "x.onnx")


def test_export_leaves_the_model_untouched(tmp_path):
    model, x = build("mobilenet_v3_small")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fxprune.export_onnx(model, tmp_path / "m.onnx", example_inputs=x, checks=1)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in __import__("tests.ir.test_zoo", fromlist=["ZOO"]).ZOO
                                  if n not in REPRESENTATIVE])
def test_zoo_export(name, tmp_path):
    """Every other model the zoo test prunes exports and agrees with ONNX Runtime."""
    from tests.ir.test_zoo import INFEASIBLE

    model, x = build(name)
    r = fxprune.prune(model, 0.8 if name in INFEASIBLE else 0.5, example_inputs=x, progress=False)
    res = fxprune.export_onnx(r, tmp_path / "m.onnx", example_inputs=x, checks=1)
    with torch.no_grad():  # an independent comparison on a fresh input
        x2 = torch.randn(x.shape)
        want = r.model.eval()(x2).numpy()
    got = _ort(res.path, x2)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-3 * max(1.0, np.abs(want).max())
