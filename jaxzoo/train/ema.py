"""The model's exponential moving average, as torchvision's reference script keeps it
(``--model-ema``: ``utils.ExponentialMovingAverage``, a ``torch.optim.swa_utils.AveragedModel``
with ``use_buffers=True``).

* What is averaged: the parameters and the BatchNorm running statistics alike (the buffers),
  in float32: ``ema = decay * ema + (1 - decay) * model``.
* When: after the optimizer step of every batch whose index within its epoch is a multiple of
  ``model_ema_steps`` (the reference's ``i % args.model_ema_steps == 0``: the count restarts
  each epoch).
* The decay, adjusted for the batch and the number of updates as the reference does
  (``adjust = world_size * batch_size * model_ema_steps / epochs``, ``alpha = min(1, (1 -
  model_ema_decay) * adjust)``, ``decay = 1 - alpha``): ``world_size * batch_size`` is the global
  batch here.
* AveragedModel's first update copies the model (``n_averaged == 0``), and during the warmup
  epochs (``epoch < lr_warmup_epochs``, the 0-based epoch) the reference resets ``n_averaged``
  to 0 after each update, so the average copies the model until the first update after them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def adjusted_decay(config) -> float:
    """The decay the reference uses for ``config``'s ``model_ema_decay``, global batch,
    ``model_ema_steps`` and epochs."""
    adjust = config.batch_size * config.model_ema_steps / config.num_epochs
    alpha = min(1.0, (1.0 - config.model_ema_decay) * adjust)
    return 1.0 - alpha


def init(params, batch_stats) -> dict:
    """The average at the start: a float32 copy of the model (AveragedModel deep-copies it) and
    ``n_averaged = 0``."""
    copy = lambda tree: jax.tree.map(lambda x: jnp.array(x, jnp.float32), tree)
    return {"params": copy(params), "batch_stats": copy(batch_stats),
            "n_averaged": jnp.zeros((), jnp.int32)}


def average(ema: dict, params, batch_stats, decay: float) -> dict:
    """``AveragedModel.update_parameters``: a copy when nothing was averaged yet, else
    ``decay * ema + (1 - decay) * model`` for parameters and statistics; ``n_averaged + 1``."""
    first = ema["n_averaged"] == 0

    def blend(avg, new):
        new = new.astype(jnp.float32)
        return jnp.where(first, new, decay * avg + (1.0 - decay) * new)

    return {"params": jax.tree.map(blend, ema["params"], params),
            "batch_stats": jax.tree.map(blend, ema["batch_stats"], batch_stats),
            "n_averaged": ema["n_averaged"] + 1}


def update(ema: dict, params, batch_stats, step, *, steps_per_epoch: int, every: int,
           decay: float, warmup_epochs: float) -> dict:
    """The average after global step ``step`` (0-based: the step just applied): averaged when
    its index within the epoch is a multiple of ``every``, and ``n_averaged`` reset during the
    warmup epochs, as the reference's ``train_one_epoch`` does."""
    epoch, position = step // steps_per_epoch, step % steps_per_epoch

    def averaged(ema):
        new = average(ema, params, batch_stats, decay)
        in_warmup = epoch < warmup_epochs
        return {**new, "n_averaged": jnp.where(in_warmup, 0, new["n_averaged"])}

    return lax.cond(position % every == 0, averaged, lambda ema: ema, ema)


def as_state(state):
    """``state`` with the average in place of the weights and statistics: what the eval step
    evaluates for ``ema_val_accuracy`` (the same shapes and dtypes, so the same compiled step)."""
    return state.replace(params=state.ema["params"], batch_stats=state.ema["batch_stats"])
