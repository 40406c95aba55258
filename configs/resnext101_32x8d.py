"""resnext101_32x8d: `python train.py --config=resnext101_32x8d` (`--config=resnext101_32x8d:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnext101_32x8d", preset, family="imagenet")
