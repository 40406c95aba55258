"""resnext50_32x4d: `python train.py --config=resnext50_32x4d` (`--config=resnext50_32x4d:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnext50_32x4d", preset, family="imagenet")
