"""The training loop: ``train_and_evaluate(config, workdir)``, what ``python train.py`` runs."""
from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxzoo.models import create_model
from jaxzoo.train import checkpoint, report
from jaxzoo.train.state import create_train_state, initial_variables, trainable_mask
from jaxzoo.train.step import AXIS, make_eval_step, make_mesh, make_train_step, replicate, shard_batch


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the checkpoints saved before are kept."""


def check_batch_sizes(config, device_count: int, process_count: int) -> None:
    for field in ("batch_size", "eval_batch_size"):
        size = config[field] or config.batch_size
        if size <= 0 or size % device_count or size % process_count:
            raise ValueError(
                f"config.{field}={size} is not divisible by the {device_count} devices "
                f"({process_count} process(es)): the global batch is split evenly over devices. "
                f"Use a multiple of {device_count}, e.g. --config.{field}="
                f"{max(device_count, size // device_count * device_count)}")


def _load_data(config):
    from jaxzoo.data import get_datasets

    return get_datasets(dataset=config.dataset, image_size=config.image_size,
                        global_batch_size=config.batch_size,
                        eval_batch_size=config.eval_batch_size or None, seed=config.seed,
                        data_dir=config.data_dir or None, val_fraction=config.val_fraction,
                        process_index=jax.process_index(), process_count=jax.process_count(),
                        augment=config.augment,
                        crop_scale=tuple(config.get("crop_scale", ())) or None)


def evaluate(eval_step, state, mesh, data) -> dict:
    """Validation loss and accuracy over every validation example, each counted once."""
    totals = {"correct": 0.0, "loss": 0.0, "count": 0.0}
    for batch in data.val_batches():
        sums = jax.device_get(eval_step(state, shard_batch(mesh, batch)))
        totals = {k: totals[k] + float(sums[k]) for k in totals}
    count = max(totals["count"], 1.0)
    return {"val_accuracy": totals["correct"] / count, "val_loss": totals["loss"] / count,
            "val_count": int(totals["count"])}


def train_and_evaluate(config, workdir: str, data=None, model=None, devices=None) -> list[dict]:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint; returns the per-epoch
    metrics. ``data`` defaults to ``jaxzoo.data.get_datasets(config.dataset, ...)``, ``model`` to
    ``create_model(config.model, ...)`` (a module with the zoo's interface and a ``bn_axis_name``
    set to ``"data"``), ``devices`` to all of them."""
    is_main = jax.process_index() == 0
    log = print if is_main else (lambda *a, **k: None)
    mesh = make_mesh(devices)
    check_batch_sizes(config, mesh.size, jax.process_count())
    if config.trainable not in ("all", "head"):
        raise ValueError(f'config.trainable must be "all" or "head", got {config.trainable!r}')
    if config.dtype not in ("float32", "bfloat16"):
        raise ValueError(f'config.dtype must be "float32" or "bfloat16", got {config.dtype!r}')

    data = data if data is not None else _load_data(config)
    class_names = list(data.class_names)
    if len(class_names) < 2:
        raise ValueError(f"dataset {config.dataset!r} has {len(class_names)} class(es); "
                         f"classification needs at least two")
    num_classes, steps_per_epoch = len(class_names), data.steps_per_epoch
    if steps_per_epoch < 1:
        raise ValueError(f"dataset {config.dataset!r} has {data.num_train} training examples, "
                         f"fewer than one batch of {config.batch_size}; lower --config.batch_size")

    os.makedirs(workdir, exist_ok=True)
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2) + "\n")
        with open(os.path.join(workdir, "class_names.json"), "w") as f:
            json.dump({str(i): name for i, name in enumerate(class_names)}, f, indent=2)
    skipped = getattr(data, "skipped", None)
    if skipped:
        log(f"skipped {sum(skipped.values())} unreadable file(s): {dict(skipped)}")

    if model is None:
        model = create_model(config.model, num_classes=num_classes, dtype=jnp.dtype(config.dtype),
                             bn_axis_name=AXIS, **config.model_kwargs)
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    manager = checkpoint.create_manager(workdir, config.checkpoints_to_keep)
    progress = checkpoint.latest_progress(manager)
    if progress is not None and progress["epoch"] >= config.num_epochs:
        log(f"already trained for {progress['epoch']} epoch(s) in {workdir} (best val_accuracy "
            f"{progress['best_val_accuracy']:.3f}); raise --config.num_epochs to train longer")
        manager.close()
        return report.read_metrics(workdir)
    # When resuming, the checkpoint has every weight: init_from would only be overwritten.
    init_from = "" if manager.latest_step() is not None else config.init_from
    variables = initial_variables(config, model, num_classes, init_rng, init_from, log=log)
    state = create_train_state(config, model, variables, steps_per_epoch, state_rng)
    state = replicate(mesh, state)
    state, progress = checkpoint.restore_latest(manager, state)

    first_epoch, best = 1, -math.inf
    records = report.read_metrics(workdir) if is_main else []
    if progress is not None:
        first_epoch = progress["epoch"] + 1
        best = progress["best_val_accuracy"]
        records = [r for r in records if r["epoch"] <= progress["epoch"]]
        log(f"resuming from {manager.directory} at epoch {progress['epoch']} "
            f"(step {progress['step']}, best val_accuracy {best:.3f})")

    mask = trainable_mask(config.model, variables["params"], config.trainable)
    train_step = make_train_step(
        model, mesh, num_classes=num_classes, aux_loss_weights=config.aux_loss_weights,
        label_smoothing=config.label_smoothing, mask=mask,
        frozen_backbone=config.trainable == "head")
    eval_step = make_eval_step(model, mesh, num_classes=num_classes)

    step = (first_epoch - 1) * steps_per_epoch
    try:
        for epoch in range(first_epoch, config.num_epochs + 1):
            state, train_metrics, step = _train_epoch(
                train_step, state, mesh, data, epoch, step, config, is_main)
            val = evaluate(eval_step, state, mesh, data)
            if not math.isfinite(val["val_loss"]):
                raise TrainingDiverged(f"validation loss is {val['val_loss']} after epoch {epoch} "
                                       f"(step {step})")
            best = max(best, val["val_accuracy"])
            record = {"epoch": epoch, "step": step, **train_metrics, **val,
                      "best_val_accuracy": best}
            checkpoint.save(manager, state, {"epoch": epoch, "epoch_step": steps_per_epoch,
                                             "step": step, "val_accuracy": val["val_accuracy"],
                                             "best_val_accuracy": best})
            records.append(record)
            if is_main:
                report.write_metrics(workdir, records)
                report.plot_curves(workdir, records)
            log(f"[epoch {epoch}] train_loss: {train_metrics['train_loss']:.3f}  "
                f"val_accuracy: {val['val_accuracy']:.3f}  best: {best:.3f}", flush=True)
    except TrainingDiverged as e:
        manager.wait_until_finished()
        kept = manager.latest_step()
        where = (f"the last good checkpoint (step {kept}) is kept in {manager.directory}"
                 if kept is not None else "no checkpoint had been saved yet")
        raise TrainingDiverged(f"{e}; training stopped, {where}. Lower --config.learning_rate "
                               f"or set --config.grad_clip_norm.") from None
    finally:
        manager.wait_until_finished()
        manager.close()
    return records


