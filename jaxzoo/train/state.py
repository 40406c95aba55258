"""The train state, the optimizer, and where the initial weights come from."""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util
from flax.training import train_state

from jaxzoo import convert, weights
from jaxzoo.models import create_model, get_spec


class TrainState(train_state.TrainState):
    """flax's TrainState (step, params, opt_state, apply_fn, tx) plus BatchNorm statistics and
    the base key that dropout keys are folded from."""

    batch_stats: Any = None
    rng: jax.Array | None = None


def trainable_mask(model_name: str, params, trainable: str):
    """A pytree of bools shaped like ``params``: True where the parameter is trained.

    ``trainable="head"`` marks only the classifier (the registry's ``head``, torchvision's names,
    e.g. ``fc`` or ``classifier.3``)."""
    if trainable == "all":
        return jax.tree.map(lambda _: True, params)  # any module, registered or not
    if trainable != "head":
        raise ValueError(f'config.trainable must be "all" or "head", got {trainable!r}')
    spec = get_spec(model_name)
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({
        path: spec.is_head(convert.torch_key("params", path, spec.dotted_indices))
        for path in flat})


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate at each step: linear warmup over ``warmup_epochs``, then cosine decay
    to 0 at the end of training."""
    total_steps = max(int(config.num_epochs * steps_per_epoch), 1)
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate, warmup_steps=warmup_steps,
        decay_steps=total_steps, end_value=0.0)


def create_optimizer(config, steps_per_epoch: int, mask) -> optax.GradientTransformation:
    """Adam (AdamW with ``weight_decay``), warmup + cosine, optional clipping; parameters outside
    ``mask`` are frozen and get no optimizer state (``optax.set_to_zero``)."""
    schedule = learning_rate_schedule(config, steps_per_epoch)
    if config.weight_decay:
        # Conv and Linear kernels only: not biases, BatchNorm/LayerNorm scales, layer scales.
        decay_kernels = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
            lambda path, _: path[-1].key == "kernel", params)
        tx = optax.adamw(schedule, weight_decay=config.weight_decay, mask=decay_kernels)
    else:
        tx = optax.adam(schedule)
    if config.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
    labels = jax.tree.map(lambda m: "train" if m else "frozen", mask)
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def initial_variables(config, model, num_classes: int, rng: jax.Array, source: str = "",
                      log=print) -> dict:
    """Random weights, or those in ``source`` (``config.init_from``: a torchvision .pth or a
    converted directory) with the classifier re-initialized when ``num_classes`` differs; the key
    report is printed."""
    size = config.image_size
    init = jax.jit(lambda r: model.init(r, jnp.zeros((1, size, size, 3), jnp.float32), train=False))
    if not source:
        return dict(init(rng))
    if not os.path.exists(source):
        raise FileNotFoundError(f"config.init_from: {source} does not exist (expected a torchvision "
                                f".pth file or a directory written by `python -m jaxzoo convert`)")
    if os.path.isdir(source):
        variables, meta = weights.load_weights(source)
        if meta["model"] != config.model:
            raise ValueError(f"config.init_from: {source} holds {meta['model']} weights, but "
                             f"config.model is {config.model}")
        fresh = traverse_util.flatten_dict(dict(init(rng)))
        loaded = traverse_util.flatten_dict(variables)
        spec = get_spec(config.model)
        swapped = sorted(k for k in fresh if loaded.get(k) is None
                         or loaded[k].shape != fresh[k].shape)
        variables = traverse_util.unflatten_dict(
            {k: fresh[k] if k in swapped else jnp.asarray(loaded[k]) for k in fresh})
        report = convert.LoadReport(
            missing_keys=[convert.torch_key(k[0], k[1:], spec.dotted_indices) for k in swapped],
            unexpected_keys=[])
    else:
        variables, report = convert.load_torch(config.model, source, num_classes=num_classes,
                                               rng=rng, **config.model_kwargs)
    log(f"init_from {source}: {report}")
    return dict(variables)


def create_train_state(config, model, variables: dict, steps_per_epoch: int,
                       rng: jax.Array) -> TrainState:
    mask = trainable_mask(config.model, variables["params"], config.trainable)
    tx = create_optimizer(config, steps_per_epoch, mask)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}), rng=rng)
