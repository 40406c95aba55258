"""vgg16: `python train.py --config=vgg16` (`--config=vgg16:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("vgg16", preset, family="imagenet")