def _train_epoch(train_step, state, mesh, data, epoch, step, config, is_main):
    """One pass over this epoch's batches. Metrics are read one step late, so the host never
    waits for the step it has just dispatched."""
    losses, accuracies = [], []
    bar = tqdm(total=data.steps_per_epoch, desc=f"epoch {epoch}/{config.num_epochs}",
               unit="step", disable=not is_main, dynamic_ncols=True, leave=False)
    started = None

    def record(metrics, at_step):
        nonlocal started
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss} at step {at_step} (epoch {epoch})")
        losses.append(loss)
        accuracies.append(float(metrics["accuracy"]))
        bar.update(1)
        if started is None:  # the first step includes compilation: rate from the second on
            started = (time.perf_counter(), len(losses))
        elif len(losses) > started[1]:
            images = (len(losses) - started[1]) * config.batch_size
            bar.set_postfix(loss=f"{loss:.3f}",
                            images_per_s=f"{images / (time.perf_counter() - started[0]):.1f}")

    pending = None
    try:
        for batch in data.train_batches(epoch):
            state, metrics = train_step(state, shard_batch(mesh, batch))
            step += 1
            if pending is not None:
                record(*pending)
            pending = (metrics, step)
        if pending is not None:
            record(*pending)
    finally:
        bar.close()
    return state, {"train_loss": float(np.mean(losses)),
                   "train_accuracy": float(np.mean(accuracies))}, step
