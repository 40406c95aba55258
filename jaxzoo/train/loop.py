"""The training loop: ``train_and_evaluate(config, workdir)``, what ``python train.py`` runs."""
from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
from tqdm import tqdm

from jaxzoo.models import create_model
from jaxzoo.train import checkpoint, report
from jaxzoo.train.preemption import StopRequest
from jaxzoo.train.state import create_train_state, initial_variables, trainable_mask
from jaxzoo.train.step import (AXIS, make_eval_step, make_mesh, make_train_step_for_config,
                               replicate, shard_batch)


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite; the checkpoints saved before are kept."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped training once a checkpoint of the current step was saved;
    training again in the same workdir resumes from it."""

    def __init__(self, message: str, *, signal: str | None, step: int):
        super().__init__(message)
        self.signal, self.step = signal, step


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
                        augment=config.augment, max_image_pixels=config.max_image_pixels,
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


def resume_point(progress: dict | None, steps_per_epoch: int) -> tuple[int, int]:
    """(epoch, step within it) where training continues after the checkpoint ``progress``."""
    if progress is None:
        return 1, 0
    epoch, done = progress["epoch"], progress["epoch_step"]
    saved_steps_per_epoch = progress.get("steps_per_epoch", done)
    if done >= saved_steps_per_epoch:
        return epoch + 1, 0
    if saved_steps_per_epoch != steps_per_epoch:
        raise ValueError(
            f"the latest checkpoint (step {progress['step']}) was saved within epoch {epoch}, "
            f"which had {saved_steps_per_epoch} steps; now an epoch has {steps_per_epoch}, so "
            f"the position in the data cannot be resumed. Resume with the batch size the run "
            f"was started with (see config.json in the workdir)")
    return epoch, done


def _empty_sums() -> dict:
    return {"loss": 0.0, "accuracy": 0.0, "steps": 0, "nonfinite_steps": []}


def train_and_evaluate(config, workdir: str, data=None, model=None, devices=None) -> list[dict]:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint; returns the per-epoch
    metrics. ``data`` defaults to ``jaxzoo.data.get_datasets(config.dataset, ...)``, ``model`` to
    ``create_model(config.model, ...)`` (a module with the zoo's interface and a ``bn_axis_name``
    set to ``"data"``), ``devices`` to all of them.

    SIGTERM or SIGINT saves a checkpoint of the current step and raises ``TrainingInterrupted``;
    a NaN or infinite loss or gradient raises ``TrainingDiverged`` (or, with
    ``config.skip_nonfinite``, drops that update and counts it)."""
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
        log(f"skipped in {config.dataset}: "
            + ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items())))

    if model is None:
        model = create_model(config.model, num_classes=num_classes, dtype=jnp.dtype(config.dtype),
                             bn_axis_name=AXIS, **config.model_kwargs)
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    manager = checkpoint.create_manager(workdir, config.checkpoints_to_keep)
    progress = checkpoint.latest_progress(manager)
    first_epoch, start_step = resume_point(progress, steps_per_epoch)
    if first_epoch > config.num_epochs:
        best = progress["best_val_accuracy"]
        log(f"already trained for {progress['epoch']} epoch(s) in {workdir} (best val_accuracy "
            f"{best if best is None else round(best, 3)}); raise --config.num_epochs to train "
            f"longer")
        manager.close()
        return progress.get("records") or report.read_metrics(workdir)
    # When resuming, the checkpoint has every weight: init_from would only be overwritten.
    init_from = "" if progress is not None else config.init_from
    variables = initial_variables(config, model, num_classes, init_rng, init_from, log=log)
    state = create_train_state(config, model, variables, steps_per_epoch, state_rng)
    state = replicate(mesh, state)
    state, progress = checkpoint.restore_latest(manager, state)

    best, records, sums = -math.inf, [], _empty_sums()
    if progress is not None:
        best = progress["best_val_accuracy"] if progress["best_val_accuracy"] is not None else best
        records = progress.get("records")  # older checkpoints: the metrics file
        if records is None:
            records = [r for r in report.read_metrics(workdir) if r["epoch"] < first_epoch]
        sums = progress.get("sums", sums) if start_step else sums
        log(f"resuming from {manager.directory} at step {progress['step']} (epoch {first_epoch}, "
            f"step {start_step} of {steps_per_epoch}; best val_accuracy "
            f"{f'{best:.3f}' if math.isfinite(best) else 'none yet'})")

    mask = trainable_mask(config.model, variables["params"], config.trainable)
    train_step = make_train_step_for_config(config, model, mesh, num_classes=num_classes,
                                            mask=mask)
    eval_step = make_eval_step(model, mesh, num_classes=num_classes)

    def save(state, epoch, epoch_step, sums, val_accuracy=None):
        checkpoint.save(manager, state, {
            "epoch": epoch, "epoch_step": epoch_step, "steps_per_epoch": steps_per_epoch,
            "step": int(jax.device_get(state.step)), "val_accuracy": val_accuracy,
            "best_val_accuracy": best if math.isfinite(best) else None,
            "sums": sums, "records": records})

    def interrupted(step, epoch, epoch_step):
        where = (f"epoch {epoch} done" if epoch_step == steps_per_epoch
                 else f"epoch {epoch}, step {epoch_step} of {steps_per_epoch}")
        return TrainingInterrupted(
            f"training stopped by {stop.signal or 'a signal to another process'} at step {step} "
            f"({where}); the checkpoint of that step is in {manager.directory}, and training "
            f"again in the same workdir resumes from it", signal=stop.signal, step=step)

    step = (first_epoch - 1) * steps_per_epoch + start_step
    try:
        with StopRequest(mesh) as stop:
            for epoch in range(first_epoch, config.num_epochs + 1):
                state, sums, step, stopped = _train_epoch(
                    train_step, state, mesh, data, epoch, start_step, step, sums, config,
                    is_main, stop, save)
                if stopped:
                    raise interrupted(step, epoch, stopped)
                val = evaluate(eval_step, state, mesh, data)
                if not math.isfinite(val["val_loss"]):
                    raise TrainingDiverged(f"validation loss is {val['val_loss']} after epoch "
                                           f"{epoch} (step {step})")
                best = max(best, val["val_accuracy"])
                n = sums["steps"]  # the finite ones
                records.append({"epoch": epoch, "step": step,
                                "train_loss": sums["loss"] / n if n else math.nan,
                                "train_accuracy": sums["accuracy"] / n if n else math.nan,
                                "nonfinite_skipped": len(sums["nonfinite_steps"]),
                                **val, "best_val_accuracy": best})
                save(state, epoch, steps_per_epoch, sums, val["val_accuracy"])
                if is_main:
                    report.write_metrics(workdir, records)
                    report.plot_curves(workdir, records)
                skipped_note = (f"  skipped non-finite updates at steps {sums['nonfinite_steps']}"
                                if sums["nonfinite_steps"] else "")
                log(f"[epoch {epoch}] train_loss: {records[-1]['train_loss']:.3f}  "
                    f"val_accuracy: {val['val_accuracy']:.3f}  best: {best:.3f}{skipped_note}",
                    flush=True)
                start_step, sums = 0, _empty_sums()
                if epoch < config.num_epochs and bool(stop.poll()):
                    raise interrupted(step, epoch, steps_per_epoch)
    except TrainingDiverged as e:
        manager.wait_until_finished()
        kept = manager.latest_step()
        where = (f"the last good checkpoint (step {kept}) is kept in {manager.directory}"
                 if kept is not None else "no checkpoint had been saved yet")
        raise TrainingDiverged(f"{e}; training stopped, {where}. Lower --config.learning_rate, "
                               f"set --config.grad_clip_norm, or skip such updates with "
                               f"--config.skip_nonfinite=True.") from None
    finally:
        manager.wait_until_finished()
        manager.close()
    return records


