"""A training workdir (what ``python train.py`` leaves): its config, class names and the weights
of its best checkpoint; what run it holds (its identity), checked before a run writes into it and
when a reader takes its weights.

    run = load_run("runs/resnet34")
    run.model, run.image_size, run.class_names, run.step, run.variables

The identity of a run is what its checkpoints mean: the model and its options, the classes (their
number and names, in order), the dataset, the image size, the compute dtype, what is trained and
the global batch (the position in the data a step stands for), the optimizer and whether an
average of the weights is kept (the shape of the train state). The first run records it in
``identity.json``; a later run in the same workdir whose identity differs is refused before it
writes anything (``check_identity``), with the differences spelled out, and ``move_aside`` (what
``train.py --restart`` does) keeps the old run under another name so the workdir can start over.
Settings that may change between runs (more epochs, the learning rate, checkpoint frequency)
resume as before.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from jaxzoo import weights
from jaxzoo.convert.torchvision import num_classes_of
from jaxzoo.train import checkpoint

# The files of a run, written by write_run_files and read back here (checkpoints: the
# ``checkpoint`` module's CHECKPOINTS_DIR; metrics and curves: ``report``'s).
CONFIG_JSON = "config.json"            # the resolved config
CLASS_NAMES_JSON = "class_names.json"  # {"0": name, ...}
IDENTITY_JSON = "identity.json"        # what the run is (IDENTITY_FIELDS)
# The config fields that make a run's checkpoints what they are (besides its class names).
IDENTITY_FIELDS = ("model", "model_kwargs", "dataset", "image_size", "dtype", "trainable",
                   "batch_size", "optimizer", "model_ema")


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


class WorkdirMismatch(ValueError):
    """A run was asked to train in (or read from) a workdir that holds another run."""


def read_json(path: str, what: str):
    """The JSON in ``path``; a damaged file is a one-line error naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is damaged ({what}; not valid JSON: {e}); restore it from a "
                         f"copy, or train again in another --workdir") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is damaged ({what}; not text); restore it from a copy, or "
                         f"train again in another --workdir") from None
    except PermissionError:
        raise ValueError(f"cannot read {path} ({what}): permission denied") from None


def read_config(workdir: str) -> dict:
    """The resolved config of a workdir; clear errors when there is no training run there."""
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"no workdir at {workdir}; {_train_first(workdir)}")
    path = os.path.join(workdir, CONFIG_JSON)
    if not os.path.isfile(path):
        if weights.is_weights_dir(workdir):
            raise ValueError(f"{workdir} holds converted weights, not a training run: use "
                             f"--weights {workdir} instead of --workdir")
        raise FileNotFoundError(f"{workdir} is not a training workdir (no config.json in it); "
                                f"{_train_first(workdir)}")
    config = read_json(path, "the run's config")
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{path} is damaged (the run's config, without its model); restore it "
                         f"from a copy, or train again in another --workdir")
    return config


def read_class_names(workdir: str) -> list[str]:
    path = os.path.join(workdir, CLASS_NAMES_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no class_names.json in {workdir}: the class names of the run "
                                f"are missing (train.py writes them beside config.json)")
    names = read_json(path, "the run's class names")
    try:
        return [str(names[str(i)]) for i in range(len(names))]
    except (KeyError, TypeError):
        raise ValueError(f"{path} is damaged (expected {{\"0\": name, \"1\": name, ...}}); "
                         f"restore it from a copy, or train again in another --workdir") from None


# ------------------------------------------------------------------ the identity of a run

def _dataset_id(dataset: str) -> str:
    """``folder:PATH`` with PATH absolute (the same folder named from elsewhere is the same)."""
    if isinstance(dataset, str) and dataset.startswith("folder:"):
        return "folder:" + os.path.abspath(os.path.expanduser(dataset.partition(":")[2]))
    return dataset


