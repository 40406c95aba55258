"""mnasnet1_3: `python train.py --config=mnasnet1_3` (`--config=mnasnet1_3:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("mnasnet1_3", preset, family="imagenet")
