"""squeezenet1_0: `python train.py --config=squeezenet1_0` (`--config=squeezenet1_0:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("squeezenet1_0", preset, family="imagenet")
