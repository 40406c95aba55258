"""The training loop: ``train_and_evaluate(config, workdir)``, what ``python train.py`` runs.

One global step counts the updates. Everything else follows from it: the epoch and the position
within it (``divmod(step, steps_per_epoch)``), where the data resumes, when to evaluate and save
(at epoch ends, and every ``checkpoint_every_steps``), and where a signal stops training.
"""
from __future__ import annotations

import json
import math
import os
import time

import jax
from tqdm import tqdm

from jaxzoo.models import create_model
from jaxzoo.train import checkpoint, configs, ema, report
from jaxzoo.train import workdir as run_workdir
from jaxzoo.train.preemption import StopRequest
from jaxzoo.train.recipe import build_training
from jaxzoo.train.state import learning_rate_schedule, with_pretrained_network
from jaxzoo.train.step import make_mesh, shard_batch


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite; the checkpoints saved before are kept."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped training once a checkpoint of the current step was saved;
    training again in the same workdir resumes from it."""

    def __init__(self, message: str, *, signal: str | None, step: int):
        super().__init__(message)
        self.signal, self.step = signal, step


def check_config(config, device_count: int, process_count: int) -> None:
    """The errors a config can have before any data is read, each saying what to do: every
    field's range and choices (``configs.validate``), then the batches over the devices."""
    configs.validate(config)
    for field in ("batch_size", "eval_batch_size"):
        size = config[field] or config.batch_size
        if size % device_count or size % process_count:
            raise ValueError(
                f"config.{field}={size} is not divisible by the {device_count} devices "
                f"({process_count} process(es)): the global batch is split evenly over devices. "
                f"Use a multiple of {device_count}, e.g. --config.{field}="
                f"{max(device_count, size // device_count * device_count)}")


def _load_data(config):
    from jaxzoo.data import get_datasets

    # Gray images for a one-channel model (inception_mnist, or any with in_channels=1).
    channels = create_model(config.model, **config.model_kwargs).in_channels
    return get_datasets(dataset=config.dataset, image_size=config.image_size,
                        global_batch_size=config.batch_size,
                        eval_batch_size=config.eval_batch_size or None, seed=config.seed,
                        data_dir=config.data_dir or None, val_fraction=config.val_fraction,
                        process_index=jax.process_index(), process_count=jax.process_count(),
                        augment=config.augment, max_image_pixels=config.max_image_pixels,
                        crop_scale=tuple(config.get("crop_scale", ())) or None,
                        image_dtype="uint8",  # normalized on the device (step.model_input)
                        channels=channels,
                        # The reference scripts' augmentation, sizes and sampling (.get: a
                        # config saved before these fields existed means them off).
                        auto_augment=config.get("auto_augment", ""),
                        ra_magnitude=config.get("ra_magnitude", 9),
                        augmix_severity=config.get("augmix_severity", 3),
                        random_erase=config.get("random_erase", 0.0),
                        interpolation=config.get("interpolation", "bilinear"),
                        eval_resize_size=config.get("val_resize_size", 0) or None,
                        eval_crop_size=config.get("val_crop_size", 0) or None,
                        ra_reps=config.get("ra_reps", 0))


def evaluate(eval_step, state, mesh, data) -> dict:
    """Validation loss and accuracy over every validation example, each counted once."""
    totals = {"correct": 0.0, "loss": 0.0, "count": 0.0}
    for batch in data.val_batches():
        sums = jax.device_get(eval_step(state, shard_batch(mesh, batch)))
        totals = {k: totals[k] + float(sums[k]) for k in totals}
    count = max(totals["count"], 1.0)
    return {"val_accuracy": totals["correct"] / count, "val_loss": totals["loss"] / count,
            "val_count": int(totals["count"])}


def resume_step(progress: dict | None, steps_per_epoch: int) -> int:
    """The global step training continues after: the latest checkpoint's (0 without one). Its
    epoch and position must be the ones that step means now (the same batch size)."""
    if progress is None:
        return 0
    step, epoch, done = progress["step"], progress["epoch"], progress["epoch_step"]
    if divmod(step, steps_per_epoch) not in ((epoch - 1, done), (epoch, 0)):
        saved = progress.get("steps_per_epoch", done)
        raise ValueError(
            f"the latest checkpoint (step {step}) was saved at epoch {epoch}, step {done} of "
            f"{saved}; now an epoch has {steps_per_epoch} steps, so the position in the data "
            f"cannot be resumed. Resume with the batch size the run was started with (see "
            f"config.json in the workdir)")
    return step


