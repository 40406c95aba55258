"""A trained model back to PyTorch: the best checkpoint of a workdir as a torchvision state dict.

    path, constructor = export_workdir("runs/resnet34", "resnet34_flowers.pth")
    # constructor: "torchvision.models.resnet34(num_classes=5)", which loads it with strict=True;
    # the class names go to resnet34_flowers.class_names.json
"""
from __future__ import annotations

import json
import os

from jaxzoo.convert.torchvision import num_classes_of, save_torch, to_torch
from jaxzoo.models.registry import get_spec, list_models


def torchvision_kwargs(name: str, model_kwargs: dict) -> dict:
    """The torchvision builder's arguments for a jaxzoo model built with ``model_kwargs``
    (the two share argument names: ``aux_logits``, ``dropout``, ``width_mult``, ...)."""
    return {**get_spec(name).torch_kwargs, **model_kwargs}


def export_workdir(workdir: str, out: str, step: int | None = None) -> tuple[str, str]:
    """Write the best checkpoint of ``workdir`` (or ``step``) as a ``.pth`` state dict of its
    torchvision counterpart, and its class names beside it (``class_names_path``); returns
    ``(path, constructor)``, the torchvision call that builds the model the file loads into.
    When torchvision is installed the state dict is loaded into that model (strict) before it is
    written, so a mismatch is an error here rather than in the user's script."""
    from jaxzoo.workdir import load_run

    run = load_run(workdir, step)
    spec = get_spec(run.model)
    if spec.torchvision is None:
        counterparts = [n for n in list_models() if get_spec(n).torchvision]
        raise ValueError(
            f"{run.model} has no torchvision counterpart, so there is no torchvision model to "
            f"export it to (export works for {', '.join(counterparts)}). Use it from jaxzoo: "
            f"python -m jaxzoo predict --workdir {workdir} IMAGES")
    state = to_torch(run.model, run.variables)
    kwargs = {"num_classes": num_classes_of(run.model, run.variables),
              **torchvision_kwargs(run.model, run.model_kwargs)}
    constructor = f"torchvision.models.{spec.torchvision}(" + ", ".join(
        f"{k}={v!r}" for k, v in kwargs.items()) + ")"
    _check_loads(spec.torchvision, kwargs, state, constructor)
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    save_torch(state, out)
    with open(class_names_path(out), "w") as f:
        json.dump({str(i): name for i, name in enumerate(run.class_names)}, f, indent=2)
    return out, constructor


def class_names_path(weights_file: str) -> str:
    """Where ``export_workdir`` puts the class names of ``weights_file``: beside it,
    ``model.pth`` -> ``model.class_names.json``."""
    return os.path.splitext(weights_file)[0] + ".class_names.json"


def _check_loads(builder: str, kwargs: dict, state: dict, constructor: str) -> None:
    try:
        import torch
        import torchvision
    except ImportError:
        return
    try:
        model = getattr(torchvision.models, builder)(weights=None, **kwargs)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"the exported state dict does not load into {constructor}: "
                         f"{str(e).strip()}") from e
