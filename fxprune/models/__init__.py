"""Model definitions fxprune ships for its own benchmarks and examples (beyond torchvision)."""
from .cifar_resnet import CifarResNet, cifar_resnet, load_cifar_resnet

__all__ = ["CifarResNet", "cifar_resnet", "load_cifar_resnet"]
