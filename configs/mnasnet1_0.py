"""mnasnet1_0: `python train.py --config=mnasnet1_0` (`--config=mnasnet1_0:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("mnasnet1_0", preset, family="imagenet")
