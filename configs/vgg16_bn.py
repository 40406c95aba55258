"""vgg16_bn: `python train.py --config=vgg16_bn` (`--config=vgg16_bn:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("vgg16_bn", preset, family="imagenet")
