"""convnext_large: `python train.py --config=convnext_large` (`--config=convnext_large:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("convnext_large", preset, family="imagenet")
