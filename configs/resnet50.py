"""resnet50: `python train.py --config=resnet50` (`--config=resnet50:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnet50", preset, family="imagenet")
