"""vgg19_bn: `python train.py --config=vgg19_bn` (`--config=vgg19_bn:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("vgg19_bn", preset, family="imagenet")
