"""inception_v3: `python train.py --config=inception_v3` (`--config=inception_v3:shapes` for the offline dataset)."""
from jaxzoo.configs.default import get_config_for


def get_config(preset=None):
    config = get_config_for("inception_v3", preset, family="imagenet",
                            image_size=299, aux_loss_weights=(0.4,))
    if preset == "shapes":
        # The auxiliary head needs 299-px inputs (a 5x5/3 pool and a 5x5 conv on Mixed_6e's
        # 17x17 map); the preset trains at the network's smallest input, 75 px, without it.
        config.model_kwargs.aux_logits = False
        config.aux_loss_weights = ()
    return config
