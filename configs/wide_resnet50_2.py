"""wide_resnet50_2: `python train.py --config=wide_resnet50_2` (`--config=wide_resnet50_2:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("wide_resnet50_2", preset, family="imagenet")
