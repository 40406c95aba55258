"""The zoo for Flax NNX: every jaxzoo model as an ``nnx.Module``, through flax's own bridge
(``flax.nnx.bridge.ToNNX``), not a second copy of each network.

    import jaxzoo.nnx
    from flax import nnx

    model = jaxzoo.nnx.create_model("resnet18_cifar", num_classes=10,
                                    rngs=nnx.Rngs(params=0, dropout=1))
    model = jaxzoo.nnx.pretrained("resnet50")                  # torchvision's weights
    logits = model(x, train=False)                             # x: NHWC float32, normalized
    logits = model(x, train=True)                              # BatchNorm statistics updated
    variables = jaxzoo.nnx.to_linen_variables(model)           # {'params', 'batch_stats'}

The module's variables are the linen model's, at the same paths (``model.conv1["kernel"]`` is
``variables["params"]["conv1"]["kernel"]``): parameters are ``nnx.Param``, BatchNorm running
statistics ``nnx.BatchStat``, so ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` trains the one and
leaves the other to train mode.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.bridge.variables import linen_vars_to_nnx_attrs

from jaxzoo import models
from jaxzoo.convert.loader import pretrained as load_pretrained
from jaxzoo.models.registry import dummy_input

__all__ = ["ZooModule", "create_model", "from_linen", "pretrained", "to_linen_variables"]


class ZooModule(nnx.bridge.ToNNX):
    """``nnx.bridge.ToNNX`` with jaxzoo's ``train`` switch. ``ToNNX`` applies the linen model
    with no mutable collection unless it is told one, and jaxzoo's models never infer train
    mode from mutability (``train`` is explicit), so train mode here also makes
    ``batch_stats`` mutable: the bridge then stores the updated running statistics back into
    the module. Everything else (``rngs`` streams drawn per call, ``method=``, lazy init) is
    the bridge's own."""

    def __call__(self, x, train: bool = False, **kwargs: Any):
        kwargs.setdefault("mutable", ["batch_stats"] if train else False)
        return super().__call__(x, train=train, **kwargs)


def _check_rngs(rngs) -> nnx.Rngs:
    if isinstance(rngs, int):
        return nnx.Rngs(params=rngs, dropout=rngs + 1)
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs must be an nnx.Rngs (e.g. nnx.Rngs(params=0, dropout=1)) or an "
                        f"int seed, not {type(rngs).__name__}")
    return rngs


def create_model(name: str, *, rngs: nnx.Rngs | int, image_size: int | None = None,
                 **kwargs: Any) -> ZooModule:
    """jaxzoo's ``name`` (``jaxzoo.create_model(name, **kwargs)``) as an NNX module, its
    variables initialized from ``rngs``' ``params`` stream; ``rngs`` also gives the ``dropout``
    keys of train mode (an int ``seed`` is ``nnx.Rngs(params=seed, dropout=seed + 1)``). The
    lazy init runs on one dummy image of ``image_size`` (default: the registry's small init
    size; the variables do not depend on it)."""
    linen_model = models.create_model(name, **kwargs)
    module = ZooModule(linen_model, rngs=_check_rngs(rngs))
    size = image_size or models.get_spec(name).init_size
    return nnx.bridge.lazy_init(module, dummy_input(linen_model, size),
                                train=False)


def from_linen(model, variables: dict, *, rngs: nnx.Rngs | int = 0) -> ZooModule:
    """An NNX module of the linen ``model`` holding ``variables`` (``{'params',
    'batch_stats'}``, e.g. from ``jaxzoo.pretrained`` or a training checkpoint). The variables
    become the module's attributes by the bridge's own conversion
    (``linen_vars_to_nnx_attrs``, what ``lazy_init`` stores), so no random init runs first."""
    module = ZooModule(model, rngs=_check_rngs(rngs))
    variables = {k: jax.tree.map(jnp.asarray, v) for k, v in variables.items()
                 if k in ("params", "batch_stats") and v}
    for attribute, value in linen_vars_to_nnx_attrs(variables).items():
        setattr(module, attribute, nnx.data(value))
    return module


def pretrained(name: str, weights: str | None = "DEFAULT", *, rngs: nnx.Rngs | int = 0,
               num_classes: int | None = None, **kwargs: Any) -> ZooModule:
    """``jaxzoo.pretrained(name, weights, num_classes, **kwargs)`` (torchvision's weights by
    name, from torch's cache or downloaded) as an NNX module."""
    model, variables = load_pretrained(name, weights, num_classes, **kwargs)
    return from_linen(model, variables, rngs=rngs)


def to_linen_variables(module: ZooModule) -> dict:
    """The module's variables as the linen model takes them: ``{'params': ...,
    'batch_stats': ...}`` (no ``batch_stats`` for a model without BatchNorm), so
    ``module.to_nnx__module.apply(to_linen_variables(module), x, train=False)`` equals
    ``module(x)``."""
    _, params, batch_stats, _ = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    variables = {"params": nnx.to_pure_dict(params)}
    if len(batch_stats):
        variables["batch_stats"] = nnx.to_pure_dict(batch_stats)
    return variables
