"""efficientnet_b7: `python train.py --config=efficientnet_b7` (`--config=efficientnet_b7:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("efficientnet_b7", preset, family="imagenet",
                          image_size=600)
