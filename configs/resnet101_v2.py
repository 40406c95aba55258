"""resnet101_v2: `python train.py --config=resnet101_v2` (`--config=resnet101_v2:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnet101_v2", preset, family="imagenet")
