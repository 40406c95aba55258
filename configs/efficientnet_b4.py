"""efficientnet_b4: `python train.py --config=efficientnet_b4` (`--config=efficientnet_b4:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("efficientnet_b4", preset, family="imagenet",
                          image_size=380)
