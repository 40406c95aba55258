"""convnext_tiny: `python train.py --config=convnext_tiny` (`--config=convnext_tiny:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("convnext_tiny", preset, family="imagenet")
