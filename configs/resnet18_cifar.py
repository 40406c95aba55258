"""resnet18_cifar: `python train.py --config=resnet18_cifar` (`--config=resnet18_cifar:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnet18_cifar", preset, family="cifar")
