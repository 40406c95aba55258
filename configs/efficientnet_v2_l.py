"""efficientnet_v2_l: `python train.py --config=efficientnet_v2_l` (`--config=efficientnet_v2_l:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("efficientnet_v2_l", preset, family="imagenet",
                          image_size=480)
