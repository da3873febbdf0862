"""Build named models for the CLI and benchmarks: torchvision names (always), timm names (when
timm is installed). Models are built with random weights (``weights=None`` / ``pretrained=False``);
nothing is downloaded."""
from __future__ import annotations

import torch

from .errors import FxpruneError


def torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def default_input_shape(name: str) -> tuple[int, int, int, int]:
    """The documented default example input: 299 px for Inception-v3, 224 px otherwise."""
    return (1, 3, 299, 299) if name.split(":")[-1].startswith("inception") else (1, 3, 224, 224)


def build_model(spec: str) -> torch.nn.Module:
    """``"resnet18"``, ``"torchvision:resnet18"`` or ``"timm:resnet50"`` -> a model in eval mode."""
    source, sep, name = spec.partition(":")
    if not sep:
        source, name = "", spec
    if source in ("", "torchvision") and name in torchvision_names():
        import torchvision

        return torchvision.models.get_model(name, weights=None).eval()
    if source in ("", "timm"):
        try:
            import timm
        except ImportError:
            timm = None
        if timm is not None and name in timm.list_models():
            return timm.create_model(name, pretrained=False).eval()
        if source == "timm":
            raise FxpruneError(f"unknown timm model '{name}'" if timm else "timm is not installed")
    if source not in ("", "torchvision", "timm"):
        raise FxpruneError(f"unknown model source '{source}' in '{spec}' (use torchvision: or timm:)")
    raise FxpruneError(f"unknown model '{name}': not a torchvision model name (e.g. resnet18; see "
                       "torchvision.models.list_models())" + (" nor a timm one" if source == "" else ""))


def spec_of(name: str) -> str:
    """Canonical ``source:name`` for a bare name, as recorded in saved files."""
    if ":" in name:
        return name
    return f"torchvision:{name}" if name in torchvision_names() else f"timm:{name}"
