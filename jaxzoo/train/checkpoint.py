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
import re

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

# Checkpoints saved within an epoch carry no validation accuracy (so they never rank as best);
# orbax warns about each one.
logging.getLogger("absl").addFilter(
    lambda record: "did not provide metrics" not in record.getMessage())


CHECKPOINTS_DIR = "checkpoints"  # WORKDIR/checkpoints: orbax's steps


def checkpoints_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR)


def _val_accuracy(metrics) -> float:
    return metrics["val_accuracy"]


def create_manager(workdir: str, keep_latest: int, read_only: bool = False,
                   log=print) -> ocp.CheckpointManager:
    """``read_only``: for readers beside a running training (prediction, evaluation): nothing is
    created, cleaned up or deleted.

    orbax reads every checkpoint's metrics when it opens the folder; a checkpoint whose metrics
    file is damaged is moved aside (``move_aside``, reported with ``log``), or, for a reader,
    named in a one-line error."""
    try:
        return _manager(workdir, keep_latest, read_only)
    except Exception:  # a damaged metrics file is found below; anything else is re-raised
        directory = checkpoints_dir(workdir)
        damaged = _unreadable_metrics(directory)
        if not damaged:
            raise
    for step, error in damaged:
        if read_only:
            raise ValueError(f"the checkpoint of step {step} in {directory} is damaged "
                             f"({failure(error)}); train again in this workdir to move it aside")
        where = move_aside(directory, step)
        log(f"warning: the checkpoint of step {step} cannot be restored ({failure(error)}); "
            f"moved it to {where} and going back to the one before", flush=True)
    return _manager(workdir, keep_latest, read_only)


def _unreadable_metrics(directory: str) -> list[tuple[int, Exception]]:
    """The finished checkpoints whose metrics file (orbax's JSON, read when a manager opens the
    folder) does not read, with the error."""
    from orbax.checkpoint import path as ocp_path

    out = []
    for step in ocp_path.step.checkpoint_steps(directory):
        path = os.path.join(directory, str(step), "metrics", "metrics")
        if not os.path.exists(path):
            continue
        try:
            with open(path) as f:
                json.load(f)
        except (OSError, ValueError) as e:
            e.args = (f"{path}: {e}",)
            out.append((step, e))
    return out


def _unreadable_json(step_dir: str) -> str:
    """The first of orbax's JSON files under ``step_dir`` that does not parse (or the folder)."""
    for directory, _, names in sorted(os.walk(step_dir)):
        for name in sorted(names):
            path = os.path.join(directory, name)
            if name == "commit_success.txt" or os.path.getsize(path) > 1 << 24:
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(1)
                    if head in (b"{", b"["):
                        json.loads(head + f.read())
            except (OSError, ValueError):
                return path
    return step_dir


