"""Optimizers, schedules and weight-decay groups (jaxzoo.train.optim) against torch.optim, torch's
schedulers and the reference script's ``set_weight_decay``."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import torch
import torchvision
from flax import traverse_util

from jaxzoo import convert, create_model
from jaxzoo.models import get_spec
from jaxzoo.train import optim
from jaxzoo.train.state import create_optimizer as create_optimizer_from_state


def _config(**fields):
    config = ml_collections.ConfigDict({
        "learning_rate": 0.1, "num_epochs": 10, "warmup_epochs": 0.0, "weight_decay": 0.0,
        "grad_clip_norm": 0.0, "optimizer": "adam", "momentum": 0.9, "norm_weight_decay": None,
        "bias_weight_decay": None, "lr_schedule": "cosine", "lr_step_size": 30,
        "lr_gamma": 0.1, "lr_min": 0.0, "warmup_method": "linear", "warmup_decay": 0.0})
    config.update(fields)
    return config


# --- schedules --------------------------------------------------------------------------------

def _reference_scheduler(optimizer, config):
    """The reference script's scheduler for ``config``, in epochs (train.py's main)."""
    sched = torch.optim.lr_scheduler
    warmup = int(config.warmup_epochs)
    if config.lr_schedule == "step":
        main = sched.StepLR(optimizer, step_size=config.lr_step_size, gamma=config.lr_gamma)
    elif config.lr_schedule == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=config.num_epochs - warmup,
                                       eta_min=config.lr_min)
    elif config.lr_schedule == "exponential":
        main = sched.ExponentialLR(optimizer, gamma=config.lr_gamma)
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warmup:
        return main
    if config.warmup_method == "linear":
        first = sched.LinearLR(optimizer, start_factor=config.warmup_decay, total_iters=warmup)
    else:
        first = sched.ConstantLR(optimizer, factor=config.warmup_decay, total_iters=warmup)
    return sched.SequentialLR(optimizer, schedulers=[first, main], milestones=[warmup])


SCHEDULES = [
    {"lr_schedule": "step", "lr_step_size": 3, "lr_gamma": 0.5},
    {"lr_schedule": "exponential", "lr_gamma": 0.8},
    {"lr_schedule": "cosine", "lr_min": 0.01, "warmup_epochs": 2, "warmup_decay": 0.1},
    {"lr_schedule": "cosine", "warmup_epochs": 2, "warmup_method": "constant",
     "warmup_decay": 0.25},
    {"lr_schedule": "step", "lr_step_size": 2, "lr_gamma": 0.3, "warmup_epochs": 3,
     "warmup_decay": 0.01},
    {"lr_schedule": "exponential", "lr_gamma": 0.9, "warmup_epochs": 1, "warmup_decay": 0.5,
     "warmup_method": "constant"},
    {"lr_schedule": "constant", "warmup_epochs": 2, "warmup_decay": 0.2},
]


@pytest.mark.parametrize("fields", SCHEDULES, ids=lambda f: "-".join(map(str, f.values())))
def test_schedules_equal_the_references_per_epoch_schedulers_at_epoch_boundaries(fields):
    config = _config(**fields)
    steps_per_epoch = 3
    schedule = optim.learning_rate_schedule(config, steps_per_epoch)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.learning_rate)
    scheduler = _reference_scheduler(optimizer, config)
    ours, theirs = [], []
    for epoch in range(config.num_epochs):
        ours.append(float(schedule(epoch * steps_per_epoch)))
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-8)
    assert len(set(np.round(theirs, 9))) > 2  # the schedule moves
    if config.lr_schedule == "step":  # after the warmup a staircase: equal within epochs too
        first = int(config.warmup_epochs) * steps_per_epoch
        within = [float(schedule(s)) for s in range(config.num_epochs * steps_per_epoch)]
        np.testing.assert_allclose(within[first:], np.repeat(theirs, steps_per_epoch)[first:],
                                   rtol=1e-5)


def test_the_default_schedule_is_todays_warmup_cosine():
    config = _config(warmup_epochs=1.5, num_epochs=3, learning_rate=3e-4)
    expected = optax.warmup_cosine_decay_schedule(0.0, 3e-4, 6, 12, 0.0)
    schedule = optim.learning_rate_schedule(config, 4)
    for step in range(15):
        assert float(schedule(step)) == float(expected(step))  # bit for bit


def test_unknown_names_are_one_line_errors():
    for field, value in [("optimizer", "lamb"), ("lr_schedule", "onecycle"),
                         ("warmup_method", "exp")]:
        with pytest.raises(ValueError, match=f"config.{field}='{value}' is not one of"):
            optim.learning_rate_schedule(_config(**{field: value}), 10)


# --- optimizers -------------------------------------------------------------------------------

def _tree(rng):
    return {"conv": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
                     "bias": rng.standard_normal(4).astype(np.float32)},
            "bn": {"scale": rng.standard_normal(4).astype(np.float32),
                   "bias": rng.standard_normal(4).astype(np.float32)},
            "fc": {"kernel": rng.standard_normal((4, 3)).astype(np.float32)}}


NORMS = {"conv": {"kernel": False, "bias": False}, "bn": {"scale": True, "bias": True},
         "fc": {"kernel": False}}


def _torch_optimizer(config, tensors):
    """The reference script's optimizer over parameter groups split as set_weight_decay does."""
    groups = {}
    for path, tensor in tensors.items():
        if config.bias_weight_decay is not None and path[-1] == "bias":
            wd = config.bias_weight_decay
        elif config.norm_weight_decay is not None and path[0] == "bn":
            wd = config.norm_weight_decay
        else:
            wd = config.weight_decay
        groups.setdefault(wd, []).append(tensor)
    parameters = [{"params": p, "weight_decay": wd} for wd, p in groups.items()]
    lr, momentum = config.learning_rate, config.momentum
    if config.optimizer.startswith("sgd"):
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum,
                               weight_decay=config.weight_decay,
                               nesterov="nesterov" in config.optimizer)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, momentum=momentum,
                                   weight_decay=config.weight_decay, eps=0.0316, alpha=0.9)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=config.weight_decay)


