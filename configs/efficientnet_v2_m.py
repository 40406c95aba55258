"""efficientnet_v2_m: `python train.py --config=efficientnet_v2_m` (`--config=efficientnet_v2_m:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("efficientnet_v2_m", preset, family="imagenet",
                          image_size=480)
