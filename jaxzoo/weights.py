"""Model weights on disk: an orbax checkpoint of ``{'params', 'batch_stats'}`` plus ``model.json``
saying which model it is (name, number of classes, constructor options, class names).

``python -m jaxzoo convert`` writes this format, and so does the cache of converted torchvision
weights (``~/.cache/jaxzoo/weights/<file name>/``, see ``jaxzoo.convert.loader``); training
(``config.init_from``) and prediction read it through ``jaxzoo.convert.load``.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

MODEL_JSON = "model.json"
VARIABLES_DIR = "variables"


def save_weights(directory: str, model_name: str, variables: dict, *, num_classes: int,
                 model_kwargs: dict[str, Any] | None = None,
                 class_names: list[str] | None = None, source: str | None = None) -> str:
    """Write ``variables`` for ``model_name`` under ``directory`` (created; must not hold weights)."""
    directory = os.path.abspath(directory)
    if os.path.exists(os.path.join(directory, VARIABLES_DIR)):
        raise FileExistsError(f"{directory} already holds weights; choose another --out directory")
    os.makedirs(directory, exist_ok=True)
    tree = {k: variables[k] for k in ("params", "batch_stats") if k in variables}
    tree = jax.tree.map(np.asarray, tree)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, VARIABLES_DIR), tree)
    checkpointer.wait_until_finished()
    meta = {"model": model_name, "num_classes": int(num_classes),
            "model_kwargs": model_kwargs or {}, "class_names": class_names, "source": source}
    with open(os.path.join(directory, MODEL_JSON), "w") as f:
        json.dump(meta, f, indent=2)
    return directory


def is_weights_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MODEL_JSON)) and os.path.isdir(
        os.path.join(path, VARIABLES_DIR))


def load_weights(directory: str) -> tuple[dict, dict]:
    """Read what ``save_weights`` wrote: returns ``(variables, meta)``."""
    directory = os.path.abspath(directory)
    if not is_weights_dir(directory):
        raise FileNotFoundError(
            f"{directory} is not a jaxzoo weights directory (expected {MODEL_JSON} and "
            f"{VARIABLES_DIR}/ in it). Create one with: python -m jaxzoo convert NAME WEIGHTS.pth "
            f"--out {directory}")
    with open(os.path.join(directory, MODEL_JSON)) as f:
        meta = json.load(f)
    variables = ocp.StandardCheckpointer().restore(os.path.join(directory, VARIABLES_DIR))
    return dict(variables), meta
