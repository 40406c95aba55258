"""jaxzoo: the classic CNNs in Flax, with torchvision's weights and logits parity."""
from jaxzoo.models import create_model, get_spec, list_models
from jaxzoo.predict import Prediction, Predictor

__version__ = "0.1.0"
__all__ = ["Prediction", "Predictor", "create_model", "get_spec", "list_models", "__version__"]
