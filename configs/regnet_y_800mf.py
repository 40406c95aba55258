"""regnet_y_800mf: `python train.py --config=regnet_y_800mf` (`--config=regnet_y_800mf:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("regnet_y_800mf", preset, family="imagenet")
