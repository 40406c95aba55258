"""vgg13: `python train.py --config=vgg13` (`--config=vgg13:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("vgg13", preset, family="imagenet")
