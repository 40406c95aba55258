"""vgg13_bn: `python train.py --config=vgg13_bn` (`--config=vgg13_bn:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("vgg13_bn", preset, family="imagenet")