def identity(config, class_names) -> dict:
    """What a run is (``IDENTITY_FIELDS`` of ``config``, a ConfigDict or the dict of config.json,
    and its classes), as JSON-able values."""
    def plain(value):
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        return json.loads(json.dumps(value, sort_keys=True, default=str))

    record = {field: plain(config.get(field)) for field in IDENTITY_FIELDS}
    record["dataset"] = _dataset_id(record["dataset"])
    record["model_kwargs"] = record["model_kwargs"] or {}
    record["num_classes"] = len(class_names)
    record["class_names"] = [str(c) for c in class_names]
    return record


def has_checkpoint(workdir: str) -> bool:
    """Whether ``workdir`` holds a finished checkpoint (orbax's finalized step folders; the
    temporary folder of an unfinished save does not count)."""
    from orbax.checkpoint import path as ocp_path

    directory = checkpoint.checkpoints_dir(workdir)
    return os.path.isdir(directory) and bool(ocp_path.step.checkpoint_steps(directory))


def recorded_identity(workdir: str) -> dict | None:
    """The identity the workdir's run recorded (``identity.json``; for a workdir from before it
    was recorded, the one its config.json and class_names.json give), or None."""
    path = os.path.join(workdir, IDENTITY_JSON)
    if os.path.isfile(path):
        return read_json(path, "what run the workdir holds")
    if os.path.isfile(os.path.join(workdir, CONFIG_JSON)):
        return identity(read_config(workdir), read_class_names(workdir))
    return None


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def differences(old: dict, new: dict) -> list[str]:
    """``field: old -> new`` for every field of the identities that differs."""
    out = []
    for field in [*IDENTITY_FIELDS, "num_classes", "class_names"]:
        if old.get(field) is None or old.get(field) == new.get(field):
            continue  # (None: recorded before the field existed)
        if field == "class_names" and old.get("num_classes") == new.get("num_classes"):
            changed = [f"{i}: {a} -> {b}" for i, (a, b) in enumerate(
                zip(old["class_names"], new["class_names"])) if a != b]
            out.append("class_names: " + ", ".join(changed[:5])
                       + (f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""))
            continue
        out.append(f"{field}: {_short(old.get(field))} -> {_short(new.get(field))}")
    return out


def check_identity(workdir: str, config, class_names) -> None:
    """Refuse (``WorkdirMismatch``) to train ``config`` in ``workdir`` when it holds checkpoints
    of another run; nothing is written. A workdir without a finished checkpoint has nothing to
    lose and takes any run."""
    if not has_checkpoint(workdir):
        return
    old = recorded_identity(workdir)
    if old is None:
        return
    changed = differences(old, identity(config, class_names))
    if changed:
        raise WorkdirMismatch(
            f"{workdir} holds another run ({'; '.join(changed)}). Train this one in another "
            f"--workdir, or start over in this one with --restart (the old run is moved to "
            f"{os.path.basename(os.path.normpath(workdir))}.old-<time> beside it, not deleted)")


