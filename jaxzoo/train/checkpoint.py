"""Checkpoints: an orbax CheckpointManager keeping the latest K epochs and the best one by
validation accuracy. Each checkpoint holds the train state (step, params, batch_stats, optimizer
state, rng) and a JSON record of where training stood (epoch, step within the epoch, metrics)."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


def create_manager(workdir: str, keep_latest: int) -> ocp.CheckpointManager:
    preserve = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep_latest),
        policies.BestN(get_metric_fn=lambda metrics: metrics["val_accuracy"], n=1,
                       keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(preservation_policy=preserve, create=True)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                 options=options, item_names=("state", "progress"))


def save(manager: ocp.CheckpointManager, state, progress: dict) -> None:
    """Save at ``state.step``; ``progress`` (epoch, val_accuracy, best_val_accuracy, ...) is
    stored as JSON and its ``val_accuracy`` ranks the checkpoint."""
    step = int(jax.device_get(state.step))
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               progress=ocp.args.JsonSave(progress)),
                 metrics={"val_accuracy": float(progress["val_accuracy"])})


def restore_latest(manager: ocp.CheckpointManager, state):
    """``(state, progress)`` from the latest checkpoint, restored with ``state``'s shardings; or
    ``(state, None)`` when there is none."""
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
