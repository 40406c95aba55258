"""densenet201: `python train.py --config=densenet201` (`--config=densenet201:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("densenet201", preset, family="imagenet")