def check_writable(workdir: str) -> None:
    """Create ``workdir`` if needed and make sure files can be written in it: a one-line error
    naming it otherwise."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write in the workdir {workdir} ({e.strerror or e}); choose a "
                         f"writable --workdir") from None


def write_identity(workdir: str, config, class_names) -> None:
    """Record the run's identity (written once: the first run's is the one that counts)."""
    path = os.path.join(workdir, IDENTITY_JSON)
    if os.path.isfile(path) and has_checkpoint(workdir):
        return
    with open(path + ".tmp", "w") as f:
        json.dump(identity(config, class_names), f, indent=2)
    os.replace(path + ".tmp", path)


def move_aside(workdir: str) -> str | None:
    """Rename ``workdir`` to ``WORKDIR.old-YYYYmmdd-HHMMSS`` beside it (nothing is deleted), so a
    new run can start there; returns the new name, or None when there was no workdir."""
    workdir = os.path.normpath(workdir)
    if not os.path.exists(workdir):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = f"{workdir}.old-{stamp}", 1
    while os.path.exists(target):
        n += 1
        target = f"{workdir}.old-{stamp}-{n}"
    try:
        os.rename(workdir, target)
    except OSError as e:
        raise ValueError(f"cannot move the old run in {workdir} aside to {target} "
                         f"({e.strerror or e}); move it yourself, or use another --workdir") \
            from None
    return target


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
    statistics only; the optimizer state is not read. A run with ``config.model_ema`` gives the
    weights' average instead, as the reference script ships its EMA weights."""
    import jax
    import orbax.checkpoint as ocp

    workdir = os.path.abspath(workdir)
    config = read_config(workdir)
    missing = (f"no checkpoint in {os.path.join(workdir, 'checkpoints')} yet; "
               f"{_train_first(workdir, config.get('model', 'NAME'))} "
               f"(a checkpoint is written at the end of every epoch)")
    if not os.path.isdir(checkpoint.checkpoints_dir(workdir)):
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
        try:
            progress = _progress(manager, step)
            state_dir = manager.directory / str(step) / "state"
            saved = ocp.PyTreeCheckpointHandler().metadata(state_dir).tree
            average = saved.get("ema") or {}  # config.model_ema: the average is the model
            source = average if average.get("params") else saved
            wanted = {k: source[k] for k in ("params", "batch_stats") if source.get(k)}
            if source is average:
                wanted = {"ema": wanted}
            restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                        wanted)
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(item=wanted, restore_args=restore_args,
                                             partial_restore=True)))
        except Exception as e:  # noqa: BLE001  (whatever orbax or tensorstore raise)
            others = sorted(set(manager.all_steps()) - {step})
            raise ValueError(
                f"the checkpoint of step {step} in {manager.directory} cannot be read "
                f"({checkpoint.failure(e)})"
                + (f"; read another one with --step (there are {others}), or train again in "
                   f"this workdir, which moves a damaged checkpoint aside" if others else
                   "; train again in this workdir to replace it")) from None
    finally:
        manager.close()
    run = TrainedRun(workdir=workdir, config=config, class_names=read_class_names(workdir),
                     step=int(step), progress=progress,
                     variables=dict(restored["state"].get("ema", restored["state"])))
    check_run(run)
    return run


def check_run(run: TrainedRun) -> None:
    """What a reader checks before using a run's weights: the class names, the config and the
    recorded identity tell of the same run, and the checkpoint's classifier has one output per
    class name."""
    recorded_path = os.path.join(run.workdir, IDENTITY_JSON)
    if os.path.isfile(recorded_path):
        changed = differences(read_json(recorded_path, "what run the workdir holds"),
                              identity(run.config, run.class_names))
        if changed:
            raise WorkdirMismatch(
                f"config.json and class_names.json in {run.workdir} do not describe the run its "
                f"checkpoints hold ({'; '.join(changed)}: {IDENTITY_JSON} -> now); they were "
                f"rewritten by another run. Restore them, or train again with --restart")
    try:
        outputs = num_classes_of(run.model, run.variables)
    except (KeyError, ValueError):  # a model outside the registry: no known classifier
        return
    if outputs != len(run.class_names):
        raise WorkdirMismatch(
            f"the checkpoint of step {run.step} in {run.workdir} has {outputs} outputs, but "
            f"class_names.json names {len(run.class_names)} classes; the files of another run "
            f"were written over this one's. Restore them, or train again with --restart")


def write_run_files(workdir: str, config, class_names: list[str]) -> None:
    """The resolved config and the class names (index -> name), what prediction reads back, and
    the run's identity (recorded by the first run, checked by the later ones before this is
    called). Each file is written beside and renamed into place, so a run
    killed while writing leaves the previous one whole."""
    _write_atomic(os.path.join(workdir, CONFIG_JSON), config.to_json_best_effort(indent=2) + "\n")
    _write_atomic(os.path.join(workdir, CLASS_NAMES_JSON), json.dumps(
        {str(i): name for i, name in enumerate(class_names)}, indent=2))
    write_identity(workdir, config, class_names)


def _write_atomic(path: str, text: str) -> None:
    """Write beside and rename; a file that already holds ``text`` is left as it is."""
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except (OSError, UnicodeDecodeError):
        pass
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
