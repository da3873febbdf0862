"""Model definitions fxprune ships for its own benchmarks and examples (beyond torchvision)."""
from .cifar_resnet import CifarResNet, cifar_resnet, load_cifar_resnet
from .weights import load_weights, read_state_dict

__all__ = ["CifarResNet", "cifar_resnet", "load_cifar_resnet", "load_weights", "read_state_dict"]