def _train_epoch(train_step, state, mesh, data, epoch, start_step, step, sums, config, is_main,
                 stop, save):
    """Steps ``start_step + 1`` to the end of ``epoch``; adds each step's loss and accuracy to
    ``sums``. Returns ``(state, sums, step, stopped)``: ``stopped`` is the step within the epoch
    at which a signal stopped training after a checkpoint (0 if it did not).

    Metrics (and the stop request) are read one step late, so the host never waits for the step
    it has just dispatched; every process reads the same values, so all stop at the same step."""
    steps_per_epoch, every = data.steps_per_epoch, config.checkpoint_every_steps
    bar = tqdm(total=steps_per_epoch, initial=start_step, unit="step", leave=False,
               desc=f"epoch {epoch}/{config.num_epochs}", disable=not is_main, dynamic_ncols=True)
    started = None

    def record(metrics, at_step, stop_flag) -> bool:
        nonlocal started
        loss = float(metrics["loss"])
        if not bool(metrics["finite"]):
            if not config.skip_nonfinite:
                raise TrainingDiverged(f"non-finite loss or gradients at step {at_step} (epoch "
                                       f"{epoch}): loss = {loss}")
            sums["nonfinite_steps"].append(at_step)
        else:
            sums["loss"] += loss
            sums["accuracy"] += float(metrics["accuracy"])
            sums["steps"] += 1
        bar.update(1)
        if started is None:  # the first step includes compilation: rate from the second on
            started = (time.perf_counter(), bar.n)
        elif bar.n > started[1]:
            images = (bar.n - started[1]) * config.batch_size
            bar.set_postfix(loss=f"{loss:.3f}",
                            images_per_s=f"{images / (time.perf_counter() - started[0]):.1f}")
        return bool(stop_flag)

    sums = json.loads(json.dumps(sums))  # the caller's copy stays as it was
    epoch_step, pending = start_step, None
    try:
        for batch in data.train_batches(epoch, start_step):
            state, metrics = train_step(state, shard_batch(mesh, batch))
            step += 1
            epoch_step += 1
            stopping = pending is not None and record(*pending)
            pending = (metrics, step, stop.poll())
            if epoch_step < steps_per_epoch and (stopping or (every and step % every == 0)):
                record(*pending)
                pending = None
                save(state, epoch, epoch_step, sums)
                if stopping:
                    return state, sums, step, epoch_step
        if pending is not None:
            record(*pending)  # a stop request here is acted on after the epoch's checkpoint
    finally:
        bar.close()
    return state, sums, step, 0