def _manager(workdir: str, keep_latest: int, read_only: bool) -> ocp.CheckpointManager:
    preserve = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep_latest),
        policies.BestN(get_metric_fn=_val_accuracy, n=1, keep_checkpoints_without_metrics=False),
    ])
    # best_fn makes orbax write each checkpoint's metrics to disk; without it a restarted run
    # sees no metrics, BestN keeps nothing, and the best checkpoint is deleted as old.
    options = ocp.CheckpointManagerOptions(preservation_policy=preserve, best_fn=_val_accuracy,
                                           create=not read_only, read_only=read_only,
                                           cleanup_tmp_directories=not read_only)
    return ocp.CheckpointManager(checkpoints_dir(workdir),
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


def failure(error: BaseException) -> str:
    """One line saying what failed (orbax and tensorstore name the file in their messages)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= 400 else text[:397] + "..."
    # tensorstore names the file it could not read ('local file "..."'), maybe past the cut.
    files = re.findall(r'local file "([^"]+)"', str(error))
    if files and files[-1] not in text:
        text += f" (file {files[-1]})"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _saved_tree(manager: ocp.CheckpointManager, step: int):
    """The tree of arrays the checkpoint of ``step`` holds (its metadata; no array is read)."""
    return ocp.PyTreeCheckpointHandler().metadata(manager.directory / str(step) / "state").tree


def _structure_differences(saved, abstract) -> list[str]:
    """Where the saved train state and the one this run builds differ in their leaves' paths or
    shapes (a ``state.opt_state`` of another optimizer, a head of another width)."""
    from flax import serialization

    def name(path) -> str:  # "opt_state/inner_states/train/0/mu": the same for lists and dicts
        return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                        for k in path)

    ours = {name(p): tuple(x.shape) for p, x in
            jax.tree_util.tree_leaves_with_path(serialization.to_state_dict(abstract))}
    theirs = {name(p): tuple(getattr(x, "shape", ()) or ()) for p, x in
              jax.tree_util.tree_leaves_with_path(saved)}
    out = [f"{k} {theirs[k]} saved, {ours[k]} now" for k in sorted(set(ours) & set(theirs))
           if theirs[k] != ours[k]]
    out += [f"{k} only in the checkpoint" for k in sorted(set(theirs) - set(ours))]
    out += [f"{k} only now" for k in sorted(set(ours) - set(theirs))]
    return out


class StateMismatch(ValueError):
    """The workdir's checkpoints hold a train state of another shape than this run's."""


def move_aside(directory, step: int) -> str:
    """Move the checkpoint of ``step`` out of orbax's sight, from ``directory`` (the manager's)
    to ``WORKDIR/damaged_checkpoints/STEP`` (never deleted); returns where it went. Process 0
    moves it; every process waits for that."""
    from jax.experimental import multihost_utils

    source = os.path.join(str(directory), str(step))
    target = os.path.join(os.path.dirname(str(directory)), "damaged_checkpoints", str(step))
    n = 1
    while os.path.exists(target if n == 1 else f"{target}-{n}"):
        n += 1
    target = target if n == 1 else f"{target}-{n}"
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(source, target)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"jaxzoo_move_aside_{step}")
    return target


def restore_latest(manager: ocp.CheckpointManager, state, log=print):
    """``(state, progress)`` from the newest checkpoint that restores, with ``state``'s shardings
    (whatever the device or process count it was saved with); or ``(state, None)``.

    orbax lists only finished checkpoints (a save cut short leaves a temporary folder that it
    neither lists nor restores, and removes). A finished one that cannot be read (a truncated or
    lost file) is reported (step, file, what failed), moved aside by ``move_aside`` and the one
    before it is tried. A checkpoint of another train state (another optimizer, another head)
    is not damage: ``StateMismatch`` names the differing leaves, and nothing is moved."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            saved = _saved_tree(manager, step)
        except Exception as e:  # noqa: BLE001  (an unreadable metadata file)
            error = e
        else:
            changed = _structure_differences(saved, abstract)
            if changed:
                raise StateMismatch(
                    f"the checkpoint of step {step} in {manager.directory} holds another train "
                    f"state than this run builds ({'; '.join(changed[:4])}"
                    f"{f'; {len(changed) - 4} more' if len(changed) > 4 else ''}): a setting "
                    f"that shapes the state (optimizer, weight decay, clipping, trainable, "
                    f"model) differs from the run's config.json. Train with the run's settings, "
                    f"in another --workdir, or start over with --restart")
            try:
                restored = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()))
                return restored["state"], dict(restored["progress"])
            except Exception as e:  # noqa: BLE001  (whatever orbax or tensorstore raise)
                error = e
        _report_and_move(manager, step, error, log)
    return state, None


def _report_and_move(manager: ocp.CheckpointManager, step: int, error: Exception, log) -> None:
    what = failure(error)
    if isinstance(error, json.JSONDecodeError):  # json names no file: find it
        what = f"{_unreadable_json(os.path.join(str(manager.directory), str(step)))}: {what}"
    where = move_aside(manager.directory, step)
    manager.reload()
    log(f"warning: the checkpoint of step {step} cannot be restored ({what}); moved it to "
        f"{where} and going back to the one before", flush=True)


def latest_progress(manager: ocp.CheckpointManager) -> dict | None:
    """The JSON record of the newest checkpoint whose record reads (cheap: the state is not
    read), or None. ``restore_latest`` moves a damaged one aside."""
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            restored = manager.restore(step, args=ocp.args.Composite(
                progress=ocp.args.JsonRestore()))
            return dict(restored["progress"])
        except Exception:  # noqa: BLE001,S112  (reported when restore_latest gets there)
            continue
    return None


def verified_progress(manager: ocp.CheckpointManager, log=print) -> dict | None:
    """The JSON record of the newest checkpoint that reads whole (its arrays are read as numpy,
    without the run's train state to restore into); damaged ones are reported and moved aside
    as ``restore_latest`` does. For a finished run, which restores nothing to train."""
    import numpy as np

    for step in sorted(manager.all_steps(), reverse=True):
        try:
            saved = _saved_tree(manager, step)
            restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), saved)
            # A checkpointer of its own: the manager's "state" item stays StandardSave's.
            with ocp.PyTreeCheckpointer() as checkpointer:
                checkpointer.restore(manager.directory / str(step) / "state",
                                     args=ocp.args.PyTreeRestore(restore_args=restore_args))
            restored = manager.restore(step, args=ocp.args.Composite(
                progress=ocp.args.JsonRestore()))
            return dict(restored["progress"])
        except Exception as error:  # noqa: BLE001  (whatever orbax or tensorstore raise)
            _report_and_move(manager, step, error, log)
    return None
