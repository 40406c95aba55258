"""mobilenet_v3_large: `python train.py --config=mobilenet_v3_large` (`--config=mobilenet_v3_large:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("mobilenet_v3_large", preset, family="imagenet")
