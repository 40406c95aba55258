"""Training parity with PyTorch: the step ``train.py`` runs beside its PyTorch equivalent.

From the same initial weights (a torchvision model with random weights and randomized BatchNorm
statistics, converted with ``from_torch``) and the same N seeded batches, jaxzoo's own train step,
built as the trainer builds it (``jaxzoo.train.recipe.build_training`` on ``make_mesh()``: every
device JAX sees, the batch split over them), runs beside the torchvision model trained with
``torch.optim``. Each step's loss is compared, and at the end every weight and every BatchNorm
running statistic.

Where the two libraries do not map one to one, the torch side is the one that does what jaxzoo
does (``mapping`` lists the choices; the README's "Training parity with PyTorch" has the table):

* ``config.weight_decay`` is decoupled and applies to kernels only (``optax.adamw`` with a
  ``ndim > 1`` mask): ``torch.optim.AdamW`` with two parameter groups, not ``torch.optim.Adam``'s
  ``weight_decay`` (an L2 term added to the gradient before the moments).
* epsilon: both add it to the square root of the bias-corrected second moment,
  ``m_hat / (sqrt(v_hat) + eps)`` (optax's ``eps_root`` is 0); torch folds the bias corrections
  into the step size, which is the same quantity.
* the schedule: optax's ``warmup_cosine_decay_schedule`` is evaluated per step, so the torch side
  is a ``LambdaLR`` stepped after every optimizer step with the same formula (not per epoch).
* torchvision's reference options (``jaxzoo.train.optim``, ``mixing``, ``ema``): the torch side
  is the reference script's own choice: ``torch.optim.SGD``/``RMSprop``/``AdamW`` over the
  parameter groups of its ``set_weight_decay`` (norm layers by module class, ``bias`` by name);
  its schedulers (``LinearLR``/``ConstantLR`` warmup in ``SequentialLR`` before ``StepLR``,
  ``ExponentialLR`` or ``CosineAnnealingLR``) counted in steps, as jaxzoo evaluates them per
  step (``StepLR(step_size=lr_step_size * steps_per_epoch)``, ``ExponentialLR(gamma **
  (1 / steps_per_epoch))``); transforms.v2 ``MixUp``/``CutMix`` on each device's share of the
  batch, fed jaxzoo's draws for that device and step; the average of the weights as the
  reference's ``ExponentialMovingAverage`` (``AveragedModel(use_buffers=True)``) with its update
  rule, compared like the weights.
* ``trainable="head"``: the backbone gets ``optax.set_to_zero`` and the model runs in inference
  mode; torch freezes the same parameters (``requires_grad_(False)``), optimizes the head only and
  puts the model in ``eval()``.
* dropout is off on both sides (``dropout=0``, ``dropout_aux=0``), so the two compute the same
  function without sharing random masks.

Measured in float32 with the highest matmul precision, against fixed tolerances: each step's loss
within ``LOSS_TOLERANCE``, each weight tensor's largest difference under ``WEIGHT_TOLERANCE`` of
its largest magnitude, each running statistic's within ``STATS_TOLERANCE``. Adam moves a weight by
about the learning rate whatever the size of its gradient, so an element whose gradient is zero up
to rounding may step either way on the two sides (``Difference.elements_over`` counts the elements
that differ by more than ``ELEMENT_TOLERANCE`` of a step at the peak learning rate), and a
pre-activation within rounding of zero may pass a ReLU on one side only; over steps the networks
then drift apart by more than the fixed tolerances, torch from itself as much as jaxzoo from
torch. So when the fixed tolerances are not met, torch trains again in float64 from the same start
(``reference``): the check then passes when jaxzoo is no further from that float64 run than
``FLOOR_FACTOR`` times torch's own float32 run is (the float32 floor).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxzoo.convert.parity import randomize_, torchvision_model
from jaxzoo.convert.torchvision import from_torch, to_torch
from jaxzoo.models.registry import create_model, get_spec
from jaxzoo.train import configs, mixing
from jaxzoo.train import ema as ema_lib
from jaxzoo.train.recipe import build_training
from jaxzoo.train.step import make_mesh, shard_batch

LOSS_TOLERANCE = 1e-4      # per step, relative to torch's loss
STATS_TOLERANCE = 1e-3     # per running-statistic tensor, relative to its largest magnitude
WEIGHT_TOLERANCE = 1e-2    # per weight tensor, relative to its largest magnitude
ELEMENT_TOLERANCE = 0.1    # an element differs when by more than this fraction of a peak-lr step
FLOOR_FACTOR = 10.0        # beyond the fixed tolerances: this many times torch's own float32 error
DROPOUT_FIELDS = ("dropout", "dropout_aux")


@dataclasses.dataclass
class Difference:
    """How far one run's losses and final weights are from another's."""

    losses: list[float]         # per step, |a - b| / |b|
    weights: float              # max over weight tensors of max|a - b| / max|b|
    weights_worst: str
    elements_over: int          # weight elements with |a - b| > ELEMENT_TOLERANCE * peak lr
    elements_over_tensor: int   # weight elements with |a - b| >= WEIGHT_TOLERANCE * max|b|
    elements: int
    stats: float                # max over running-statistic tensors of max|a - b| / max|b|
    stats_worst: str
    updates: float              # ||a - b|| / ||b - initial|| over every weight element
    element_threshold: float    # ELEMENT_TOLERANCE * peak lr

    @property
    def loss(self) -> float:
        return max(self.losses, default=0.0)

    def within(self, loss: float = LOSS_TOLERANCE, weights: float = WEIGHT_TOLERANCE,
               stats: float = STATS_TOLERANCE) -> bool:
        return self.loss <= loss and self.weights < weights and self.stats <= stats

    def describe(self, indent: str = "  ") -> str:
        return "\n".join([
            (f"{indent}losses: largest relative difference {self.loss:.2e} (tolerance "
             f"{LOSS_TOLERANCE:g} per step)"),
            (f"{indent}weights: largest difference {self.weights:.2e} of the tensor's largest "
             f"magnitude ({self.weights_worst}; tolerance {WEIGHT_TOLERANCE:g} per tensor); "
             f"{self.elements_over:,} of {self.elements:,} elements differ by more than "
             f"{self.element_threshold:.1e} ({ELEMENT_TOLERANCE:g} of a peak-lr step), "
             f"{self.elements_over_tensor:,} by more than the tolerance of their tensor"),
            (f"{indent}updates: the weights' changes differ by {self.updates:.2e} of their norm "
             f"(for information)"),
            (f"{indent}running statistics: largest difference {self.stats:.2e} of the tensor's "
             f"largest magnitude ({self.stats_worst or '-'}; tolerance {STATS_TOLERANCE:g})"),
        ])


def compare(ours: dict, theirs: dict, initial: dict, params, our_losses, their_losses,
            peak_lr: float) -> Difference:
    """``ours`` against ``theirs`` (torch state dicts as numpy arrays, both trained from
    ``initial``; ``params``: the keys of weights, the rest but ``num_batches_tracked`` being
    running statistics)."""
    weights, weights_worst, over, over_tensor, elements = 0.0, "", 0, 0, 0
    diff_sq, moved_sq = 0.0, 0.0
    stats, stats_worst = 0.0, ""
    for key, value in theirs.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key not in ours:
            raise ValueError(f"no {key} in the compared state")
        value = np.asarray(value, np.float64)
        diff = np.abs(np.asarray(ours[key], np.float64) - value)
        scale = max(float(np.abs(value).max()), 1e-12)
        rel = float(diff.max()) / scale
        if key in params:
            elements += value.size
            over += int((diff > ELEMENT_TOLERANCE * peak_lr).sum())
            over_tensor += int((diff >= WEIGHT_TOLERANCE * scale).sum())
            diff_sq += float(np.square(diff).sum())
            moved_sq += float(np.square(value - initial[key]).sum())
            if rel >= weights:
                weights, weights_worst = rel, key
        elif rel >= stats:
            stats, stats_worst = rel, key
    losses = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(our_losses, their_losses)]
    updates = math.sqrt(diff_sq / moved_sq) if moved_sq else (math.inf if diff_sq else 0.0)
    return Difference(losses, weights, weights_worst, over, over_tensor, elements, stats,
                      stats_worst, updates, ELEMENT_TOLERANCE * peak_lr)


@dataclasses.dataclass
class TrainParityResult:
    model: str
    devices: int
    mapping: list[str]
    learning_rates: list[float]
    jax_losses: list[float]
    torch_losses: list[float]
    diff: Difference                 # jaxzoo against torch (float32)
    weight_change: float             # max over tensors of max|final - initial| / max|initial|
    seconds: float
    states: dict | None = None       # "initial", "jaxzoo", "torch": torch state dicts (numpy)
    grad_norms: list[float] | None = None  # torch's global gradient norm before clipping
    reference_losses: list[float] | None = None  # torch in float64
    jax_vs_reference: Difference | None = None
    torch_vs_reference: Difference | None = None  # the float32 floor
    ema_diff: Difference | None = None            # the weights' averages (model_ema)
    ema_vs_reference: Difference | None = None    # jaxzoo's average against torch's in float64

    def ema_ok(self) -> bool:
        """The averages agree as the weights must: within the fixed tolerances, or as close to
        torch's float64 average as the float32 floor allows the weights."""
        if self.ema_diff is None or self.ema_diff.within(loss=math.inf):
            return True
        ours, floor = self.ema_vs_reference, self.torch_vs_reference
        return (ours is not None and floor is not None
                and ours.weights < max(WEIGHT_TOLERANCE, FLOOR_FACTOR * floor.weights)
                and ours.stats <= max(STATS_TOLERANCE, FLOOR_FACTOR * floor.stats))

    def within_floor(self) -> bool:
        """Whether jaxzoo is about as close to the float64 reference as torch's own float32 run
        is: the largest loss difference over the steps, the weights' and the statistics', each
        within its fixed tolerance or ``FLOOR_FACTOR`` times torch's. (Over the whole run, not
        step by step: when the two drift apart, from one step on, is itself down to chance.)"""
        ours, floor = self.jax_vs_reference, self.torch_vs_reference
        if ours is None or floor is None:
            return False
        return (ours.loss <= max(LOSS_TOLERANCE, FLOOR_FACTOR * floor.loss)
                and ours.weights < max(WEIGHT_TOLERANCE, FLOOR_FACTOR * floor.weights)
                and ours.stats <= max(STATS_TOLERANCE, FLOOR_FACTOR * floor.stats))

    def verdict(self) -> str:
        if not self.ema_ok():
            return "FAIL"
        if self.diff.within():
            return "PASS"
        if self.within_floor():
            return "PASS (within the float32 floor: not within the fixed tolerances, but no " \
                   f"further from torch in float64 than {FLOOR_FACTOR:g}x torch's own float32 run)"
        return "FAIL"

    def ok(self) -> bool:
        return self.verdict().startswith("PASS")