class EpochMetrics:
    """The running sums of one epoch's train loss and accuracy (finite steps only) and the steps
    whose update was skipped as non-finite; saved in checkpoints so that a resumed epoch
    reports what an uninterrupted one would."""

    def __init__(self, sums: dict | None = None):
        sums = json.loads(json.dumps(sums)) if sums else {}  # a copy: the saved one stays
        self.loss, self.accuracy = sums.get("loss", 0.0), sums.get("accuracy", 0.0)
        self.steps, self.nonfinite_steps = sums.get("steps", 0), sums.get("nonfinite_steps", [])

    def add(self, metrics, step: int, epoch: int, skip_nonfinite: bool) -> float:
        """Add the metrics of global ``step`` (device values, read here); returns its loss."""
        loss = float(metrics["loss"])
        if not bool(metrics["finite"]):
            if not skip_nonfinite:
                raise TrainingDiverged(f"non-finite loss or gradients at step {step} (epoch "
                                       f"{epoch}): loss = {loss}")
            self.nonfinite_steps.append(step)
        else:
            self.loss += loss
            self.accuracy += float(metrics["accuracy"])
            self.steps += 1
        return loss

    def state(self) -> dict:
        return {"loss": self.loss, "accuracy": self.accuracy, "steps": self.steps,
                "nonfinite_steps": list(self.nonfinite_steps)}

    def record(self) -> dict:
        n = self.steps
        return {"train_loss": self.loss / n if n else math.nan,
                "train_accuracy": self.accuracy / n if n else math.nan,
                "nonfinite_skipped": len(self.nonfinite_steps)}


class EpochBar:
    """The tqdm bar of one epoch, with the loss and images/s (from the second step on: the
    first includes compilation)."""

    def __init__(self, epoch: int, num_epochs: int, position: int, steps_per_epoch: int,
                 batch_size: int, enabled: bool):
        self.batch_size = batch_size
        self.bar = tqdm(total=steps_per_epoch, initial=position, unit="step", leave=False,
                        desc=f"epoch {epoch}/{num_epochs}", disable=not enabled,
                        dynamic_ncols=True)
        self.started = None

    def update(self, loss: float) -> None:
        self.bar.update(1)
        if self.started is None:
            self.started = (time.perf_counter(), self.bar.n)
        elif self.bar.n > self.started[1]:
            images, _, seconds = self.timed()
            self.bar.set_postfix(loss=f"{loss:.3f}", images_per_s=f"{images / seconds:.1f}")

    def timed(self) -> tuple[int, int, float] | None:
        """(images, steps, seconds) since the epoch's first step; None before a second step."""
        if self.started is None or self.bar.n == self.started[1]:
            return None
        steps = self.bar.n - self.started[1]
        return steps * self.batch_size, steps, time.perf_counter() - self.started[0]

    def close(self) -> None:
        self.bar.close()


class Profile:
    """A ``jax.profiler`` trace of ``num_steps`` steps from global step ``first`` on (after the
    compiling ones), written under WORKDIR/profile for TensorBoard's or Perfetto's viewer."""

    def __init__(self, workdir: str, first: int, num_steps: int):
        self.directory = os.path.join(workdir, "profile")
        self.first, self.last, self.running = first, first + num_steps, False

    def at(self, step: int, pending) -> None:
        """Called before dispatching ``step``; ``pending`` holds the previous step's metrics."""
        if self.first < self.last and step == self.first:
            jax.profiler.start_trace(self.directory)
            self.running = True
        elif self.running and step == self.last:
            jax.block_until_ready(pending)
            self.stop()

    def stop(self) -> None:
        if self.running:
            jax.profiler.stop_trace()
            self.running = False


def _batches(data, start_step: int, num_epochs: int):
    """``(step, epoch, batch)`` for the global steps after ``start_step``: the rest of its
    epoch, then the epochs after it, to the end of training."""
    first_epoch, position = divmod(start_step, data.steps_per_epoch)
    step = start_step
    for epoch in range(first_epoch + 1, num_epochs + 1):
        for batch in data.train_batches(epoch, position):
            step += 1
            yield step, epoch, batch
        position = 0


