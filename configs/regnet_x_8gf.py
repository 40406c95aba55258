"""regnet_x_8gf: `python train.py --config=regnet_x_8gf` (`--config=regnet_x_8gf:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("regnet_x_8gf", preset, family="imagenet")
