"""regnet_y_8gf: `python train.py --config=regnet_y_8gf` (`--config=regnet_y_8gf:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("regnet_y_8gf", preset, family="imagenet")
