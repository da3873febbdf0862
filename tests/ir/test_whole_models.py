"""Whole torchvision models beyond classification, pruned as users call it: every detector
(forward untraceable: pruned inside its traceable parts), RAFT, Swin3D, MViT, segmentation and
video models."""
import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import get_model, list_models

import fxprune
from fxprune.testing import dead_channel_check
from tests.conftest import assert_dead_equivalent, assert_untouched, snapshot

DETECTORS = list_models(module=torchvision.models.detection)
GROUP_NORM_HEADS = {"fcos_resnet50_fpn", "retinanet_resnet50_fpn_v2"}  # channel-mixing: no dead equivalence


def _detector(name):
    """A small configuration of each detector (the test's choice): 128-pixel images for the
    R-CNN family, RetinaNet and FCOS, at most 10 detections per image."""
    torch.manual_seed(0)
    kw = {"detections_per_img" if name.startswith(("retina", "fcos")) else "box_detections_per_img": 10}
    if name.startswith("ssd"):
        kw = {"detections_per_img": 10}
    else:
        kw.update(min_size=128, max_size=128)
    return get_model(name, weights=None, weights_backbone=None, **kw).eval(), ([torch.randn(3, 128, 128)],)


def _macs(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*x)
    return fc.get_total_flops() / 2


def test_all_detectors_are_listed():
    assert len(DETECTORS) >= 12, DETECTORS


@pytest.mark.slow
@pytest.mark.parametrize("name", DETECTORS)
def test_detector_prunes_as_a_whole_model(name):
    model, x = _detector(name)
    with torch.no_grad():
        y = model(*x)  # before the snapshot: a forward may fill the model's own caches
    snap = snapshot(model)
    r = fxprune.prune(model, 0.5, example_inputs=x, progress=False)
    assert_untouched(model, snap)
    assert abs(r.report.flops_ratio - 0.5) <= 0.01 and r.report.flops_ratio <= 0.5
    assert type(r.model) is type(model)  # the detector itself, with pruned parts put back
    assert "backbone" in r.report.regions and r.report.untraced
    with torch.no_grad():
        y2 = r.model(*x)
    assert isinstance(y2, list) and len(y2) == len(y) and y2[0].keys() == y[0].keys()
    # the whole model's MACs as torch.utils.flop_counter counts them, before and after (the heads
    # run on as many proposals as the scores give, so the whole model's count is data-dependent)
    assert r.report.whole_flops_before == pytest.approx(_macs(model, x), rel=1e-6)
    assert r.report.whole_flops_after == pytest.approx(_macs(r.model, x), rel=1e-6)
    text = str(r.report)
    assert "pruned inside: backbone" in text and "whole model (flop_counter)" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in DETECTORS if n not in GROUP_NORM_HEADS])
def test_detector_dead_channel_equivalence(name):
    model, x = _detector(name)
    assert_dead_equivalent(dead_channel_check(model, x))


def test_detector_saves_and_reloads(tmp_path):
    model, x = _detector("ssdlite320_mobilenet_v3_large")
    r = fxprune.prune(model, 0.5, example_inputs=x, progress=False)
    fxprune.save(r, tmp_path / "ssd.safetensors")
    again = fxprune.load(tmp_path / "ssd.safetensors", _detector("ssdlite320_mobilenet_v3_large")[0])
    torch.manual_seed(1)
    img = [torch.rand(3, 160, 200)]
    with torch.no_grad():
        a, b = r.model(img), again.model(img)
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0])


def test_untraced_models_refuse_search_policies_clearly():
    model, x = _detector("ssdlite320_mobilenet_v3_large")
    with pytest.raises(fxprune.FxpruneError, match="forward is not traceable.*only the baselines"):
        fxprune.prune(model, 0.5, example_inputs=x, policy="mcq", data=[(torch.randn(2, 3, 32, 32), None)],
                      progress=False)


OTHERS = {  # name: (example input, budget); RAFT and Swin3D keep much of their cost outside groups
    "raft_small": ((torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128)), 0.6),
    "swin3d_t": ((torch.randn(1, 3, 8, 64, 64),), 0.6),
    "mvit_v2_s": ((torch.randn(1, 3, 16, 224, 224),), 0.5),
    "mvit_v1_b": ((torch.randn(1, 3, 16, 224, 224),), 0.5),
    "r2plus1d_18": ((torch.randn(1, 3, 8, 64, 64),), 0.5),
    "deeplabv3_mobilenet_v3_large": ((torch.randn(1, 3, 64, 64),), 0.5),
    "lraspp_mobilenet_v3_large": ((torch.randn(1, 3, 64, 64),), 0.5),
}
EXACT = {"raft_small", "r2plus1d_18", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"}


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_other_vision_models(name):
    x, budget = OTHERS[name]
    torch.manual_seed(0)
    kw = {"weights_backbone": None} if name.startswith(("deeplab", "lraspp")) else {}
    model = get_model(name, weights=None, **kw).eval()
    with torch.no_grad():
        y = model(*x)  # before the snapshot: a forward may fill the model's own caches
    snap = snapshot(model)
    r = fxprune.prune(model, budget, example_inputs=x, progress=False)
    assert_untouched(model, snap)
    assert abs(r.report.flops_ratio - budget) <= 0.02 * budget and r.report.flops_ratio <= budget
    with torch.no_grad():
        y2 = r.model(*x)
    flat = lambda v: [v] if isinstance(v, torch.Tensor) else [t for k in (v.values() if isinstance(v, dict) else v) for t in flat(k)]  # noqa: E731
    assert [t.shape for t in flat(y2)] == [t.shape for t in flat(y)]
    assert all(torch.isfinite(t).all() for t in flat(y2))
    if name in EXACT:
        assert_dead_equivalent(dead_channel_check(model, x))
