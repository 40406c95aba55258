"""shufflenet_v2_x1_5: `python train.py --config=shufflenet_v2_x1_5` (`--config=shufflenet_v2_x1_5:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("shufflenet_v2_x1_5", preset, family="imagenet")