def train_and_evaluate(config, workdir: str, data=None, model=None, devices=None) -> list[dict]:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint; returns the per-epoch
    metrics. ``data`` defaults to ``jaxzoo.data.get_datasets(config.dataset, ...)``, ``model`` to
    ``recipe.build_model`` (a module with the zoo's interface and a ``bn_axis_name`` set to
    ``"data"``), ``devices`` to all of them. The model, state and steps come from
    ``recipe.build_training``, as the benchmark's and the parity check's do.

    SIGTERM or SIGINT saves a checkpoint of the current step and raises ``TrainingInterrupted``;
    a NaN or infinite loss or gradient raises ``TrainingDiverged`` (or, with
    ``config.skip_nonfinite``, drops that update and counts it)."""
    is_main = jax.process_index() == 0
    log = print if is_main else (lambda *a, **k: None)
    mesh = make_mesh(devices)
    check_config(config, mesh.size, jax.process_count())
    run_workdir.check_writable(workdir)  # before the data is read: it may take a while
    config = with_pretrained_network(config, log)

    data = data if data is not None else _load_data(config)
    class_names = list(data.class_names)
    if len(class_names) < 2:
        raise ValueError(f"dataset {config.dataset!r} has {len(class_names)} class(es); "
                         f"classification needs at least two")
    num_classes, steps_per_epoch = len(class_names), data.steps_per_epoch
    if steps_per_epoch < 1:
        raise ValueError(f"dataset {config.dataset!r} has {data.num_train} training examples, "
                         f"fewer than one batch of {config.batch_size}; lower --config.batch_size")
    total_steps = config.num_epochs * steps_per_epoch

    # Before anything is written: a workdir that holds another run is refused (every process
    # checks, so all stop together).
    run_workdir.check_identity(workdir, config, class_names)
    if is_main:
        run_workdir.write_run_files(workdir, config, class_names)
    skipped = getattr(data, "skipped", None)
    if skipped:
        log(f"skipped in {config.dataset}: "
            + ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items())))

    manager = checkpoint.create_manager(workdir, config.checkpoints_to_keep, log=log)
    progress = checkpoint.latest_progress(manager)
    start_step = resume_step(progress, steps_per_epoch)
    if start_step >= total_steps:  # nothing to restore for: read the newest whole to be sure
        progress = checkpoint.verified_progress(manager, log=log)
        start_step = resume_step(progress, steps_per_epoch)
    if start_step >= total_steps:
        best = progress["best_val_accuracy"]
        log(f"already trained for {progress['epoch']} epoch(s) in {workdir} (best val_accuracy "
            f"{best if best is None else round(best, 3)}); raise --config.num_epochs to train "
            f"longer")
        manager.close()
        return progress.get("records") or report.read_metrics(workdir)
    # When resuming, the checkpoint has every weight: init_from would only be overwritten.
    init_from = "" if progress is not None else config.init_from
    training = build_training(config, mesh, num_classes=num_classes,
                              steps_per_epoch=steps_per_epoch, model=model, init_from=init_from,
                              log=log)
    state, progress = checkpoint.restore_latest(manager, training.state, log=log)
    if progress is None and init_from != config.init_from:  # every checkpoint was damaged
        training = build_training(config, mesh, num_classes=num_classes,
                                  steps_per_epoch=steps_per_epoch, model=training.model, log=log)
        state = training.state
    start_step = resume_step(progress, steps_per_epoch)  # older when the newest was damaged

    best, records, epoch_metrics = -math.inf, [], EpochMetrics()
    if progress is not None:
        best = progress["best_val_accuracy"] if progress["best_val_accuracy"] is not None else best
        epoch, position = divmod(start_step, steps_per_epoch)
        records = progress.get("records")  # older checkpoints: the metrics file
        if records is None:
            records = [r for r in report.read_metrics(workdir) if r["epoch"] <= epoch]
        if position:
            epoch_metrics = EpochMetrics(progress.get("sums"))
        log(f"resuming from {manager.directory} at step {start_step} (epoch {epoch + 1}, "
            f"step {position} of {steps_per_epoch}; best val_accuracy "
            f"{f'{best:.3f}' if math.isfinite(best) else 'none yet'})")

    train_step, eval_step = training.train_step, training.eval_step

    def save(step, val_accuracy=None):
        epoch, position = divmod(step, steps_per_epoch)
        if position == 0:  # an epoch's end: recorded as "epoch E, all its steps done"
            epoch, position = epoch - 1, steps_per_epoch
        checkpoint.save(manager, state, {
            "epoch": epoch + 1, "epoch_step": position, "steps_per_epoch": steps_per_epoch,
            "step": step, "val_accuracy": val_accuracy,
            "best_val_accuracy": best if math.isfinite(best) else None,
            "sums": epoch_metrics.state(), "records": records})

    def interrupted(step):
        epoch, position = divmod(step - 1, steps_per_epoch)
        where = (f"epoch {epoch + 1} done" if position + 1 == steps_per_epoch
                 else f"epoch {epoch + 1}, step {position + 1} of {steps_per_epoch}")
        return TrainingInterrupted(
            f"training stopped by {stop.signal or 'a signal to another process'} at step {step} "
            f"({where}); the checkpoint of that step is in {manager.directory}, and training "
            f"again in the same workdir resumes from it", signal=stop.signal, step=step)

    every = config.checkpoint_every_steps
    bar, pending, flops_per_step = None, None, None
    schedule = learning_rate_schedule(config, steps_per_epoch)
    tensorboard = report.TensorBoard(workdir) if is_main and config.tensorboard else None
    profile = Profile(workdir, start_step + 2, config.profile_steps) if is_main else None

    def record(pending) -> bool:
        """Read a step's metrics into the epoch's sums and the bar; returns its stop flag.
        Metrics (and the stop request) are read one step late, so the host never waits for
        the step it has just dispatched: it fetches the next batch and starts its copy to the
        devices while that step runs. Every process reads the same values, so all stop at the
        same step."""
        metrics, step, stop_flag = pending
        epoch = (step - 1) // steps_per_epoch + 1
        bar.update(epoch_metrics.add(metrics, step, epoch, config.skip_nonfinite))
        return bool(stop_flag)

    try:
        with StopRequest(mesh) as stop:
            for step, epoch, batch in _batches(data, start_step, config.num_epochs):
                if bar is None:
                    bar = EpochBar(epoch, config.num_epochs, (step - 1) % steps_per_epoch,
                                   steps_per_epoch, config.batch_size, is_main)
                sharded = shard_batch(mesh, batch)
                if step == start_step + 1:  # the FLOPs of a global step, from XLA's count
                    device_flops = report.step_flops(train_step, state, sharded)
                    flops_per_step = device_flops * mesh.size if device_flops else None
                if profile is not None:
                    profile.at(step, pending)
                state, metrics = train_step(state, sharded)
                stopping = pending is not None and record(pending)
                pending = (metrics, step, stop.poll())

                if step % steps_per_epoch:  # within an epoch
                    if stopping or (every and step % every == 0):
                        record(pending)
                        pending = None
                        save(step)
                        if stopping:
                            raise interrupted(step)
                    continue

                # The epoch's end. A stop request read now is acted on after its checkpoint.
                record(pending)
                pending = None
                timed = bar.timed()
                bar.close()
                bar = None
                val = evaluate(eval_step, state, mesh, data)
                if not math.isfinite(val["val_loss"]):
                    raise TrainingDiverged(f"validation loss is {val['val_loss']} after epoch "
                                           f"{epoch} (step {step})")
                best = max(best, val["val_accuracy"])
                if getattr(state, "ema", None) is not None:  # model_ema: the average, beside
                    averaged = evaluate(eval_step, ema.as_state(state), mesh, data)
                    val.update(ema_val_accuracy=averaged["val_accuracy"],
                               ema_val_loss=averaged["val_loss"])
                records.append({
                    "epoch": epoch, "step": step, **epoch_metrics.record(), **val,
                    "best_val_accuracy": best, "learning_rate": float(schedule(step - 1)),
                    "flops_per_step": flops_per_step,
                    **(report.throughput(*timed, flops_per_step, mesh.devices.flat)
                       if timed else dict.fromkeys(report.TIMING_FIELDS))})
                save(step, val["val_accuracy"])
                if is_main:
                    report.write_metrics(workdir, records)
                    report.plot_curves(workdir, records)
                if tensorboard is not None:
                    tensorboard.write(step, records[-1])
                log(report.epoch_line(records[-1], epoch_metrics.nonfinite_steps), flush=True)
                epoch_metrics = EpochMetrics()
                if step < total_steps and bool(stop.poll()):
                    raise interrupted(step)
    except TrainingDiverged as e:
        manager.wait_until_finished()
        kept = manager.latest_step()
        where = (f"the last good checkpoint (step {kept}) is kept in {manager.directory}"
                 if kept is not None else "no checkpoint had been saved yet")
        raise TrainingDiverged(f"{e}; training stopped, {where}. Lower --config.learning_rate, "
                               f"set --config.grad_clip_norm, or skip such updates with "
                               f"--config.skip_nonfinite=True.") from None
    finally:
        if bar is not None:
            bar.close()
        if tensorboard is not None:
            tensorboard.close()
        if profile is not None:
            profile.stop()
        manager.wait_until_finished()
        manager.close()
    return records
