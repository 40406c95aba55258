"""The model zoo. Importing a family module registers its models."""
from jaxzoo.models import (
    alexnet,  # noqa: F401  (registers AlexNet)
    convnext,  # noqa: F401  (registers ConvNeXt Tiny/Small/Base/Large)
    densenet,  # noqa: F401  (registers DenseNet-121/161/169/201)
    efficientnet,  # noqa: F401  (registers EfficientNet B0-B7, V2 S/M/L)
    googlenet,  # noqa: F401  (registers GoogLeNet)
    inception,  # noqa: F401  (registers Inception v3)
    inception10,  # noqa: F401  (registers inception10)
    inception_mnist,  # noqa: F401  (registers inception_mnist)
    mnasnet,  # noqa: F401  (registers MNASNet 0.5/0.75/1.0/1.3)
    mobilenet,  # noqa: F401  (registers MobileNet V1/V2/V3)
    regnet,  # noqa: F401  (registers RegNetX and RegNetY)
    resnet,  # noqa: F401  (registers the ResNet family)
    resnet_v2,  # noqa: F401  (registers pre-activation ResNets)
    shufflenet,  # noqa: F401  (registers ShuffleNet V2 x0.5-x2.0)
    squeezenet,  # noqa: F401  (registers SqueezeNet 1.0/1.1)
    vgg,  # noqa: F401  (registers VGG 11/13/16/19, plain and _bn)
)
from jaxzoo.models.registry import ModelSpec, create_model, get_spec, list_models

__all__ = ["ModelSpec", "create_model", "get_spec", "list_models"]
