"""vgg19: `python train.py --config=vgg19` (`--config=vgg19:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("vgg19", preset, family="imagenet")
