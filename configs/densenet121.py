"""densenet121: `python train.py --config=densenet121` (`--config=densenet121:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("densenet121", preset, family="imagenet")
