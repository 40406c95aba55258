"""inception10: `python train.py --config=inception10` (`--config=inception10:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("inception10", preset, family="cifar")