def lr_schedule(config, steps_per_epoch: int) -> tuple[int, int, Callable[[int], float]]:
    """``(warmup_steps, total_steps, factor)``: the steps of ``create_optimizer``'s
    ``optax.warmup_cosine_decay_schedule(0, lr, warmup, total, 0)`` and its value at a step as a
    fraction of ``config.learning_rate``, in float64: ``step / warmup`` during the warmup, then
    ``0.5 * (1 + cos(pi * min(step - warmup, total - warmup) / (total - warmup)))``."""
    total = max(int(config.num_epochs * steps_per_epoch), 1)
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        t = min(step - warmup, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * t / (total - warmup)))

    return warmup, total, factor


def uses_reference_schedulers(config) -> bool:
    """Whether ``config``'s schedule needs the reference's schedulers (anything but the default
    warmup from 0 + cosine to 0, which ``lr_schedule``'s ``LambdaLR`` gives)."""
    return not (config.get("lr_schedule", "cosine") == "cosine"
                and config.get("warmup_method", "linear") == "linear"
                and not config.get("warmup_decay", 0.0) and not config.get("lr_min", 0.0))


def reference_param_groups(model, config) -> list[dict]:
    """The reference script's parameter groups (``utils.set_weight_decay``): parameters named
    ``bias`` at ``bias_weight_decay`` when set, else those of norm modules at
    ``norm_weight_decay`` when set, else ``weight_decay``; frozen parameters left out."""
    import torch

    norm_classes = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm,
                    torch.nn.GroupNorm, torch.nn.modules.instancenorm._InstanceNorm,
                    torch.nn.LocalResponseNorm)
    norm_wd, bias_wd = config.get("norm_weight_decay"), config.get("bias_weight_decay")
    groups: dict[float, list] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if bias_wd is not None and name == "bias":
                wd = bias_wd
            elif norm_wd is not None and isinstance(module, norm_classes):
                wd = norm_wd
            else:
                wd = config.weight_decay
            groups.setdefault(float(wd), []).append(p)
    return [{"params": p, "weight_decay": wd} for wd, p in groups.items()]


