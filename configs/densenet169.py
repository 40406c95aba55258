"""densenet169: `python train.py --config=densenet169` (`--config=densenet169:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("densenet169", preset, family="imagenet")
