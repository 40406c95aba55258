"""resnet34: `python train.py --config=resnet34` (`--config=resnet34:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnet34", preset, family="imagenet")
