"""efficientnet_v2_s: `python train.py --config=efficientnet_v2_s` (`--config=efficientnet_v2_s:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("efficientnet_v2_s", preset, family="imagenet",
                          image_size=384)