OPTIMIZERS = [
    {"optimizer": "sgd", "weight_decay": 1e-2},
    {"optimizer": "sgd_nesterov", "weight_decay": 1e-2, "norm_weight_decay": 0.0},
    {"optimizer": "sgd", "momentum": 0.0, "weight_decay": 1e-3, "bias_weight_decay": 0.0},
    {"optimizer": "rmsprop", "learning_rate": 0.01, "weight_decay": 1e-2,
     "norm_weight_decay": 0.0},
    {"optimizer": "rmsprop", "learning_rate": 0.01, "momentum": 0.0},
    {"optimizer": "adamw", "learning_rate": 0.01, "weight_decay": 0.05, "norm_weight_decay": 0.0,
     "bias_weight_decay": 0.001},
]


@pytest.mark.parametrize("fields", OPTIMIZERS, ids=lambda f: "-".join(map(str, f.values())))
def test_optimizers_equal_torch_optim_step_by_step(fields):
    """Eight steps under a step schedule with a warmup (so the learning rate changes between
    steps and its place relative to the momentum matters), one step per epoch: every parameter
    within 1e-6 of torch's (relative to its scale) after every step."""
    config = _config(lr_schedule="step", lr_step_size=2, lr_gamma=0.5, warmup_epochs=2,
                     warmup_decay=0.1, num_epochs=8, **fields)
    rng = np.random.default_rng(0)
    initial = _tree(rng)
    flat = traverse_util.flatten_dict(initial)
    tensors = {path: torch.tensor(value, requires_grad=True) for path, value in flat.items()}
    optimizer = _torch_optimizer(config, tensors)
    scheduler = _reference_scheduler(optimizer, config)

    mask = jax.tree.map(lambda _: True, initial)
    tx = optim.create_optimizer(config, 1, mask, NORMS)
    params = jax.tree.map(jnp.asarray, initial)
    opt_state = tx.init(params)
    for step in range(8):
        grads = {path: rng.standard_normal(value.shape).astype(np.float32)
                 for path, value in flat.items()}
        for path, tensor in tensors.items():
            tensor.grad = torch.from_numpy(grads[path])
        optimizer.step()
        scheduler.step()
        updates, opt_state = tx.update(traverse_util.unflatten_dict(grads), opt_state, params)
        params = optax.apply_updates(params, updates)
        ours = traverse_util.flatten_dict(params)
        for path, tensor in tensors.items():
            theirs = tensor.detach().numpy()
            scale = np.abs(theirs).max()
            np.testing.assert_allclose(ours[path], theirs, atol=1e-6 * scale, rtol=0,
                                       err_msg=f"{path} after step {step}")
    moved = max(np.abs(ours[p] - flat[p]).max() for p in flat)
    assert moved > 1e-2, moved


