"""regnet_x_3_2gf: `python train.py --config=regnet_x_3_2gf` (`--config=regnet_x_3_2gf:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("regnet_x_3_2gf", preset, family="imagenet")
