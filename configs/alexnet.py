"""alexnet: `python train.py --config=alexnet` (`--config=alexnet:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("alexnet", preset, family="imagenet")
