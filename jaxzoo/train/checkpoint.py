"""Checkpoints: an orbax CheckpointManager keeping the latest K and the best one by validation
accuracy. Each checkpoint holds the train state (step, params, batch_stats, optimizer state,
rng) and a JSON record of where training stood (epoch, step within the epoch, the epoch's
running sums, the metrics of the epochs before).

orbax writes a checkpoint into a temporary folder and renames it when complete, so a process
killed while saving leaves the checkpoints before intact; the temporary folder is removed when
the next run opens the manager. Every process of a multi-process run calls ``save`` and
``restore`` together."""
from __future__ import annotations

import json
import logging
import math
import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

# Checkpoints saved within an epoch carry no validation accuracy (so they never rank as best);
# orbax warns about each one.
logging.getLogger("absl").addFilter(
    lambda record: "did not provide metrics" not in record.getMessage())


def _val_accuracy(metrics) -> float:
    return metrics["val_accuracy"]


def create_manager(workdir: str, keep_latest: int,
                   read_only: bool = False) -> ocp.CheckpointManager:
    """``read_only``: for readers beside a running training (prediction, evaluation): nothing is
    created, cleaned up or deleted."""
    preserve = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep_latest),
        policies.BestN(get_metric_fn=_val_accuracy, n=1, keep_checkpoints_without_metrics=False),
    ])
    # best_fn makes orbax write each checkpoint's metrics to disk; without it a restarted run
    # sees no metrics, BestN keeps nothing, and the best checkpoint is deleted as old.
    options = ocp.CheckpointManagerOptions(preservation_policy=preserve, best_fn=_val_accuracy,
                                           create=not read_only, read_only=read_only,
                                           cleanup_tmp_directories=not read_only)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                 options=options, item_names=("state", "progress"))


def save(manager: ocp.CheckpointManager, state, progress: dict) -> None:
    """Save at ``state.step``; ``progress`` (epoch, val_accuracy, best_val_accuracy, ...) is
    stored as JSON. A finite ``val_accuracy`` ranks the checkpoint for "best"; None (a save
    within an epoch) does not rank it."""
    step = int(jax.device_get(state.step))
    progress = json.loads(json.dumps(progress))  # a copy: the save finishes in the background
    accuracy = progress.get("val_accuracy")
    ranked = accuracy is not None and math.isfinite(accuracy)
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               progress=ocp.args.JsonSave(progress)),
                 metrics={"val_accuracy": float(accuracy)} if ranked else None)


def restore_latest(manager: ocp.CheckpointManager, state):
    """``(state, progress)`` from the latest checkpoint, restored with ``state``'s shardings
    (whatever the device or process count it was saved with); or ``(state, None)``."""
    step = manager.latest_step()
    if step is None:
        return state, None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["progress"])


def latest_progress(manager: ocp.CheckpointManager) -> dict | None:
    """The JSON record of the latest checkpoint (cheap: the state is not read), or None."""
    step = manager.latest_step()
    if step is None:
        return None
    restored = manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))
    return dict(restored["progress"])