def test_frozen_parameters_get_no_decay_and_no_state():
    config = _config(optimizer="sgd", weight_decay=0.1)
    initial = jax.tree.map(jnp.asarray, _tree(np.random.default_rng(1)))
    mask = {"conv": {"kernel": False, "bias": False}, "bn": {"scale": False, "bias": False},
            "fc": {"kernel": True}}
    tx = optim.create_optimizer(config, 1, mask)
    state = tx.init(initial)
    grads = jax.tree.map(jnp.ones_like, initial)
    updates, _ = tx.update(grads, state, initial)
    assert float(jnp.abs(updates["conv"]["kernel"]).max()) == 0.0
    assert float(jnp.abs(updates["fc"]["kernel"]).max()) > 0.0


def test_state_module_still_exports_create_optimizer():
    assert create_optimizer_from_state is optim.create_optimizer


# --- which parameters are norms ----------------------------------------------------------------

def set_weight_decay(model, weight_decay, norm_weight_decay=None, norm_classes=None,
                     custom_keys_weight_decay=None):
    """torchvision's references/classification/utils.py set_weight_decay (not installed), returning
    parameter names instead of tensors."""
    if not norm_classes:
        norm_classes = [
            torch.nn.modules.batchnorm._BatchNorm,
            torch.nn.LayerNorm,
            torch.nn.GroupNorm,
            torch.nn.modules.instancenorm._InstanceNorm,
            torch.nn.LocalResponseNorm,
        ]
    norm_classes = tuple(norm_classes)
    params = {"other": [], "norm": []}
    params_weight_decay = {"other": weight_decay, "norm": norm_weight_decay}
    custom_keys = []
    if custom_keys_weight_decay is not None:
        for key, key_weight_decay in custom_keys_weight_decay:
            params[key] = []
            params_weight_decay[key] = key_weight_decay
            custom_keys.append(key)

    def _add_params(module, prefix=""):
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_custom_key = False
            for key in custom_keys:
                target_name = f"{prefix}.{name}" if prefix != "" and "." in key else name
                if key == target_name:
                    params[key].append(f"{prefix}.{name}" if prefix else name)
                    is_custom_key = True
                    break
            if not is_custom_key:
                if norm_weight_decay is not None and isinstance(module, norm_classes):
                    params["norm"].append(f"{prefix}.{name}" if prefix else name)
                else:
                    params["other"].append(f"{prefix}.{name}" if prefix else name)
        for child_name, child_module in module.named_children():
            child_prefix = f"{prefix}.{child_name}" if prefix != "" else child_name
            _add_params(child_module, prefix=child_prefix)

    _add_params(model)
    return {name: params_weight_decay[key] for key in params for name in params[key]}


@pytest.mark.parametrize("name", ["resnet18", "convnext_tiny", "mobilenet_v3_small"])
def test_weight_decay_groups_are_set_weight_decays(name):
    """norm_weight_decay 0 and bias_weight_decay 1e-3 over weight_decay 0.05: each parameter's
    decay equals the reference's for torchvision's model (ConvNeXt's layer scales are not
    norms; its LayerNorms are)."""
    config = _config(optimizer="adamw", weight_decay=0.05, norm_weight_decay=0.0,
                     bias_weight_decay=1e-3)
    model = create_model(name, num_classes=10)
    norms = optim.norm_parameters(model, 32)
    decays = optim.weight_decays(config, norms, norms)
    spec = get_spec(name)
    ours = {convert.torch_key("params", path, spec.dotted_indices): value
            for path, value in traverse_util.flatten_dict(decays).items()}
    theirs = set_weight_decay(getattr(torchvision.models, name)(num_classes=10), 0.05,
                              norm_weight_decay=0.0, custom_keys_weight_decay=[("bias", 1e-3)])
    assert ours == theirs
    assert set(theirs.values()) == {0.0, 1e-3, 0.05}


