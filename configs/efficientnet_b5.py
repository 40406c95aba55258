"""efficientnet_b5: `python train.py --config=efficientnet_b5` (`--config=efficientnet_b5:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("efficientnet_b5", preset, family="imagenet",
                          image_size=456)