def reference_optimizer(model, config):
    """``torch.optim`` as the reference script builds it for ``config.optimizer``."""
    import torch

    groups, lr = reference_param_groups(model, config), float(config.learning_rate)
    name, wd, momentum = config.optimizer, float(config.weight_decay), float(config.momentum)
    if name.startswith("sgd"):
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=wd,
                               nesterov="nesterov" in name)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=momentum, weight_decay=wd,
                                   eps=0.0316, alpha=0.9)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    raise ValueError(f"no reference optimizer {name!r}")


def reference_scheduler(optimizer, config, steps_per_epoch: int):
    """The reference script's scheduler for ``config``, counted in steps (see the module
    docstring), stepped after every optimizer step."""
    import torch

    sched = torch.optim.lr_scheduler
    warmup, total, _ = lr_schedule(config, steps_per_epoch)
    kind, gamma = config.lr_schedule, float(config.lr_gamma)
    if kind == "step":
        main = sched.StepLR(optimizer, step_size=max(int(config.lr_step_size * steps_per_epoch),
                                                     1), gamma=gamma)
    elif kind == "exponential":
        main = sched.ExponentialLR(optimizer, gamma=gamma ** (1.0 / steps_per_epoch))
    elif kind == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=total - warmup,
                                       eta_min=float(config.lr_min))
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warmup:
        return main
    decay = float(config.warmup_decay)
    if config.warmup_method == "constant":
        first = sched.ConstantLR(optimizer, factor=decay, total_iters=warmup)
    elif decay > 0:
        first = sched.LinearLR(optimizer, start_factor=decay, total_iters=warmup)
    else:  # LinearLR takes no start_factor of 0: the same line as a LambdaLR
        first = sched.LambdaLR(optimizer, lambda step: step / warmup)
    return sched.SequentialLR(optimizer, schedulers=[first, main], milestones=[warmup])


