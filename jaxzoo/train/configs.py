"""The config files (``configs/NAME.py``, each with ``get_config(preset=None)``): finding them
by name, loading them, and checking ``--config.KEY=VALUE`` overrides against their fields.
``train.py``, the benchmark and ``python -m jaxzoo check --train-steps`` load configs here."""
from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import os
import sys

# configs/ sits beside the package in the source tree (the install is editable).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(ROOT, "configs")


def available_configs() -> list[str]:
    return sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                  if f.endswith(".py") and f not in ("__init__.py", "default.py"))


def config_file(name_or_path: str) -> tuple[str, str]:
    """``(path, name)`` of a config given by name (``resnet34``) or by path; an unknown name is
    an error that names the close ones and lists them all."""
    if name_or_path.endswith(".py") or os.sep in name_or_path:
        if not os.path.isfile(name_or_path):
            raise ValueError(f"config file {name_or_path} does not exist")
        return name_or_path, os.path.splitext(os.path.basename(name_or_path))[0]
    names = available_configs()
    if name_or_path not in names:
        close = difflib.get_close_matches(name_or_path, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown config {name_or_path!r}. Available configs: "
                         f"{', '.join(names)} (or a path to a config file).{hint}")
    return os.path.join(CONFIG_DIR, f"{name_or_path}.py"), name_or_path


def load_config(name_or_path: str, preset: str | None = None):
    """``get_config(preset)`` of a config file, as ``--config=NAME[:PRESET]`` gives it."""
    path, name = config_file(name_or_path)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)  # config files import configs.default
    spec = importlib.util.spec_from_file_location(f"_jaxzoo_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset) if preset else module.get_config()


def check_override(config, key: str) -> None:
    """Raise ValueError naming the closest fields when ``config`` has no (dotted) field ``key``."""
    node, walked = config, []
    for part in key.split("."):
        fields = list(node.keys()) if hasattr(node, "keys") else []
        if part not in fields:
            close = difflib.get_close_matches(part, fields, n=3, cutoff=0.5)
            where = f"config.{'.'.join(walked)}" if walked else "the config"
            hint = (" Did you mean "
                    + ", ".join("--config." + ".".join([*walked, c]) for c in close) + "?"
                    if close else "")
            raise ValueError(f"{where} has no field {part!r} (from --config.{key}).{hint} Its "
                             f"fields: {', '.join(sorted(fields)) or 'none'}")
        node, walked = node[part], [*walked, part]


# Model fields that the config sets itself (num_classes from the data, dtype from config.dtype,
# ...), not through model_kwargs.
_NOT_MODEL_KWARGS = ("parent", "name", "num_classes", "dtype", "bn_axis_name", "lowering",
                     "remat")


def model_kwargs_fields(model: str) -> list[str]:
    """The fields of ``model`` that ``config.model_kwargs`` may set (``in_channels``,
    ``transform_input``, ``dropout``, ...)."""
    from jaxzoo.models import create_model

    return sorted(f.name for f in dataclasses.fields(type(create_model(model)))
                  if f.name not in _NOT_MODEL_KWARGS)


def model_kwargs_override(config, key: str, value: str) -> tuple[str, object]:
    """``--config.model_kwargs.KEY=VALUE`` for a KEY the config's ``model_kwargs`` does not list
    yet (ml_collections cannot add fields from the command line): the field, checked against
    the model's own, and the value as a Python literal (``1``, ``True``, ``0.3``; else the
    string)."""
    fields = model_kwargs_fields(config.model)
    if key not in fields:
        close = difflib.get_close_matches(key, fields, n=3, cutoff=0.5)
        hint = (" Did you mean " + ", ".join(f"--config.model_kwargs.{c}" for c in close) + "?"
                if close else "")
        raise ValueError(f"{config.model} has no setting {key!r} (from --config.model_kwargs."
                         f"{key}).{hint} Its settings: {', '.join(fields)}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value
