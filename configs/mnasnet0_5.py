"""mnasnet0_5: `python train.py --config=mnasnet0_5` (`--config=mnasnet0_5:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("mnasnet0_5", preset, family="imagenet")
