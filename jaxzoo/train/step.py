"""The data-parallel train and eval steps: ``jax.jit`` over ``jax.shard_map`` on a 1-D mesh of
every device. Each device sees its slice of the global batch; gradients and metrics are averaged
with ``lax.pmean`` and BatchNorm statistics are synced over the same axis (the model is built
with ``bn_axis_name=AXIS``)."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxzoo import imagenet
from jaxzoo.train import ema as ema_lib
from jaxzoo.train import mixing

AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process)."""
    devices = list(devices) if devices is not None else jax.devices()
    return jax.make_mesh((len(devices),), (AXIS,), devices=devices)


def shard_batch(mesh: jax.sharding.Mesh, batch: dict) -> dict:
    """This process's numpy batch -> global arrays split over the mesh's batch axis."""
    sharding = NamedSharding(mesh, P(AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def replicate(mesh: jax.sharding.Mesh, tree):
    """A copy of ``tree`` on every device (a copy: the train step donates its state)."""
    return jax.device_put(jax.tree.map(np.array, tree), NamedSharding(mesh, P()))


def model_input(images: jax.Array) -> jax.Array:
    """What the model takes: uint8 batches (a quarter of float32's host-to-device bytes) are
    normalized here, on the device; float batches arrive normalized."""
    return imagenet.normalize(images) if images.dtype == jnp.uint8 else images


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing) \
        if label_smoothing else jax.nn.one_hot(labels, num_classes)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def soft_cross_entropy(logits, targets, label_smoothing: float = 0.0):
    """Cross-entropy against soft ``targets`` (MixUp/CutMix), smoothed as torch's
    ``CrossEntropyLoss(label_smoothing=s)`` smooths probability targets:
    ``(1 - s) * targets + s / num_classes``."""
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def make_train_step(model, mesh, *, num_classes: int, aux_loss_weights=(), label_smoothing=0.0,
                    mask=None, frozen_backbone: bool = False, skip_nonfinite: bool = False,
                    mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, ema=None):
    """``train_step(state, batch) -> (state, metrics)``, the state donated.

    ``metrics["finite"]`` is False when the loss or a gradient is NaN or infinite; with
    ``skip_nonfinite`` such a step then leaves the state as it was (but for the step count).

    A model that returns ``(logits, aux, ...)`` in train mode adds ``aux_loss_weights[i] *
    cross_entropy(aux[i])`` to the loss. ``mask`` (True = trained) stops gradients into frozen
    parameters. ``frozen_backbone`` runs the model in inference mode (BatchNorm uses and keeps its
    running statistics; dropout in the head is off too).

    ``mixup_alpha``/``cutmix_alpha`` > 0 mix each device's shard (``jaxzoo.train.mixing``, keys
    from ``mixing.key_for``) and train on the soft targets; the accuracy is then against their
    largest class, as the reference's ``utils.accuracy`` does. ``ema``: the keyword arguments of
    ``jaxzoo.train.ema.update`` (all but the state's pieces); the state's ``ema`` is updated after
    each step."""
    mixes = mixup_alpha > 0 or cutmix_alpha > 0
    aux_loss_weights = tuple(float(w) for w in aux_loss_weights)

    def loss_fn(params, state, images, labels, dropout_rng, targets=None):
        if mask is not None:
            params = jax.tree.map(lambda p, m: p if m else lax.stop_gradient(p), params, mask)
        variables = {"params": params, "batch_stats": state.batch_stats}
        if frozen_backbone:
            outputs, batch_stats = model.apply(variables, images, train=False), state.batch_stats
        else:
            outputs, updates = model.apply(variables, images, train=True, mutable=["batch_stats"],
                                           rngs={"dropout": dropout_rng})
            batch_stats = updates.get("batch_stats", state.batch_stats)  # {} without BatchNorm
        logits, *aux = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        # A frozen backbone runs in inference mode, where GoogLeNet and Inception v3 return no
        # auxiliary outputs: their loss weights have nothing to weigh.
        if len(aux) != len(aux_loss_weights) and not (frozen_backbone and not aux):
            raise ValueError(
                f"the model returns {len(aux)} auxiliary output(s) in train mode but "
                f"config.aux_loss_weights has {len(aux_loss_weights)} weight(s); give one weight "
                f"per auxiliary output")
        if targets is None:
            ce = lambda out: cross_entropy(out, labels, num_classes, label_smoothing)
        else:
            ce = lambda out: soft_cross_entropy(out, targets, label_smoothing)
            labels = jnp.argmax(targets, -1)
        main_loss = ce(logits).mean()
        loss = main_loss
        for weight, aux_logits in zip(aux_loss_weights, aux):
            loss = loss + weight * ce(aux_logits).mean()
        accuracy = (jnp.argmax(logits, -1) == labels).mean()
        return loss, ({"loss": loss, "main_loss": main_loss, "accuracy": accuracy}, batch_stats)

    # On a one-device mesh the gradient needs no averaging, and an all-reduce over one device
    # still copies every gradient: 16% of ResNet-34's step at 32 px. Without the replication
    # check (trivially true on one device) shard_map inserts no collective of its own.
    one_device = mesh.size == 1

    def step(state, batch):
        dropout_rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step),
                                         lax.axis_index(AXIS))
        # The replicated params are marked device-varying, so that each device's gradient is
        # its own; else shard_map sums them over devices already and pmean keeps that sum,
        # device-count times the mean (Adam hides the scale, but not after a resume on another
        # device count, nor gradient clipping).
        params = state.params if one_device else lax.pcast(state.params, AXIS, to="varying")
        images, labels, targets = model_input(batch["image"]), batch["label"], None
        if mixes:  # this device's shard, with this device's draws
            images, targets = mixing.mix_batch(
                mixing.key_for(state.rng, state.step, lax.axis_index(AXIS)), images, labels,
                num_classes=num_classes, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
        grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(
            params, state, images, labels, dropout_rng, targets)
        if not one_device:
            grads = lax.pmean(grads, AXIS)
        metrics = lax.pmean(metrics, AXIS)
        finite = jnp.isfinite(metrics["loss"])
        for g in jax.tree.leaves(grads):
            finite &= jnp.isfinite(g).all()
        new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
        if ema is not None:
            new_state = new_state.replace(ema=ema_lib.update(
                state.ema, new_state.params, new_state.batch_stats, state.step, **ema))
        if skip_nonfinite:  # drop the update (params, optimizer state, BatchNorm statistics)
            kept = state.replace(step=new_state.step)
            new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, kept)
        return new_state, {**metrics, "finite": finite}

    sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()),
                            check_vma=not one_device)
    return jax.jit(sharded, donate_argnums=(0,))


