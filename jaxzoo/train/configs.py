"""Configs by name: ``--config=NAME[:PRESET]`` is a config file of ``jaxzoo.configs`` (the
folder configs/ of the source tree, installed with the package) or, for any registered model
without one, the registry's defaults (``jaxzoo.configs.default.get_config_for``); a path to a
config file works too. Overrides ``KEY=VALUE`` are parsed and checked here, once, for
``train.py``'s ``--config.KEY=VALUE``, ``check --set`` and the benchmark."""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.resources
import importlib.util
import math
import numbers
import os

from jaxzoo.configs.default import get_config_for
from jaxzoo.models import list_models
from jaxzoo.models.registry import model_options
from jaxzoo.train.optim import check_optimizer_config

NOT_CONFIGS = ("__init__", "default", "recipes")  # modules of jaxzoo.configs that are no config


def config_files() -> list[str]:
    """The names of the config files that say more than the registry's defaults."""
    folder = importlib.resources.files("jaxzoo.configs")
    return sorted(f.name[:-3] for f in folder.iterdir()
                  if f.name.endswith(".py") and f.name[:-3] not in NOT_CONFIGS)


def available_configs() -> list[str]:
    """Every name ``--config=NAME`` takes: each registered model and each config file."""
    return sorted(set(list_models()) | set(config_files()))


def _is_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".py") or os.sep in name_or_path


def _load_file(path: str):
    if not os.path.isfile(path):
        raise ValueError(f"config file {path} does not exist")
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"_jaxzoo_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_name(name_or_path: str) -> str:
    """The name of a config given by name or path (``runs/NAME`` is its default workdir); an
    unknown name is an error that names the close ones."""
    name_or_path = name_or_path.partition(":")[0]
    if _is_path(name_or_path):
        return os.path.splitext(os.path.basename(name_or_path))[0]
    names = available_configs()
    if name_or_path not in names:
        close = difflib.get_close_matches(name_or_path, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown config {name_or_path!r}. Available configs: "
                         f"{', '.join(names)} (every model of `python -m jaxzoo list`, or a path "
                         f"to a config file).{hint}")
    return name_or_path


def load_config(name_or_path: str, preset: str | None = None):
    """The config ``--config=NAME[:PRESET]`` names: a config file's ``get_config(preset)``, or the
    registry's defaults for a model without a file."""
    if preset is None and not _is_path(name_or_path):
        name_or_path, _, preset = name_or_path.partition(":")
        preset = preset or None
    if _is_path(name_or_path):
        module = _load_file(name_or_path)
    else:
        name = config_name(name_or_path)
        if name not in config_files():
            return get_config_for(name, preset)
        module = importlib.import_module(f"jaxzoo.configs.{name}")
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


def model_kwargs_fields(model: str) -> list[str]:
    """The fields of ``model`` that ``config.model_kwargs`` may set (``in_channels``,
    ``transform_input``, ``dropout``, ...): the model's options (``registry.model_options``)
    but ``remat``, which ``config.remat`` sets."""
    return [f for f in model_options(model) if f != "remat"]


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


