"""googlenet: `python train.py --config=googlenet` (`--config=googlenet:shapes` for the offline dataset)."""
from jaxzoo.configs.default import get_config_for


def get_config(preset=None):
    return get_config_for("googlenet", preset, family="imagenet",
                          # (aux2, aux1): the order GoogLeNet returns them in train mode.
                          aux_loss_weights=(0.3, 0.3))
