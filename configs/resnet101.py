"""resnet101: `python train.py --config=resnet101` (`--config=resnet101:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnet101", preset, family="imagenet")
