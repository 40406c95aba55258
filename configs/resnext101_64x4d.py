"""resnext101_64x4d: `python train.py --config=resnext101_64x4d` (`--config=resnext101_64x4d:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnext101_64x4d", preset, family="imagenet")
