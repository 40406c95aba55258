"""shufflenet_v2_x2_0: `python train.py --config=shufflenet_v2_x2_0` (`--config=shufflenet_v2_x2_0:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("shufflenet_v2_x2_0", preset, family="imagenet")
