"""vgg11: `python train.py --config=vgg11` (`--config=vgg11:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("vgg11", preset, family="imagenet")