def parse_value(current, text: str):
    """``text`` as a value for a field whose value is ``current``: strings stay as written
    (``folder:/data``), booleans take true/false in any case and 1/0, anything else is read as a
    Python literal (``1e-3``, ``(0.8, 1.0)``), else kept as the string."""
    if isinstance(current, str):
        return text
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config, overrides, flag: str = "--config."):
    """Apply ``KEY=VALUE`` overrides (dotted keys, ``model_kwargs.KEY`` for any option of the
    model) to ``config``, each checked against its fields with the closest names on a typo; the
    one parser of ``train.py``, ``check --set`` and the benchmark. ``flag`` is how the command
    line spells them, for the messages. Returns ``config``."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"{flag}{item}: expected {flag}KEY=VALUE")
        try:
            if key.startswith("model_kwargs.") and key.count(".") == 1 and \
                    key.split(".")[1] not in config.model_kwargs:
                name, value = model_kwargs_override(config, key.split(".", 1)[1], text)
                with config.model_kwargs.unlocked():
                    config.model_kwargs[name] = value
                continue
            check_override(config, key)
        except ValueError as e:  # an unknown field: the message names the closest
            raise ValueError(str(e).replace("--config.", flag)) from None
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        try:
            node[leaf] = parse_value(node[leaf], text)
        except (TypeError, ValueError) as e:  # ConfigDict refuses a value of another type
            raise ValueError(f"{flag}{item}: {e}") from None
    return config


# ------------------------------------------------------------------ validation

# (field, rule, test): the numeric fields a run checks before it starts. A field the config
# does not have is not checked (configs written before it existed).
_POSITIVE, _NON_NEGATIVE, _AT_LEAST_1 = "must be > 0", "must be >= 0", "must be at least 1"
_RANGES = (
    ("learning_rate", _POSITIVE, lambda v: v > 0),
    ("num_epochs", _AT_LEAST_1, lambda v: v >= 1),
    ("batch_size", _AT_LEAST_1, lambda v: v >= 1),
    ("eval_batch_size", "must be >= 0 (0: batch_size)", lambda v: v >= 0),
    ("image_size", _AT_LEAST_1, lambda v: v >= 1),
    ("warmup_epochs", _NON_NEGATIVE, lambda v: v >= 0),
    ("weight_decay", _NON_NEGATIVE, lambda v: v >= 0),
    ("norm_weight_decay", "must be None or >= 0", lambda v: v is None or v >= 0),
    ("bias_weight_decay", "must be None or >= 0", lambda v: v is None or v >= 0),
    ("label_smoothing", "must be in [0, 1)", lambda v: 0 <= v < 1),
    ("val_fraction", "must be in [0, 1)", lambda v: 0 <= v < 1),
    ("grad_clip_norm", "must be >= 0 (0: no clipping)", lambda v: v >= 0),
    ("momentum", _NON_NEGATIVE, lambda v: v >= 0),
    ("lr_gamma", _POSITIVE, lambda v: v > 0),
    ("lr_min", _NON_NEGATIVE, lambda v: v >= 0),
    ("mixup_alpha", "must be >= 0 (0: no MixUp)", lambda v: v >= 0),
    ("cutmix_alpha", "must be >= 0 (0: no CutMix)", lambda v: v >= 0),
    ("model_ema_steps", _AT_LEAST_1, lambda v: v >= 1),
    ("model_ema_decay", "must be in [0, 1)", lambda v: 0 <= v < 1),
    ("checkpoints_to_keep", _AT_LEAST_1, lambda v: v >= 1),
    ("checkpoint_every_steps", "must be >= 0 (0: at epoch ends only)", lambda v: v >= 0),
    ("profile_steps", "must be >= 0 (0: no profile)", lambda v: v >= 0),
    ("max_image_pixels", _AT_LEAST_1, lambda v: v >= 1),
)
# config.trainable: every parameter is trained, or the classifier only (state.trainable_mask).
TRAINABLE = ("all", "head")
_CHOICES = {"dtype": ("float32", "bfloat16"), "trainable": TRAINABLE,
            "remat": ("none", "blocks", "blocks_full"), "lowering": ("auto", "xla", "cpu")}


def validate(config) -> None:
    """Every field a run reads, checked before anything starts: ``ValueError`` with one line
    naming the field, its value and what it must be."""
    for field, rule, ok in _RANGES:
        if field not in config:
            continue
        value = config[field]
        number = value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)
                                   and math.isfinite(value))
        if not number or not ok(value):
            raise ValueError(f"config.{field}={value!r} {rule}")
    for field, allowed in _CHOICES.items():
        if field in config and config[field] not in allowed:
            close = difflib.get_close_matches(str(config[field]).lower(), allowed, n=1)
            hint = f" Did you mean --config.{field}={close[0]}?" if close else ""
            raise ValueError(f"config.{field}={config[field]!r} is not one of "
                             f"{', '.join(allowed)}.{hint}")
    check_optimizer_config(config)
    if "aux_loss_weights" in config and any(
            not isinstance(w, numbers.Real) or w < 0 for w in config.aux_loss_weights):
        raise ValueError(f"config.aux_loss_weights={tuple(config.aux_loss_weights)!r}: each "
                         f"weight must be a number >= 0")
    crop = tuple(config.get("crop_scale", ()) or ())
    if crop and not (len(crop) == 2 and 0 < crop[0] <= crop[1] <= 1):
        raise ValueError(f"config.crop_scale={crop!r} must be () (the dataset's default) or "
                         f"(low, high) with 0 < low <= high <= 1, as RandomResizedCrop's scale")
    if not isinstance(config.get("dataset", ""), str) or not config.get("dataset"):
        raise ValueError("config.dataset is empty: name a TFDS dataset, folder:PATH or shapes")
