"""vgg11_bn: `python train.py --config=vgg11_bn` (`--config=vgg11_bn:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("vgg11_bn", preset, family="imagenet")
