"""timm CNNs across its families (built with ``pretrained=False``), at a small input: pruned to
50% FLOPs with the defaults, output shape kept, finite, FLOPs within 2% of the target, the
user's model untouched; and the dead-channel oracle wherever no channel-mixing normalisation
(GroupNorm, LayerNorm, weight standardisation) applies."""
import warnings

import pytest
import torch

import fxprune
from fxprune.zoo import TIMM_CNNS
from fxprune.testing import dead_channel_check
from tests.conftest import assert_dead_equivalent, assert_untouched, snapshot

timm = pytest.importorskip("timm")  # a test dependency ([test] extra); CI installs it
warnings.filterwarnings("ignore")

MODELS = TIMM_CNNS  # model -> input size (fxprune/zoo.py)
# channel-mixing normalisation: pruning is structural, but not output-preserving on dead channels
MIXING = {"efficientnet_b0_gn", "convnext_atto", "convnextv2_atto", "nf_resnet26", "nf_regnet_b0",
          "eca_nfnet_l0", "dm_nfnet_f0", "efficientformer_l1", "poolformer_s12", "edgenext_xx_small",
          "mobilevitv2_050"}  # GroupNorm(1, C) in its transformer blocks


def build(name):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    return model, torch.randn(1, 3, MODELS[name], MODELS[name])


def test_the_set_is_large_and_varied():
    assert len(MODELS) >= 60
    families = {n.split("_")[0].rstrip("0123456789") for n in MODELS}
    assert len(families) >= 45, sorted(families)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_timm_prunes_to_half_the_flops(name):
    model, x = build(name)
    with torch.no_grad():
        y = model(x)
    snap = snapshot(model)
    fxprune.analyze(model, x)  # an analysis first must not change what the next one sees
    r = fxprune.prune(model, 0.5, example_inputs=x, progress=False)
    assert_untouched(model, snap)
    assert r.report.flops_ratio <= 0.5 + 1e-9
    assert abs(r.report.flops_ratio - 0.5) <= 0.02 * 0.5, r.report.flops_ratio
    with torch.no_grad():
        y2 = r.model(x)
    assert y2.shape == y.shape and torch.isfinite(y2).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MODELS if n not in MIXING])
def test_timm_dead_channel_equivalence(name):
    model, x = build(name)
    assert_dead_equivalent(dead_channel_check(model, torch.cat([x, x.flip(3)])))
