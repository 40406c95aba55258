"""One recipe for the step: from a config and a mesh, the model, the initial state, the trainable
mask and the jitted train and eval steps, assembled here and nowhere else.

``train_and_evaluate``, the benchmark (``jaxzoo.bench``), the training-parity check
(``jaxzoo.train.parity``) and the tests call ``build_training``, so what they time, check and test
is the step ``train.py`` runs.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo import runtime
from jaxzoo.models import create_model
from jaxzoo.train.state import (TrainState, create_train_state, initial_variables,
                                trainable_mask)
from jaxzoo.train.step import AXIS, make_eval_step, make_train_step_for_config, replicate


@dataclasses.dataclass
class Training:
    """What training ``config`` on a mesh needs.

    model:      the module, built with the lowering for the mesh's devices and BatchNorm
                statistics synced over the mesh's axis.
    state:      the state of step 0, replicated over the mesh (the train step donates it).
    mask:       True where a parameter is trained (``config.trainable``).
    train_step: ``train_step(state, batch) -> (state, metrics)``, jitted over ``shard_map``.
    eval_step:  ``eval_step(state, batch) -> sums`` of correct predictions, loss and count.
    """

    model: nn.Module
    state: TrainState
    mask: Any
    train_step: Callable
    eval_step: Callable


def remat_kwargs(config) -> dict:
    """``{"remat": config.remat}`` for models that rematerialize their blocks; an error for the
    others when it is asked for."""
    remat = config.get("remat", "none")
    if remat == "none":
        return {}
    model_class = type(create_model(config.model, **config.model_kwargs))
    if "remat" not in {f.name for f in dataclasses.fields(model_class)}:
        raise ValueError(f"config.remat={remat!r}: {config.model} does not rematerialize its "
                         f"blocks (the ResNet, GoogLeNet, Inception v3 and MobileNet families "
                         f"do); use --config.remat=none")
    return {"remat": remat}


def build_model(config, num_classes: int, devices) -> nn.Module:
    """The model ``config`` trains on ``devices``: its dtype, options and rematerialization, the
    lowering for those devices (``config.lowering``, "auto" by default), BatchNorm statistics
    synced over the data axis."""
    return create_model(config.model, num_classes=num_classes, dtype=jnp.dtype(config.dtype),
                        bn_axis_name=AXIS,
                        lowering=runtime.lowering_for(devices, config.lowering),
                        **remat_kwargs(config), **config.model_kwargs)


def build_training(config, mesh: jax.sharding.Mesh, *, num_classes: int, steps_per_epoch: int,
                   model: nn.Module | None = None, variables: dict | None = None,
                   init_from: str | None = None, log=print) -> Training:
    """The model, state and steps for ``config`` on ``mesh``.

    ``model`` defaults to ``build_model``; ``variables`` to ``initial_variables`` from
    ``init_from`` (default ``config.init_from``; "" for random weights, as a resumed run that
    restores every weight from its checkpoint passes). The keys of the initial weights and of
    dropout both come from ``config.seed``."""
    if model is None:
        model = build_model(config, num_classes, mesh.devices.flat)
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    if variables is None:
        source = config.init_from if init_from is None else init_from
        variables = initial_variables(config, model, num_classes, init_rng, source, log=log)
    mask = trainable_mask(config.model, variables["params"], config.trainable)
    state = create_train_state(config, model, variables, steps_per_epoch, state_rng, mask=mask)
    return Training(
        model=model, state=replicate(mesh, state), mask=mask,
        train_step=make_train_step_for_config(config, model, mesh, num_classes=num_classes,
                                              mask=mask, steps_per_epoch=steps_per_epoch),
        eval_step=make_eval_step(model, mesh, num_classes=num_classes))
