"""The model registry: names (torchvision's), builders, and what the converter needs to know."""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models import lowering as lowerings


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
    feature_channels, feature_strides: what ``method="feature_maps"`` returns with the default
                    options: the channels and the stride of each map.
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
    feature_channels: tuple[int, ...] = ()
    feature_strides: tuple[int, ...] = (4, 8, 16, 32)
    description: str = ""

    @property
    def init_size(self) -> int:
        """A small input side the model accepts, to initialize or trace it: 32 px or its
        minimum, at most its default (some nets take only their design size)."""
        return min(self.default_size, max(self.min_size, 32))

    def is_head(self, torch_key: str) -> bool:
        """Whether the torch state-dict key belongs to the classifier (``head``)."""
        return any(torch_key.startswith(prefix + ".") for prefix in self.head)


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
                 lowering: str = "auto", devices: Iterable[jax.Device] | None = None,
                 **model_kwargs: Any) -> nn.Module:
    """Build the flax module registered as ``name``.

    ``dtype`` is the compute dtype (float32 or bfloat16); parameters are always float32.
    ``lowering`` is how convolutions and max-pool gradients are lowered: "xla" (XLA's own ops,
    for GPU and TPU), "cpu" (formulations XLA:CPU runs faster, same numbers) or "auto", the
    default: "cpu" when every one of ``devices`` (default: ``jax.devices()``) is a CPU, else
    "xla". "auto" is resolved here and the module keeps the concrete choice, so ``jax.jit`` sees
    it and a model is never re-lowered behind the caller's back.
    ``model_kwargs`` go to the family's module (e.g. ``zero_init_residual=True``,
    ``aux_logits=False``, ``width_mult=0.75``, ``in_channels=1``).
    """
    spec = get_spec(name)
    if lowering == "auto":
        lowering = lowerings.for_devices(jax.devices() if devices is None else devices)
    return spec.builder(num_classes=num_classes, dtype=jnp.dtype(dtype),
                        lowering=lowerings.check(lowering), **model_kwargs)


def dummy_input(model: nn.Module, size: int) -> jax.Array:
    """One all-zero image of ``size`` pixels with the model's channels: what ``init`` needs."""
    return jnp.zeros((1, size, size, getattr(model, "in_channels", 3)), jnp.float32)


def init_variables(model: nn.Module, size: int, rng: jax.Array) -> dict:
    """``model.init`` on a dummy input of ``size`` pixels (jitted: XLA:CPU runs the eager init
    op by op): ``{'params': ..., 'batch_stats': ...}``."""
    return dict(jax.jit(lambda r: model.init(r, dummy_input(model, size), train=False))(rng))


def variable_shapes(model: nn.Module, size: int) -> dict:
    """The shapes and dtypes of ``init_variables`` (``jax.ShapeDtypeStruct`` leaves), computed
    without running anything."""
    return dict(jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), dummy_input(model, size), train=False)))


def model_options(name: str) -> list[str]:
    """The options of ``name``'s module that ``create_model(name, **model_kwargs)`` passes on
    (``in_channels``, ``dropout``, ``aux_logits``, ...), sorted: its fields but
    ``layers.BUILD_FIELDS`` (create_model's own arguments and the mesh axis) and flax's
    ``parent`` and ``name``."""
    # An explicit lowering: reading the class queries no device, so train.py checks options
    # before jax.distributed.initialize() (which must come before any backend starts).
    module = type(create_model(name, lowering="xla"))
    return sorted(f.name for f in dataclasses.fields(module)
                  if f.name not in (*layers.BUILD_FIELDS, "parent", "name"))
