"""Optimizers and learning-rate schedules, with the semantics of torchvision's reference script
(``references/classification/train.py``) under its flags' names.

``config.optimizer``:

* ``adam`` (the default): optax Adam; AdamW when ``weight_decay`` > 0, decaying conv and linear
  kernels only (not biases, norm scales or layer scales). jaxzoo's own choice, unchanged.
* ``adamw``: ``torch.optim.AdamW``: decoupled decay, ``p -= lr * (adam_update + wd * p)``.
* ``sgd`` / ``sgd_nesterov``: ``torch.optim.SGD(momentum=, nesterov=)``. torch's weight decay
  is an L2 term added to the gradient *before* the momentum buffer (``g += wd * p``), not
  decoupled; the buffer starts as the first gradient, and the learning rate multiplies the
  buffer (not the gradient before it), so a schedule changes the step at once.
* ``rmsprop``: ``torch.optim.RMSprop(alpha=0.9, eps=0.0316, momentum=)`` as the reference
  builds it: ``v = alpha v + (1 - alpha) g^2``, ``buf = momentum buf + g / (sqrt(v) + eps)``,
  ``p -= lr buf``. PyTorch adds eps *outside* the square root (TensorFlow and optax's default
  inside) and applies the learning rate after the momentum (``optax.rmsprop`` before it), so
  the chain is written out here.

For ``adamw``, ``sgd*`` and ``rmsprop`` the weight decay applies to every trained parameter, as
torch's does, unless ``norm_weight_decay`` or ``bias_weight_decay`` is set: then parameters of
norm layers (torchvision's ``utils.set_weight_decay``: the parameters of BatchNorm, LayerNorm,
GroupNorm and InstanceNorm modules) and parameters named ``bias`` get those values instead; the
bias rule takes precedence, as in torchvision.

``config.lr_schedule`` (``cosine``, ``step``, ``exponential``, ``constant``) after
``warmup_epochs`` of ``warmup_method`` (``linear`` from ``warmup_decay * lr`` to ``lr``, or
``constant`` at ``warmup_decay * lr``): torch's ``SequentialLR([LinearLR | ConstantLR, main],
milestones=[warmup])`` with ``CosineAnnealingLR(T_max=epochs - warmup, eta_min=lr_min)``,
``StepLR(lr_step_size, lr_gamma)`` or ``ExponentialLR(lr_gamma)``. The reference steps these
once per epoch; here they are evaluated every step, with the epoch as ``step /
steps_per_epoch``, so they equal the reference's at every epoch boundary (``step`` also between
them: it is a staircase) and move smoothly within epochs.
"""
from __future__ import annotations

import jax
import optax
from flax import linen as nn
from flax import traverse_util

from jaxzoo.models import layers
from jaxzoo.models.registry import variable_shapes

OPTIMIZERS = ("adam", "adamw", "sgd", "sgd_nesterov", "rmsprop")
LR_SCHEDULES = ("cosine", "step", "exponential", "constant")
WARMUP_METHODS = ("linear", "constant")
RMSPROP_ALPHA, RMSPROP_EPS = 0.9, 0.0316   # the reference's torch.optim.RMSprop arguments


def check_optimizer_config(config) -> None:
    """One-line errors for optimizer and schedule fields a run cannot use."""
    choices = {"optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES,
               "warmup_method": WARMUP_METHODS}
    for field, allowed in choices.items():
        value = config.get(field, allowed[0])
        if value not in allowed:
            raise ValueError(f"config.{field}={value!r} is not one of {', '.join(allowed)}")
    if config.get("lr_schedule", "cosine") == "step" and config.get("lr_step_size", 1) <= 0:
        raise ValueError(f"config.lr_step_size={config.lr_step_size} must be a positive number "
                         f"of epochs for lr_schedule='step'")
    if not 0.0 <= config.get("warmup_decay", 0.0) <= 1.0:
        raise ValueError(f"config.warmup_decay={config.warmup_decay} must be in [0, 1]: the "
                         f"warmup's starting fraction of the learning rate")


