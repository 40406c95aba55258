"""efficientnet_b6: `python train.py --config=efficientnet_b6` (`--config=efficientnet_b6:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("efficientnet_b6", preset, family="imagenet",
                          image_size=528)
