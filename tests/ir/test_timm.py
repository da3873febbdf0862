"""timm CNNs across its families (built with ``pretrained=False``), at a small input: pruned to
50% FLOPs with the defaults, output shape kept, finite, FLOPs within 2% of the target, the
user's model untouched; and the dead-channel oracle wherever no channel-mixing normalisation
(GroupNorm, LayerNorm, weight standardisation) applies."""
import warnings

import pytest
import torch

import fxprune
from fxprune.testing import dead_channel_check
from tests.conftest import assert_dead_equivalent, assert_untouched, snapshot

timm = pytest.importorskip("timm")  # a test dependency ([test] extra); CI installs it
warnings.filterwarnings("ignore")

# model -> input size (the test's choice: small, or what the model requires)
MODELS = {
    # ResNet-D / RS / anti-aliased / pre-activation
    "resnet18d": 64, "resnet26d": 64, "resnet50d": 64, "resnetrs50": 64, "resnet10t": 64, "resnetblur18": 64,
    "resnetaa34d": 64, "resnetv2_18": 64, "legacy_seresnet18": 64,
    # SE / ECA / SK / ResNeSt / Res2Net / global context / BAT
    "seresnet18": 64, "ecaresnet26t": 64, "ecaresnetlight": 64, "skresnet18": 64, "skresnext50_32x4d": 64,
    "resnest14d": 64, "resnest26d": 64, "res2net50_14w_8s": 64, "res2next50": 64, "res2net50d": 64,
    "seresnext26d_32x4d": 64, "gcresnet33ts": 64, "gcresnext26ts": 64, "bat_resnext26ts": 256,
    # RegNet
    "regnetx_002": 64, "regnety_002": 64, "regnetz_005": 64, "regnetv_040": 64,
    # EfficientNet / V2 / Lite, TF-"same" padding variants
    "efficientnet_b0": 64, "efficientnet_lite0": 64, "tf_efficientnet_b0": 64, "efficientnetv2_rw_t": 64,
    "tf_efficientnetv2_b0": 64, "efficientnet_b0_gn": 64, "tinynet_e": 64,
    # MobileNet V1/V2/V3/V4, LCNet, MixNet, GhostNet, ReXNet, NAS nets
    "mobilenetv2_050": 64, "mobilenetv3_small_050": 64, "mobilenetv3_large_100": 64, "mobilenetv1_100": 64,
    "mobilenetv4_conv_small": 64, "lcnet_050": 64, "mixnet_s": 64, "ghostnet_050": 64, "ghostnetv2_100": 64,
    "repghostnet_050": 64, "rexnet_100": 64, "fbnetc_100": 64, "mnasnet_small": 64, "semnasnet_050": 64,
    "spnasnet_100": 64, "hardcorenas_a": 64,
    # DLA, DPN, DenseNet, CSP / DarkNet, VoVNet, SelecSLS, HRNet
    "dla34": 64, "dla46_c": 64, "dla60_res2net": 64, "dpn68": 64, "dpn48b": 64, "densenet121": 64,
    "densenetblur121d": 64, "cspresnet50": 64, "cspdarknet53": 64, "cs3darknet_s": 64, "darknet17": 64,
    "cspnext_tiny": 64, "cs3sedarknet_xdw": 64, "ese_vovnet19b_dw": 64, "vovnet39a": 64, "selecsls42b": 64,
    "hrnet_w18_small": 224,
    # RepVGG / MobileOne / GENet (ByobNet), Xception, Inception
    "repvgg_a0": 64, "mobileone_s0": 64, "gernet_s": 64, "xception41": 299, "inception_v3": 299,
    "inception_resnet_v2": 299,
    # ConvNeXt, NFNet (weight standardisation), TResNet (space-to-depth stem)
    "convnext_atto": 64, "convnextv2_atto": 64, "nf_resnet26": 64, "nf_regnet_b0": 64, "eca_nfnet_l0": 64,
    "dm_nfnet_f0": 64, "tresnet_m": 224,
    # hybrids with attention: MobileViT, EfficientFormer, BotNet, HaloNet, LambdaNet, LeViT, EdgeNeXt
    "mobilevitv2_050": 256, "efficientformer_l1": 224, "efficientformerv2_s0": 224, "botnet26t_256": 256,
    "halonet26t": 256, "lambda_resnet26t": 256, "levit_128s": 224, "edgenext_xx_small": 64,
    # others
    "hgnetv2_b0": 64, "fasternet_t0": 64, "starnet_s050": 64, "repvit_m0_9": 64, "poolformer_s12": 64,
    "fastvit_t8": 64,
}
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
    snap = snapshot(model)
    with torch.no_grad():
        y = model(x)
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