def schedule_steps(config, steps_per_epoch: int) -> tuple[int, int]:
    """``(warmup_steps, total_steps)`` of the run."""
    total_steps = max(int(config.num_epochs * steps_per_epoch), 1)
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1)
    return warmup_steps, total_steps


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate at each step (module docstring). The default config (cosine, linear
    warmup from 0, ``lr_min`` 0) is ``optax.warmup_cosine_decay_schedule``, as before these
    options existed."""
    check_optimizer_config(config)
    lr = config.learning_rate
    warmup_steps, total_steps = schedule_steps(config, steps_per_epoch)
    kind = config.get("lr_schedule", "cosine")
    method = config.get("warmup_method", "linear")
    start = lr * config.get("warmup_decay", 0.0)
    lr_min = config.get("lr_min", 0.0)
    gamma = config.get("lr_gamma", 0.1)
    if kind == "cosine" and method == "linear":
        # LinearLR(start_factor=warmup_decay) then CosineAnnealingLR(T_max=total - warmup,
        # eta_min=lr_min): optax's warmup + cosine is exactly that shape.
        return optax.warmup_cosine_decay_schedule(
            init_value=start, peak_value=lr, warmup_steps=warmup_steps,
            decay_steps=total_steps, end_value=lr_min)
    if kind == "cosine":
        main = optax.cosine_decay_schedule(lr, max(total_steps - warmup_steps, 1),
                                           alpha=lr_min / lr if lr else 0.0)
    elif kind == "step":
        # StepLR(step_size=lr_step_size epochs): a staircase, equal to the reference at every step.
        main = optax.exponential_decay(lr, transition_steps=max(
            int(config.lr_step_size * steps_per_epoch), 1), decay_rate=gamma, staircase=True)
    elif kind == "exponential":
        # ExponentialLR(gamma) per epoch -> gamma ** (step / steps_per_epoch).
        main = optax.exponential_decay(lr, transition_steps=steps_per_epoch, decay_rate=gamma)
    else:
        main = optax.constant_schedule(lr)
    if not warmup_steps:
        return main
    warmup = (optax.linear_schedule(start, lr, warmup_steps) if method == "linear"
              else optax.constant_schedule(start))
    # SequentialLR: the main schedule starts from its own beginning at the milestone.
    return optax.join_schedules([warmup, main], [warmup_steps])


def norm_parameters(model: nn.Module, size: int) -> dict:
    """A pytree of bools shaped like ``model``'s params: True for the parameters of norm layers,
    torchvision's ``set_weight_decay`` definition (its ``norm_classes``: BatchNorm, LayerNorm,
    GroupNorm, InstanceNorm), found by tracing ``model.init`` abstractly and noting which modules
    are norm layers; a layer scale or a conv bias is not a norm parameter."""
    norm_classes = (layers.BatchNorm, nn.BatchNorm, nn.LayerNorm, nn.GroupNorm,
                    nn.InstanceNorm)
    norm_paths = set()

    def note(next_fun, args, kwargs, context):
        if isinstance(context.module, norm_classes) and context.module.scope is not None:
            norm_paths.add(tuple(context.module.scope.path))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(note):
        params = variable_shapes(model, size)["params"]
    flat = traverse_util.flatten_dict(params)
    # scope.path starts with "params"' parent scope: the module names from the top.
    return traverse_util.unflatten_dict({path: tuple(path[:-1]) in norm_paths for path in flat})


def weight_decays(config, params, norms=None):
    """The weight decay of each parameter (a pytree of floats like ``params``) for the torch
    optimizers: ``bias_weight_decay`` for parameters named ``bias`` when set, else
    ``norm_weight_decay`` for norm-layer parameters (``norms``) when set, else
    ``weight_decay``."""
    wd, norm_wd = config.weight_decay, config.get("norm_weight_decay")
    bias_wd = config.get("bias_weight_decay")
    if norm_wd is not None and norms is None:
        raise ValueError("norm_weight_decay needs the norm parameters (norm_parameters(model))")

    def decay(path, is_norm):
        if bias_wd is not None and path[-1].key == "bias":
            return float(bias_wd)
        if norm_wd is not None and is_norm:
            return float(norm_wd)
        return float(wd)

    norms = norms if norms is not None else jax.tree.map(lambda _: False, params)
    return jax.tree_util.tree_map_with_path(decay, norms)


def add_weight_decays(decays) -> optax.GradientTransformation:
    """``g + wd * p`` per parameter, each with its own ``wd`` (``weight_decays``); one
    ``optax.add_decayed_weights`` per distinct value, masked to its parameters."""
    values = sorted(set(jax.tree.leaves(decays)) - {0.0})
    if not values:
        return optax.identity()
    return optax.chain(*[
        optax.add_decayed_weights(value, mask=jax.tree.map(lambda d, v=value: d == v, decays))
        for value in values])


def torch_optimizer(config, schedule, decays) -> optax.GradientTransformation:
    """``adamw``, ``sgd``, ``sgd_nesterov`` or ``rmsprop`` as torch.optim computes them."""
    name, momentum = config.optimizer, config.get("momentum", 0.9)
    if name == "adamw":
        # torch.optim.AdamW's defaults: betas (0.9, 0.999), eps 1e-8 outside the square root.
        return optax.chain(optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
                           add_weight_decays(decays), optax.scale_by_learning_rate(schedule))
    if name in ("sgd", "sgd_nesterov"):
        nesterov = name == "sgd_nesterov"
        if nesterov and not momentum:
            raise ValueError("config.optimizer='sgd_nesterov' needs config.momentum > 0 (torch: "
                             "'Nesterov momentum requires a momentum and zero dampening')")
        return optax.chain(add_weight_decays(decays),
                           optax.trace(decay=momentum, nesterov=nesterov) if momentum
                           else optax.identity(),
                           optax.scale_by_learning_rate(schedule))
    if name == "rmsprop":
        return optax.chain(add_weight_decays(decays),
                           optax.scale_by_rms(decay=RMSPROP_ALPHA, eps=RMSPROP_EPS,
                                              eps_in_sqrt=False),
                           optax.trace(decay=momentum) if momentum else optax.identity(),
                           optax.scale_by_learning_rate(schedule))
    raise ValueError(f"config.optimizer={name!r} is not one of {', '.join(OPTIMIZERS)}")


def create_optimizer(config, steps_per_epoch: int, mask, norms=None
                     ) -> optax.GradientTransformation:
    """The optimizer ``config`` names with its schedule, optional clipping; parameters outside
    ``mask`` are frozen and get no optimizer state (``optax.set_to_zero``). ``norms``
    (``norm_parameters``) is needed only with ``norm_weight_decay``."""
    schedule = learning_rate_schedule(config, steps_per_epoch)
    if config.get("optimizer", "adam") == "adam":
        if config.weight_decay:
            # Conv and Linear kernels only: not biases, BatchNorm/LayerNorm scales, layer scales.
            decay_kernels = lambda params: jax.tree_util.tree_map_with_path(
                lambda path, _: path[-1].key == "kernel", params)
            tx = optax.adamw(schedule, weight_decay=config.weight_decay, mask=decay_kernels)
        else:
            tx = optax.adam(schedule)
    else:
        tx = torch_optimizer(config, schedule, weight_decays(config, mask, norms))
    if config.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
    labels = jax.tree.map(lambda m: "train" if m else "frozen", mask)
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def needs_norms(config) -> bool:
    """Whether ``create_optimizer`` needs ``norm_parameters`` for ``config``."""
    return config.get("optimizer", "adam") != "adam" and \
        config.get("norm_weight_decay") is not None

