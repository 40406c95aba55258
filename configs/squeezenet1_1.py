"""squeezenet1_1: `python train.py --config=squeezenet1_1` (`--config=squeezenet1_1:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("squeezenet1_1", preset, family="imagenet")
