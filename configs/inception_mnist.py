"""inception_mnist: `python train.py --config=inception_mnist` (MNIST digits, 28x28, one channel;
`--config=inception_mnist:shapes` for the offline dataset)."""
from jaxzoo.configs.default import get_config_for


def get_config(preset=None):
    # No crops or flips (a flipped digit is another digit, or none): the course's ToTensor +
    # Normalize only.
    config = get_config_for("inception_mnist", preset, family="cifar", dataset="mnist",
                            image_size=28, augment=False)
    if preset:
        # The network's classifier reads 28x28 inputs only (88 x 4 x 4 features). The built-in
        # shapes are colour images: the pipeline turns them gray for this one-channel network,
        # and flips and mild crops do not change a shape's kind.
        config.image_size = 28
        config.augment = True
    return config
