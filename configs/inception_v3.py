"""inception_v3: `python train.py --config=inception_v3` (`--config=inception_v3:shapes` for the offline dataset)."""
from configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("inception_v3", preset, family="imagenet",
                          image_size=299, aux_loss_weights=(0.4,))
