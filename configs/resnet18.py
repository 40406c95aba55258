"""resnet18: `python train.py --config=resnet18` (`--config=resnet18:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnet18", preset, family="imagenet")
