"""The model registry: names (torchvision's), builders, and what the converter needs to know."""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

import jax.numpy as jnp
from flax import linen as nn


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build a model and how it lines up with its torchvision counterpart.

    builder:        ``builder(num_classes=..., dtype=..., **kwargs) -> nn.Module``.
    torchvision:    name of the ``torchvision.models`` builder, or None when there is none.
    torch_kwargs:   extra arguments for that builder so it builds the same network as ``builder``
                    with its defaults (e.g. GoogLeNet's ``aux_logits=True``).
    head:           torch key prefixes of the classifier layers: re-initialized when a checkpoint is
                    loaded with a different ``num_classes``.
    features_at:    the torch module whose input is what ``features`` returns (default: head[0]).
    default_size:   the input resolution the model was designed for.
    min_size:       the smallest input side the network accepts.
    dotted_indices: flax names ``layer1_0`` stand for torch's ``layer1.0`` (Sequential indices).
                    False for models whose torch names end in ``_<digit>`` themselves (Inception v3).
    """

    name: str
    builder: Callable[..., nn.Module]
    torchvision: str | None = None
    torch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    head: tuple[str, ...] = ("fc",)
    features_at: str | None = None
    default_size: int = 224
    min_size: int = 32
    dotted_indices: bool = True
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Sorted names of every model jaxzoo can build."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; an unknown name is an error that lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Available models: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int = 1000, dtype: Any = jnp.float32,
                 **model_kwargs: Any) -> nn.Module:
    """Build the flax module registered as ``name``.

    ``dtype`` is the compute dtype (float32 or bfloat16); parameters are always float32.
    ``model_kwargs`` go to the family's module (e.g. ``zero_init_residual=True``,
    ``aux_logits=False``, ``width_mult=0.75``).
    """
    spec = get_spec(name)
    return spec.builder(num_classes=num_classes, dtype=jnp.dtype(dtype), **model_kwargs)
