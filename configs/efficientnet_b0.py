"""efficientnet_b0: `python train.py --config=efficientnet_b0` (`--config=efficientnet_b0:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("efficientnet_b0", preset, family="imagenet")
