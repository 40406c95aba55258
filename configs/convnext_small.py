"""convnext_small: `python train.py --config=convnext_small` (`--config=convnext_small:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("convnext_small", preset, family="imagenet")
