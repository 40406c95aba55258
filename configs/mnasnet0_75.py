"""mnasnet0_75: `python train.py --config=mnasnet0_75` (`--config=mnasnet0_75:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("mnasnet0_75", preset, family="imagenet")
