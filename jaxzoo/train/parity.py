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
        if wd:  # decoupled, kernels only: optax.adamw(mask=ndim > 1)
            self.optimizer = torch.optim.AdamW(
                [{"params": self.decay, "weight_decay": wd},
                 {"params": self.no_decay, "weight_decay": 0.0}],
                lr=lr, betas=(0.9, 0.999), eps=1e-8)
        else:
            self.optimizer = torch.optim.Adam(self.trained, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                              weight_decay=0.0)
        self.warmup, self.total, factor = lr_schedule(config, steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=float(config.label_smoothing))
        self.aux_weights = [float(w) for w in config.aux_loss_weights]
        self.clip = float(config.grad_clip_norm)
        self.grad_norms: list[float] = []

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, batch: dict) -> float:
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        images = torch.from_numpy(batch["image"].transpose(0, 3, 1, 2).copy()).to(self.dtype)
        outputs = self.model(images)
        logits, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
        labels = torch.from_numpy(batch["label"].astype(np.int64))
        loss = self.criterion(logits, labels)
        for weight, aux_logits in zip(self.aux_weights, aux):  # GoogLeNet: (logits, aux2, aux1)
            loss = loss + weight * self.criterion(aux_logits, labels)
        loss.backward()
        if self.clip:
            self.grad_norms.append(float(torch.nn.utils.clip_grad_norm_(self.trained, self.clip)))
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def state(self) -> dict:
        return {k: v.detach().numpy() for k, v in self.model.state_dict().items()}


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

    from jaxzoo.models.registry import create_model, get_spec
    from jaxzoo.train.recipe import build_training
    from jaxzoo.train.step import make_mesh, shard_batch

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

    lr, wd, clip = float(config.learning_rate), float(config.weight_decay), trainer.clip
    smoothing = float(config.label_smoothing)
    mapping = [
        (f"jaxzoo: the trainer's step (build_training) on {mesh.size} {jax.devices()[0].platform} "
         f"device(s), lowering {lowering!r}, batch {batch} split {batch // mesh.size} per device "
         f"(gradients averaged, BatchNorm statistics synchronized); torch: the whole batch"),
        (f"optimizer: optax.adamw(weight_decay={wd:g}, kernels only) -> torch.optim.AdamW, "
         f"{len(trainer.decay)} kernels (ndim > 1) at weight_decay={wd:g} and "
         f"{len(trainer.no_decay)} biases/BatchNorm parameters at 0 (decoupled like optax; not "
         f"torch.optim.Adam's weight_decay, an L2 term added to the gradient)") if wd else
        "optimizer: optax.adam -> torch.optim.Adam(betas=(0.9, 0.999), eps=1e-8, weight_decay=0)",
        ("epsilon: both m_hat / (sqrt(v_hat) + 1e-8), outside the square root (optax eps_root=0; "
         "torch folds the bias corrections into the step size)"),
        (f"schedule: optax.warmup_cosine_decay_schedule per step, peak {lr:g}, warmup "
         f"{trainer.warmup} of {trainer.total} steps ({config.warmup_epochs:g} and "
         f"{config.num_epochs:g} epochs of {steps_per_epoch} steps) -> LambdaLR with the same "
         f"formula, stepped after every optimizer step (not per epoch)"),
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
    lrs, jax_losses, torch_losses = [], [], []
    with jax.default_matmul_precision("highest"):
        for i, b in enumerate(batches):
            state, metrics = train_step(state, shard_batch(mesh, b))
            lrs.append(trainer.lr)
            torch_losses.append(trainer.step(b))
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
    if reference == "float64" or (reference == "auto" and not result.diff.within()):
        log("  torch again in float64 from the same start, to measure float32's own error:")
        log(f"  {'step':>4}  {'torch f64 loss':>14}  {'jaxzoo vs f64':>13}  {'torch vs f64':>12}")
        exact = torch_trainer(torch_model, config, spec, steps_per_epoch, torch.float64)
        result.reference_losses = []
        for i, b in enumerate(batches):
            result.reference_losses.append(exact.step(b))
            ref = result.reference_losses[-1]
            log(f"  {i:>4}  {ref:>14.7f}  {abs(jax_losses[i] - ref) / abs(ref):>13.2e}  "
                f"{abs(torch_losses[i] - ref) / abs(ref):>12.2e}")
        reference_state = exact.state()
        result.jax_vs_reference = compare(ours, reference_state, initial, params, jax_losses,
                                          result.reference_losses, lr)
        result.torch_vs_reference = compare(theirs, reference_state, initial, params,
                                            torch_losses, result.reference_losses, lr)
    result.seconds = time.perf_counter() - start
    return result


def report(result: TrainParityResult) -> str:
    """The end of the check's output: the differences, and the verdict."""
    lines = ["jaxzoo against torch (float32):", result.diff.describe(),
             (f"  training moved the weights by up to {result.weight_change:.2e} of a tensor's "
              f"largest magnitude")]
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
    from jaxzoo.train import configs

    return configs.apply_overrides(configs.load_config(name or model), overrides, flag="--set ")