def make_train_step_for_config(config, model, mesh, *, num_classes: int, mask,
                               steps_per_epoch: int | None = None):
    """The train step ``train.py`` runs for ``config``: its auxiliary-loss weights, label
    smoothing, MixUp/CutMix, frozen backbone (``trainable="head"``), non-finite handling and the
    weights' average (``model_ema``: needs ``steps_per_epoch``); ``mask`` is
    ``trainable_mask(...)`` of the params. The optimizer is the state's (``create_train_state``)."""
    ema = None
    if config.get("model_ema", False):
        if not steps_per_epoch:
            raise ValueError("config.model_ema: the train step needs steps_per_epoch")
        ema = {"steps_per_epoch": steps_per_epoch, "every": config.model_ema_steps,
               "decay": ema_lib.adjusted_decay(config), "warmup_epochs": config.warmup_epochs}
    return make_train_step(
        model, mesh, num_classes=num_classes, aux_loss_weights=config.aux_loss_weights,
        label_smoothing=config.label_smoothing, mask=mask,
        frozen_backbone=config.trainable == "head", skip_nonfinite=config.skip_nonfinite,
        mixup_alpha=config.get("mixup_alpha", 0.0), cutmix_alpha=config.get("cutmix_alpha", 0.0),
        ema=ema)


def make_eval_step(model, mesh, *, num_classes: int):
    """``eval_step(state, batch) -> sums`` of correct predictions, loss and counted examples over
    the global batch; examples with ``batch["mask"] == False`` (padding) are not counted."""

    def step(state, batch):
        logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                             model_input(batch["image"]), train=False)
        mask = batch["mask"].astype(jnp.float32)
        loss = cross_entropy(logits, batch["label"], num_classes)
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        sums = {"correct": (correct * mask).sum(), "loss": (loss * mask).sum(),
                "count": mask.sum()}
        return lax.psum(sums, AXIS)

    return jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P()))
