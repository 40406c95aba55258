"""resnet152: `python train.py --config=resnet152` (`--config=resnet152:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("resnet152", preset, family="imagenet")
