"""mobilenet_v3_small: `python train.py --config=mobilenet_v3_small` (`--config=mobilenet_v3_small:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("mobilenet_v3_small", preset, family="imagenet")
