"""The model zoo. Importing a family module registers its models."""
from jaxzoo.models import googlenet  # noqa: F401  (registers GoogLeNet)
from jaxzoo.models import inception  # noqa: F401  (registers Inception v3)
from jaxzoo.models import inception10  # noqa: F401  (registers inception10)
from jaxzoo.models import mobilenet  # noqa: F401  (registers MobileNet V1/V2/V3)
from jaxzoo.models import resnet  # noqa: F401  (registers the ResNet family)
from jaxzoo.models.registry import ModelSpec, create_model, get_spec, list_models

__all__ = ["ModelSpec", "create_model", "get_spec", "list_models"]
