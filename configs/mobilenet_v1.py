"""mobilenet_v1: `python train.py --config=mobilenet_v1` (`--config=mobilenet_v1:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("mobilenet_v1", preset, family="imagenet")
