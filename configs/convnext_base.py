"""convnext_base: `python train.py --config=convnext_base` (`--config=convnext_base:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("convnext_base", preset, family="imagenet")
