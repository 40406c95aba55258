"""regnet_y_128gf: `python train.py --config=regnet_y_128gf` (`--config=regnet_y_128gf:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("regnet_y_128gf", preset, family="imagenet")
