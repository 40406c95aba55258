"""regnet_x_32gf: `python train.py --config=regnet_x_32gf` (`--config=regnet_x_32gf:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("regnet_x_32gf", preset, family="imagenet")
