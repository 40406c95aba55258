"""regnet_x_400mf: `python train.py --config=regnet_x_400mf` (`--config=regnet_x_400mf:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("regnet_x_400mf", preset, family="imagenet")
