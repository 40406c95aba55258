"""Reading a training workdir (what ``python train.py`` leaves): its config, class names and the
weights of its best checkpoint.

    run = load_run("runs/resnet34")
    run.model, run.image_size, run.class_names, run.step, run.variables
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np


@dataclasses.dataclass
class TrainedRun:
    """The best checkpoint of a workdir, with what is needed to use it."""

    workdir: str
    config: dict
    class_names: list[str]
    step: int
    progress: dict        # epoch, step, val_accuracy, best_val_accuracy at that checkpoint
    variables: dict       # {'params': ..., 'batch_stats': ...} as numpy arrays

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def model_kwargs(self) -> dict:
        return dict(self.config.get("model_kwargs") or {})

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])


def _train_first(workdir: str, model: str = "NAME") -> str:
    return f"train first: python train.py --config={model} --workdir={workdir}"


def read_config(workdir: str) -> dict:
    """The resolved config of a workdir; clear errors when there is no training run there."""
    from jaxzoo import weights

    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"no workdir at {workdir}; {_train_first(workdir)}")
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        if weights.is_weights_dir(workdir):
            raise ValueError(f"{workdir} holds converted weights, not a training run: use "
                             f"--weights {workdir} instead of --workdir")
        raise FileNotFoundError(f"{workdir} is not a training workdir (no config.json in it); "
                                f"{_train_first(workdir)}")
    with open(path) as f:
        return json.load(f)


def read_class_names(workdir: str) -> list[str]:
    with open(os.path.join(workdir, "class_names.json")) as f:
        names = json.load(f)
    return [names[str(i)] for i in range(len(names))]


def _progress(manager, step: int) -> dict:
    import orbax.checkpoint as ocp

    return dict(manager.restore(step, args=ocp.args.Composite(
        progress=ocp.args.JsonRestore()))["progress"])


def best_step(manager) -> int | None:
    """The checkpoint training keeps as its best: orbax's ``best_step`` by validation accuracy
    (``jaxzoo.train.checkpoint``: the latest among equals; checkpoints saved within an epoch are
    not ranked), or the latest when none is ranked. None when there is no checkpoint."""
    step = manager.best_step()
    return step if step is not None else manager.latest_step()


def load_run(workdir: str, step: int | None = None) -> TrainedRun:
    """The best checkpoint of ``workdir`` (or checkpoint ``step``): its params and BatchNorm
    statistics only; the optimizer state is not read."""
    import jax
    import orbax.checkpoint as ocp

    from jaxzoo.train import checkpoint

    workdir = os.path.abspath(workdir)
    config = read_config(workdir)
    missing = (f"no checkpoint in {os.path.join(workdir, 'checkpoints')} yet; "
               f"{_train_first(workdir, config.get('model', 'NAME'))} "
               f"(a checkpoint is written at the end of every epoch)")
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise FileNotFoundError(missing)
    manager = checkpoint.create_manager(workdir, int(config.get("checkpoints_to_keep", 1)),
                                        read_only=True)
    try:
        if step is None:
            step = best_step(manager)
            if step is None:
                raise FileNotFoundError(missing)
        elif step not in manager.all_steps():
            raise ValueError(f"no checkpoint at step {step} in {workdir}; there are "
                             f"{sorted(manager.all_steps())}")
        progress = _progress(manager, step)
        state_dir = manager.directory / str(step) / "state"
        saved = ocp.PyTreeCheckpointHandler().metadata(state_dir).tree
        wanted = {k: saved[k] for k in ("params", "batch_stats") if saved.get(k)}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=wanted, restore_args=restore_args, partial_restore=True)))
    finally:
        manager.close()
    return TrainedRun(workdir=workdir, config=config, class_names=read_class_names(workdir),
                      step=int(step), progress=progress, variables=dict(restored["state"]))
