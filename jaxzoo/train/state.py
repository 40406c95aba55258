"""The train state, the optimizer, and where the initial weights come from."""
from __future__ import annotations

import os
from typing import Any

import jax
from flax import traverse_util
from flax.training import train_state

from jaxzoo import convert
from jaxzoo.models import get_spec
from jaxzoo.models.registry import init_variables
from jaxzoo.train import ema
from jaxzoo.train.configs import TRAINABLE
from jaxzoo.train.optim import (
    create_optimizer,
    learning_rate_schedule,  # noqa: F401 (its callers import it here)
    needs_norms,
    norm_parameters,
)


class TrainState(train_state.TrainState):
    """flax's TrainState (step, params, opt_state, apply_fn, tx) plus BatchNorm statistics and
    the base key that dropout keys are folded from."""

    batch_stats: Any = None
    rng: jax.Array | None = None


class EmaTrainState(TrainState):
    """``TrainState`` plus, with ``config.model_ema``, the weights' moving average
    (``jaxzoo.train.ema``: float32 params and batch_stats, and ``n_averaged``). A class of its
    own, so that the default state keeps the fields (and checkpoints) it had before."""

    ema: Any = None


def trainable_mask(model_name: str, params, trainable: str):
    """A pytree of bools shaped like ``params``: True where the parameter is trained.

    ``trainable="head"`` marks only the classifier (the registry's ``head``, torchvision's names,
    e.g. ``fc`` or ``classifier.3``), not the auxiliary classifiers: the frozen backbone runs in
    inference mode, where they give no output and get no gradient. Frozen, they are also spared
    AdamW's decay, as torch's optimizers skip parameters without a gradient."""
    if trainable not in TRAINABLE:
        raise ValueError(f"config.trainable must be one of {', '.join(TRAINABLE)}, got "
                         f"{trainable!r}")
    if trainable == "all":
        return jax.tree.map(lambda _: True, params)  # any module, registered or not
    spec = get_spec(model_name)
    aux = tuple(f"{m}." for m in convert.catalog.aux_modules_for(model_name))
    flat = traverse_util.flatten_dict(params)

    def trained(path):
        key = convert.torch_key("params", path, spec.dotted_indices)
        return spec.is_head(key) and not key.startswith(aux)

    return traverse_util.unflatten_dict({path: trained(path) for path in flat})


def with_pretrained_network(config, log=print):
    """``config``, or a copy whose ``model_kwargs`` build the network torchvision builds for the
    weights ``config.init_from`` names (``transform_input=True`` for googlenet and inception_v3
    from ``torchvision[:WEIGHTS]`` or torchvision's own file), where ``model_kwargs`` does not set
    the field itself. The copy is what the workdir's config.json records, so prediction from the
    run builds the same network."""
    if not config.init_from:
        return config
    extra = {k: v for k, v in convert.network_kwargs(config.model, config.init_from).items()
             if k not in config.model_kwargs}
    if not extra:
        return config
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.model_kwargs.update(extra)
    log(f"init_from {config.init_from}: building {config.model} as torchvision does for these "
        f"weights, with " + ", ".join(f"{k}={v!r}" for k, v in extra.items())
        + " (set --config.model_kwargs to choose otherwise)")
    return config


def initial_variables(config, model, num_classes: int, rng: jax.Array, source: str = "",
                      log=print) -> dict:
    """Random weights, or those in ``source`` (``config.init_from``: a torchvision .pth or
    .safetensors file, a converted directory, or torchvision's pretrained weights by name,
    "torchvision" or "torchvision:IMAGENET1K_V2"), loaded by ``jaxzoo.convert.load`` with its one
    rule for a classifier of another width (torch's ``nn.Linear`` initialization, from ``rng``);
    the key report is printed."""
    if not source:
        return init_variables(model, config.image_size, rng)
    if not convert.catalog.is_pretrained_spec(source) and not os.path.exists(
            os.path.expanduser(source)):
        raise FileNotFoundError(
            f"config.init_from: {source} does not exist (expected a torchvision .pth file, a "
            f"directory written by `python -m jaxzoo convert`, or torchvision's weights by name: "
            f"'torchvision' or 'torchvision:IMAGENET1K_V1')")
    loaded = convert.load(config.model, source, model=model, rng=rng)
    for note in loaded.notes:
        log(f"note: {note}")
    log(f"init_from {loaded.source}: {loaded.report}")
    return dict(loaded.variables)


def create_train_state(config, model, variables: dict, steps_per_epoch: int,
                       rng: jax.Array, mask=None) -> TrainState:
    """The state of step 0: ``variables``, the optimizer of ``config`` over the parameters
    ``mask`` marks as trained (default: ``trainable_mask`` of ``config.trainable``), and ``rng``,
    the base key of dropout."""
    if mask is None:
        mask = trainable_mask(config.model, variables["params"], config.trainable)
    # torchvision's norm-layer parameters, for norm_weight_decay (traced once, abstractly).
    norms = norm_parameters(model, config.image_size) if needs_norms(config) else None
    tx = create_optimizer(config, steps_per_epoch, mask, norms)
    batch_stats = variables.get("batch_stats", {})
    if config.get("model_ema"):
        return EmaTrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                                    batch_stats=batch_stats, rng=rng,
                                    ema=ema.init(variables["params"], batch_stats))
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=batch_stats, rng=rng)