def _mixed(images, labels, shards: list[dict], config):
    """transforms.v2 MixUp/CutMix on each device's share of the batch, with jaxzoo's draws."""
    import torch
    from torchvision.transforms import v2

    out_images, out_targets = [], []
    for x, y, draw in zip(torch.chunk(images, len(shards)), torch.chunk(labels, len(shards)),
                          shards):
        if draw["cutmix"]:
            transform = v2.CutMix(alpha=float(config.cutmix_alpha),
                                  num_classes=draw["num_classes"])
            x1, y1, x2, y2 = draw["box"]
            area = (x2 - x1) * (y2 - y1) / (x.shape[-1] * x.shape[-2])
            params = {"box": draw["box"], "lam_adjusted": float(1.0 - area)}
        else:
            transform = v2.MixUp(alpha=float(config.mixup_alpha),
                                 num_classes=draw["num_classes"])
            params = {"lam": draw["lam"]}
        transform.make_params = lambda flat_inputs, params=params: params  # the same draws
        x, targets = transform(x, y)
        out_images.append(x)
        out_targets.append(targets)
    return torch.cat(out_images), torch.cat(out_targets).to(images.dtype)


class TorchTrainer:
    """The PyTorch equivalent of jaxzoo's step for ``config`` on a copy of ``torch_model``."""

    def __init__(self, torch_model, config, spec, steps_per_epoch: int, dtype=None):
        import torch

        self.dtype = dtype or torch.float32
        self.model = copy.deepcopy(torch_model).to(self.dtype)
        self.head_only = config.trainable == "head"
        self.model.train(not self.head_only)  # a frozen backbone: eval(), as jaxzoo
        self.trained = []
        for key, p in self.model.named_parameters():
            p.requires_grad_(not self.head_only or spec.is_head(key))
            if p.requires_grad:
                self.trained.append(p)
        self.decay = [p for p in self.trained if p.ndim > 1]
        self.no_decay = [p for p in self.trained if p.ndim <= 1]
        lr, wd = float(config.learning_rate), float(config.weight_decay)
        self.config, self.steps_per_epoch, self.steps_done = config, steps_per_epoch, 0
        self.reference = config.get("optimizer", "adam") != "adam"
        if self.reference:
            self.optimizer = reference_optimizer(self.model, config)
        elif wd:  # decoupled, kernels only: optax.adamw(mask=ndim > 1)
            self.optimizer = torch.optim.AdamW(
                [{"params": self.decay, "weight_decay": wd},
                 {"params": self.no_decay, "weight_decay": 0.0}],
                lr=lr, betas=(0.9, 0.999), eps=1e-8)
        else:
            self.optimizer = torch.optim.Adam(self.trained, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                              weight_decay=0.0)
        self.warmup, self.total, factor = lr_schedule(config, steps_per_epoch)
        if uses_reference_schedulers(config):
            self.scheduler = reference_scheduler(self.optimizer, config, steps_per_epoch)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.ema = None
        if config.get("model_ema", False):  # the reference's ExponentialMovingAverage
            decay = ema_lib.adjusted_decay(config)
            self.ema = torch.optim.swa_utils.AveragedModel(
                self.model, avg_fn=lambda avg, p, n: decay * avg + (1 - decay) * p,
                use_buffers=True)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=float(config.label_smoothing))
        self.aux_weights = [float(w) for w in config.aux_loss_weights]
        self.clip = float(config.grad_clip_norm)
        self.grad_norms: list[float] = []

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, batch: dict, mix: list[dict] | None = None) -> float:
        """One step on ``batch``; ``mix``: MixUp/CutMix draws, one per device's share."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        images = torch.from_numpy(batch["image"].transpose(0, 3, 1, 2).copy()).to(self.dtype)
        labels = torch.from_numpy(batch["label"].astype(np.int64))
        if mix is not None:  # the collate function's mixing; soft targets
            images, labels = _mixed(images, labels, mix, self.config)
        outputs = self.model(images)
        logits, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = self.criterion(logits, labels)
        for weight, aux_logits in zip(self.aux_weights, aux):  # GoogLeNet: (logits, aux2, aux1)
            loss = loss + weight * self.criterion(aux_logits, labels)
        loss.backward()
        if self.clip:
            self.grad_norms.append(float(torch.nn.utils.clip_grad_norm_(self.trained, self.clip)))
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:  # the reference's train_one_epoch
            epoch, i = divmod(self.steps_done, self.steps_per_epoch)
            if i % self.config.model_ema_steps == 0:
                self.ema.update_parameters(self.model)
                if epoch < self.config.warmup_epochs:
                    self.ema.n_averaged.fill_(0)
        self.steps_done += 1
        return float(loss.detach())

    def state(self) -> dict:
        return {k: v.detach().numpy() for k, v in self.model.state_dict().items()}

    def ema_state(self) -> dict | None:
        if self.ema is None:
            return None
        return {k: v.detach().numpy() for k, v in self.ema.module.state_dict().items()}


def _optimizer_line(config, trainer) -> str:
    wd = float(config.weight_decay)
    if trainer.reference:
        groups = ", ".join(f"{len(g['params'])} at {g['weight_decay']:g}"
                           for g in trainer.optimizer.param_groups)
        return (f"optimizer: jaxzoo.train.optim {config.optimizer} -> the reference's "
                f"{type(trainer.optimizer).__name__} (momentum {config.momentum:g}), parameter "
                f"groups as its set_weight_decay: {groups} (weight_decay)")
    if wd:
        return (f"optimizer: optax.adamw(weight_decay={wd:g}, kernels only) -> torch.optim.AdamW, "
                f"{len(trainer.decay)} kernels (ndim > 1) at weight_decay={wd:g} and "
                f"{len(trainer.no_decay)} biases/BatchNorm parameters at 0 (decoupled like optax; "
                f"not torch.optim.Adam's weight_decay, an L2 term added to the gradient)")
    return "optimizer: optax.adam -> torch.optim.Adam(betas=(0.9, 0.999), eps=1e-8, weight_decay=0)"


def _schedule_line(config, trainer, steps_per_epoch: int) -> str:
    steps = (f"warmup {trainer.warmup} of {trainer.total} steps ({config.warmup_epochs:g} and "
             f"{config.num_epochs:g} epochs of {steps_per_epoch} steps)")
    if not uses_reference_schedulers(config):
        return (f"schedule: optax.warmup_cosine_decay_schedule per step, peak "
                f"{config.learning_rate:g}, {steps} -> LambdaLR with the same formula, stepped "
                f"after every optimizer step (not per epoch)")
    return (f"schedule: jaxzoo.train.optim {config.warmup_method} warmup (decay "
            f"{config.warmup_decay:g}) then {config.lr_schedule}, per step, {steps} -> the "
            f"reference's {type(trainer.scheduler).__name__} counted in steps, stepped after "
            f"every optimizer step")


def _mix_draws(config, rng, steps: int, devices: int, shard_shape, num_classes: int):
    """Per step, the MixUp/CutMix draws of each device's share as the train step makes them
    (``mixing.key_for``), or None per step without mixing."""
    mixup, cutmix = config.get("mixup_alpha", 0.0), config.get("cutmix_alpha", 0.0)
    if mixup <= 0 and cutmix <= 0:
        return [None] * steps
    draws = []
    for step in range(steps):
        shards = []
        for device in range(devices):
            d = jax.device_get(mixing.draw(mixing.key_for(rng, step, device), shard_shape,
                                           mixup_alpha=mixup, cutmix_alpha=cutmix))
            shards.append({"cutmix": bool(d["cutmix"]), "lam": float(d["lam"]),
                           "box": tuple(int(v) for v in d["box"]), "num_classes": num_classes})
        draws.append(shards)
    return draws


def _batches(steps: int, batch: int, size: int, num_classes: int, seed: int) -> list[dict]:
    rng = np.random.default_rng((seed, 19))
    return [{"image": rng.standard_normal((batch, size, size, 3)).astype(np.float32),
             "label": rng.integers(0, num_classes, batch).astype(np.int32)}
            for _ in range(steps)]


def run(name: str, config, *, steps: int = 10, batch: int = 8, size: int = 64,
        num_classes: int = 10, steps_per_epoch: int | None = None, seed: int = 0,
        reference: str = "auto", torch_trainer: type | None = None,
        log: Callable[[str], Any] = print) -> TrainParityResult:
    """Train ``name`` for ``steps`` steps under ``config`` in jaxzoo and in PyTorch from the same
    weights and batches; ``log`` gets the mapping, then one line per step.

    ``steps_per_epoch`` (default ``steps``: the config's ``warmup_epochs`` and ``num_epochs`` count
    in lengths of the check) sizes the schedule as a dataset's epoch would. ``reference``:
    "float64" also trains torch in float64 from the same start, to measure how far float32
    rounding alone takes torch itself (Adam's early steps amplify it: see the README);
    "auto" does so only when the fixed tolerances are not met; "none" never. ``torch_trainer``:
    the PyTorch side (default ``TorchTrainer``; a subclass tries another mapping)."""
    import torch


    start = time.perf_counter()
    if reference not in ("auto", "float64", "none"):
        raise ValueError(f'reference must be "auto", "float64" or "none", got {reference!r}')
    if config.model != name:
        raise ValueError(f"the config is for {config.model}, not {name}")
    if config.dtype != "float32":
        raise ValueError(f"the check runs in float32; the config's dtype is {config.dtype!r} "
                         f"(override it: --set dtype=float32)")
    if steps < 1:
        raise ValueError(f"--train-steps must be at least 1, got {steps}")
    spec = get_spec(name)
    mesh = make_mesh()
    if batch % mesh.size:
        raise ValueError(f"the batch ({batch}) must split evenly over the {mesh.size} devices")
    steps_per_epoch = steps_per_epoch or steps
    model_kwargs = dict(config.model_kwargs)
    probe = create_model(name, num_classes=num_classes, **model_kwargs)
    off = {k: 0.0 for k in DROPOUT_FIELDS if hasattr(probe, k)}
    model_kwargs.update(off)
    config = config.copy_and_resolve_references()  # the caller's config stays as it was
    with config.unlocked():
        config.model_kwargs.update(off)

    # The same initial weights: torchvision's model, randomized, converted from a copy (torch
    # trains its tensors in place, and a numpy view of them could alias JAX's CPU buffers).
    torch_model = torchvision_model(name, num_classes=num_classes, **model_kwargs)
    randomize_(torch_model, seed)
    initial = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    variables = from_torch(name, initial, **model_kwargs)
    params = {k for k, _ in torch_model.named_parameters()}

    # jaxzoo, as train.py builds it.
    training = build_training(config, mesh, num_classes=num_classes,
                              steps_per_epoch=steps_per_epoch, variables=variables)
    state, train_step, lowering = training.state, training.train_step, training.model.lowering
    torch_trainer = torch_trainer or TorchTrainer
    trainer = torch_trainer(torch_model, config, spec, steps_per_epoch)

    lr, clip = float(config.learning_rate), trainer.clip
    smoothing = float(config.label_smoothing)
    mapping = [
        (f"jaxzoo: the trainer's step (build_training) on {mesh.size} {jax.devices()[0].platform} "
         f"device(s), lowering {lowering!r}, batch {batch} split {batch // mesh.size} per device "
         f"(gradients averaged, BatchNorm statistics synchronized); torch: the whole batch"),
        _optimizer_line(config, trainer),
        ("epsilon: both m_hat / (sqrt(v_hat) + 1e-8), outside the square root (optax eps_root=0; "
         "torch folds the bias corrections into the step size)")
        if config.get("optimizer", "adam") in ("adam", "adamw") else
        ("epsilon: sqrt(v) + 0.0316, outside the square root as torch.optim.RMSprop (optax "
         "scale_by_rms(eps_in_sqrt=False)); the learning rate after the momentum")
        if config.optimizer == "rmsprop" else
        "momentum: torch's buffer (the first gradient, then momentum * buf + g), times the lr",
        _schedule_line(config, trainer, steps_per_epoch),
        (f"mixing: MixUp(alpha={config.mixup_alpha:g}) / CutMix(alpha={config.cutmix_alpha:g}) "
         f"per device share of {batch // mesh.size} with jaxzoo's draws (choice, lambda, box) -> "
         f"torchvision.transforms.v2 MixUp / CutMix on the same shares with the same draws, "
         f"CrossEntropyLoss on the soft targets")
        if config.get("mixup_alpha", 0.0) > 0 or config.get("cutmix_alpha", 0.0) > 0
        else "mixing: none",
        (f"EMA: every {config.model_ema_steps} step(s) of each epoch, decay "
         f"{ema_lib.adjusted_decay(config):.6g} (model_ema_decay {config.model_ema_decay:g} "
         f"adjusted for batch {config.batch_size}, {config.num_epochs:g} epochs), copies during "
         f"the {config.warmup_epochs:g} warmup epoch(s) -> AveragedModel(use_buffers=True) with "
         f"the reference's avg_fn and update rule")
        if config.get("model_ema", False) else "EMA: none",
        (f"loss: softmax cross-entropy on optax.smooth_labels({smoothing:g}) -> "
         f"CrossEntropyLoss(label_smoothing={smoothing:g})"
         + (" + " + " + ".join(f"{w:g} x CE(output {i + 1})"
                               for i, w in enumerate(trainer.aux_weights))
            + " on the auxiliary outputs in the order the model returns them"
            if trainer.aux_weights else "")),
        (f"gradient clipping: optax.clip_by_global_norm({clip:g}) -> clip_grad_norm_({clip:g}) "
         f"(torch divides by the norm + 1e-6)") if clip else "gradient clipping: none",
        (f"trainable=head: {len(trainer.trained)} head tensors trained, the model applied with "
         f"train=False (optax.set_to_zero on the backbone) -> requires_grad_(False) on the "
         f"backbone, the optimizer over the head only, model.eval()")
        if trainer.head_only else "trainable=all: both models in train mode",
        "BatchNorm: flax momentum = 1 - torch momentum; unbiased running variance on both sides",
        f"dropout: off on both sides ({', '.join(f'{k}=0' for k in off)})" if off
        else "dropout: the model has none",
    ]
    for line in mapping:
        log("  " + line)
    log(f"  {'step':>4}  {'lr':>9}  {'jaxzoo loss':>12}  {'torch loss':>12}  {'relative':>9}")

    batches = _batches(steps, batch, size, num_classes, seed)
    mixes = _mix_draws(config, jax.device_get(state.rng), steps, mesh.size,
                       (batch // mesh.size, size, size, 3), num_classes)
    lrs, jax_losses, torch_losses = [], [], []
    with jax.default_matmul_precision("highest"):
        for i, b in enumerate(batches):
            state, metrics = train_step(state, shard_batch(mesh, b))
            lrs.append(trainer.lr)
            torch_losses.append(trainer.step(b, mixes[i]))
            jax_losses.append(float(metrics["loss"]))
            rel = abs(jax_losses[-1] - torch_losses[-1]) / max(abs(torch_losses[-1]), 1e-12)
            log(f"  {i:>4}  {lrs[-1]:>9.3e}  {jax_losses[-1]:>12.7f}  {torch_losses[-1]:>12.7f}  "
                f"{rel:>9.2e}")

    ours = to_torch(name, jax.device_get({"params": state.params,
                                          "batch_stats": state.batch_stats}))
    theirs = trainer.state()
    change = max(float(np.abs(theirs[k] - initial[k]).max())
                 / max(float(np.abs(initial[k]).max()), 1e-12) for k in params)
    result = TrainParityResult(
        model=name, devices=mesh.size, mapping=mapping, learning_rates=lrs,
        jax_losses=jax_losses, torch_losses=torch_losses,
        diff=compare(ours, theirs, initial, params, jax_losses, torch_losses, lr),
        weight_change=change, seconds=0.0,
        states={"initial": initial, "jaxzoo": ours, "torch": theirs},
        grad_norms=trainer.grad_norms)
    ours_ema = None
    if trainer.ema is not None:
        ours_ema = to_torch(name, jax.device_get({"params": state.ema["params"],
                                                  "batch_stats": state.ema["batch_stats"]}))
        result.ema_diff = compare(ours_ema, trainer.ema_state(), initial, params, [], [], lr)
        result.states["jaxzoo_ema"], result.states["torch_ema"] = ours_ema, trainer.ema_state()
    if reference == "float64" or (reference == "auto" and not result.diff.within()):
        log("  torch again in float64 from the same start, to measure float32's own error:")
        log(f"  {'step':>4}  {'torch f64 loss':>14}  {'jaxzoo vs f64':>13}  {'torch vs f64':>12}")
        exact = torch_trainer(torch_model, config, spec, steps_per_epoch, torch.float64)
        result.reference_losses = []
        for i, b in enumerate(batches):
            result.reference_losses.append(exact.step(b, mixes[i]))
            ref = result.reference_losses[-1]
            log(f"  {i:>4}  {ref:>14.7f}  {abs(jax_losses[i] - ref) / abs(ref):>13.2e}  "
                f"{abs(torch_losses[i] - ref) / abs(ref):>12.2e}")
        reference_state = exact.state()
        result.jax_vs_reference = compare(ours, reference_state, initial, params, jax_losses,
                                          result.reference_losses, lr)
        result.torch_vs_reference = compare(theirs, reference_state, initial, params,
                                            torch_losses, result.reference_losses, lr)
        if ours_ema is not None:
            result.ema_vs_reference = compare(ours_ema, exact.ema_state(), initial, params, [],
                                              [], lr)
    result.seconds = time.perf_counter() - start
    return result


def report(result: TrainParityResult) -> str:
    """The end of the check's output: the differences, and the verdict."""
    lines = ["jaxzoo against torch (float32):", result.diff.describe(),
             (f"  training moved the weights by up to {result.weight_change:.2e} of a tensor's "
              f"largest magnitude")]
    if result.ema_diff is not None:
        lines += ["the weights' averages (EMA), jaxzoo against torch:",
                  "\n".join(line for line in result.ema_diff.describe().splitlines()
                            if "losses" not in line)]
    if result.jax_vs_reference is not None:
        lines += ["jaxzoo against torch in float64:", result.jax_vs_reference.describe(),
                  "torch (float32) against torch in float64, the float32 floor:",
                  result.torch_vs_reference.describe()]
    lines.append(f"{result.verdict()}  ({result.seconds:.0f} s)")
    return "\n".join(lines)


def load_config(model: str, name: str | None = None, overrides=()):
    """The config ``train.py --config=NAME[:PRESET]`` trains with (by default the model's own),
    then ``KEY=VALUE`` overrides (``learning_rate=1e-3``, ``model_kwargs.width_mult=0.5``), parsed
    and checked as ``--config.KEY=VALUE`` is (``jaxzoo.train.configs``)."""
    return configs.apply_overrides(configs.load_config(name or model), overrides, flag="--set ")
