"""jaxzoo: the classic CNNs in Flax, with torchvision's weights and logits parity."""
from jaxzoo import runtime  # noqa: F401  (jaxzoo.runtime.lowering_for)
from jaxzoo.models import create_model, get_spec, list_models
from jaxzoo.predict import Prediction, Predictor

__version__ = "0.1.0"
__all__ = ["Prediction", "Predictor", "create_model", "get_spec", "list_models", "pretrained",
           "__version__"]


def pretrained(name: str, weights: str | None = "DEFAULT", num_classes: int | None = None,
               dtype=None, lowering: str = "auto", **kwargs):
    """``model, variables = jaxzoo.pretrained("resnet50", weights="DEFAULT")``: torchvision's
    pretrained weights by name, in the network torchvision builds for them; see
    ``jaxzoo.convert.pretrained`` for every option. The file comes from torch's cache
    (``$TORCH_HOME/hub/checkpoints``) or is downloaded there; the converted variables are cached
    in ``~/.cache/jaxzoo/weights``. ``lowering`` as in ``create_model``: "auto" gives the CPU
    formulations on CPUs and XLA's own ops on GPUs and TPUs."""
    import jax.numpy as jnp

    from jaxzoo.convert.loader import pretrained as load_pretrained

    return load_pretrained(name, weights, num_classes, jnp.float32 if dtype is None else dtype,
                           lowering, **kwargs)