# --- training parity: the trainer's step beside the reference's torch training ----------------

def _parity(sets, steps=3, reference="none", **kwargs):
    from jaxzoo.train import parity

    lines = []
    result = parity.run("resnet18", parity.load_config("resnet18", None, sets), steps=steps,
                        size=32, batch=4, reference=reference, log=lines.append, **kwargs)
    print("\n".join(lines))
    print(parity.report(result))
    return result, "\n".join(lines)


@pytest.mark.slow  # about 50 s on 2 busy cores: a resnet18 train step compiles
def test_parity_sgd_nesterov_exponential_mixing_and_ema():
    """SGD-Nesterov with norm weight decay 0, the exponential schedule (the lr changes every
    step), label smoothing, MixUp/CutMix on the same draws and the EMA updated every step: the
    losses, weights, statistics and averages within the fixed tolerances of the reference's
    torch training."""
    result, text = _parity(["optimizer=sgd_nesterov", "weight_decay=1e-4",
                            "norm_weight_decay=0.0", "label_smoothing=0.1", "model_ema=True",
                            "model_ema_steps=1", "model_ema_decay=0.99", "num_epochs=1",
                            "warmup_epochs=0", "mixup_alpha=0.2", "cutmix_alpha=1.0",
                            "learning_rate=1e-4", "lr_schedule=exponential", "lr_gamma=0.5"])
    assert result.verdict() == "PASS"
    assert result.diff.updates < 0.1 and result.weight_change > 1e-3
    assert result.ema_diff is not None and result.ema_diff.within(loss=float("inf"))
    np.testing.assert_allclose(result.learning_rates, [1e-4, 1e-4 * 0.5 ** (1 / 3),
                                                       1e-4 * 0.5 ** (2 / 3)], rtol=1e-6)
    assert "SGD (momentum 0.9)" in text and "ExponentialLR" in text
    assert "v2 MixUp / CutMix" in text and "AveragedModel(use_buffers=True)" in text
    # The average moved away from the weights (decay 1 - 0.01 * 32 = 0.68), not a copy.
    ema, weights = result.states["jaxzoo_ema"], result.states["jaxzoo"]
    assert max(np.abs(ema[k] - weights[k]).max() for k in weights if k.endswith("weight")) > 0


@pytest.mark.slow
@pytest.mark.parametrize("sets", [
    ["optimizer=rmsprop", "learning_rate=1e-4", "weight_decay=1e-5", "lr_schedule=step",
     "lr_step_size=1", "lr_gamma=0.5", "num_epochs=4", "warmup_epochs=1",
     "warmup_decay=0.1"],
    ["optimizer=adamw", "learning_rate=3e-4", "weight_decay=0.05", "norm_weight_decay=0.0",
     "bias_weight_decay=0.0", "lr_schedule=cosine", "lr_min=1e-5", "num_epochs=3",
     "warmup_epochs=1", "warmup_method=constant", "warmup_decay=0.5"],
    ["optimizer=sgd", "learning_rate=1e-4", "weight_decay=1e-4", "lr_schedule=constant",
     "warmup_epochs=1", "warmup_decay=0.01", "num_epochs=3"],
], ids=["rmsprop-step-linear", "adamw-cosine-constant", "sgd-constant"])
def test_parity_other_optimizers_and_schedules(sets):
    """Two-step epochs, so the warmup ends and the main schedule starts within the run. AdamW
    amplifies float32 rounding in its early steps (README, "Training parity with PyTorch"): it
    may need the float64 reference."""
    result, _ = _parity(sets, steps=4, steps_per_epoch=2, reference="auto")
    assert result.ok(), result.diff
    assert result.weight_change > 1e-3
