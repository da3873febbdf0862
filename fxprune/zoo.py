"""Build named models for the CLI and benchmarks: torchvision names (always), timm names (when
timm is installed). Models are built with random weights (``weights=None`` / ``pretrained=False``);
nothing is downloaded."""
from __future__ import annotations

import torch

from .errors import FxpruneError


# A varied set of timm CNN architectures across its families, with a small input size (or the size
# the model requires), used by the test suite (tests/ir/test_timm.py) and benchmarks/zoo.py.
TIMM_CNNS: dict[str, int] = {
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


def torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def default_input_shape(name: str) -> tuple[int, int, int, int]:
    """The documented default example input: 299 px for Inception-v3, 32 px for the CIFAR ResNets,
    224 px otherwise."""
    name = name.split(":")[-1]
    if name in FXPRUNE_MODELS:
        return (1, 3, 32, 32)
    return (1, 3, 299, 299) if name.startswith("inception") else (1, 3, 224, 224)


FXPRUNE_MODELS = {f"cifar_resnet{d}": d for d in (20, 32, 44, 56)}  # fxprune.models, CIFAR-10 (32x32 inputs)


def build_model(spec: str) -> torch.nn.Module:
    """``"resnet18"``, ``"torchvision:resnet18"``, ``"timm:resnet50"`` or ``"cifar_resnet56"`` (fxprune's
    CIFAR ResNets) -> a randomly initialised model in eval mode."""
    source, sep, name = spec.partition(":")
    if not sep:
        source, name = "", spec
    if source in ("", "torchvision") and name in torchvision_names():
        import torchvision

        return torchvision.models.get_model(name, weights=None).eval()
    if source == "fxprune" or (source == "" and name in FXPRUNE_MODELS):
        if name not in FXPRUNE_MODELS:
            raise FxpruneError(f"unknown fxprune model '{name}'; choose one of {', '.join(FXPRUNE_MODELS)}")
        from .models import cifar_resnet

        return cifar_resnet(FXPRUNE_MODELS[name]).eval()
    if source in ("", "timm"):
        try:
            import timm
        except ImportError:
            timm = None
        if timm is not None and name in timm.list_models():
            return timm.create_model(name, pretrained=False).eval()
        if source == "timm":
            raise FxpruneError(f"unknown timm model '{name}'" if timm else "timm is not installed")
    if source not in ("", "torchvision", "timm", "fxprune"):
        raise FxpruneError(f"unknown model source '{source}' in '{spec}' (use torchvision:, timm: or fxprune:)")
    raise FxpruneError(f"unknown model '{name}': not a torchvision model name (e.g. resnet18; see "
                       "torchvision.models.list_models())" + (" nor a timm one" if source == "" else ""))


def spec_of(name: str) -> str:
    """Canonical ``source:name`` for a bare name, as recorded in saved files."""
    if ":" in name:
        return name
    if name in FXPRUNE_MODELS:
        return f"fxprune:{name}"
    return f"torchvision:{name}" if name in torchvision_names() else f"timm:{name}"
