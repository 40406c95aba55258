"""densenet161: `python train.py --config=densenet161` (`--config=densenet161:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("densenet161", preset, family="imagenet")
