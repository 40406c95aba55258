"""jaxzoo: the classic CNNs in Flax, with torchvision's weights and logits parity."""
from jaxzoo.models import create_model, get_spec, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "get_spec", "list_models", "__version__"]
