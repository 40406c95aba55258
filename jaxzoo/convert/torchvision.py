"""torchvision <-> jaxzoo weight conversion.

jaxzoo's modules carry torchvision's attribute names, so the mapping is mechanical:

* the flax path ``params/layer1_0/downsample_0/kernel`` is torch's ``layer1.0.downsample.0.weight``
  (``_<n>`` becomes ``.<n>`` unless the model's torch names end in digits themselves);
* leaves: ``kernel``/``scale`` -> ``weight``, ``bias`` -> ``bias``, ``batch_stats`` ``mean``/``var``
  -> ``running_mean``/``running_var``; torch's ``num_batches_tracked`` is dropped on import and
  written as 0 on export;
* layouts: conv kernels OIHW -> HWIO (transpose 2, 3, 1, 0), grouped and depthwise alike, since
  torch's (out, in/groups, kh, kw) is flax's (kh, kw, in/groups, out); Linear weights transposed.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxzoo.models.registry import create_model, get_spec

log = logging.getLogger(__name__)

_LEAF_TO_TORCH = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
_SEQUENTIAL_INDEX = re.compile(r"_(\d+)(?=_|$)")


class LoadReport(NamedTuple):
    """What ``torch.nn.Module.load_state_dict(strict=False)`` would report."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __str__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
                f"unexpected_keys={self.unexpected_keys})")


def torch_key(collection: str, path: tuple[str, ...], dotted_indices: bool = True) -> str:
    """The torchvision state-dict key of the flax leaf ``variables[collection][path...]``."""
    *modules, leaf = path
    if dotted_indices:
        modules = [_SEQUENTIAL_INDEX.sub(r".\1", m) for m in modules]
    try:
        return ".".join([*modules, _LEAF_TO_TORCH[(collection, leaf)]])
    except KeyError:
        raise ValueError(f"no torch name for flax leaf {collection}/{'/'.join(path)}") from None


def _to_flax_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if leaf == "kernel" and value.ndim == 2:
        return value.T  # Linear (out, in) -> Dense (in, out)
    return value


def _to_torch_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if leaf == "kernel" and value.ndim == 2:
        return value.T
    return value


def load_state_dict(source: Any) -> dict[str, np.ndarray]:
    """A torch state dict as ``{key: numpy array}`` from a mapping or a ``.pth``/``.safetensors`` path.

    Accepts what people save: a bare state dict, or a dict holding it under ``state_dict``/``model``;
    a ``module.`` prefix (DataParallel) is removed.
    """
    if isinstance(source, (str, os.PathLike)):
        source = _read_file(os.fspath(source))
    if not isinstance(source, Mapping):
        raise ValueError(
            f"expected a state dict (a mapping of parameter names to tensors), got a "
            f"{type(source).__name__}. If you saved a whole model, save its weights instead: "
            f"torch.save(model.state_dict(), path).")
    for wrapper in ("state_dict", "model"):
        if wrapper in source and isinstance(source[wrapper], Mapping):
            source = source[wrapper]
            break
    state = {}
    for key, value in source.items():
        if not isinstance(key, str) or not hasattr(value, "shape"):
            raise ValueError(
                f"this is not a state dict: entry {key!r} is a {type(value).__name__}, not a "
                f"tensor. Save the weights with torch.save(model.state_dict(), path).")
        if key.startswith("module."):
            key = key[len("module."):]
        if hasattr(value, "detach"):  # torch.Tensor
            value = value.detach().cpu().numpy()
        # A copy: torch updates running statistics in place, and jax may alias numpy memory.
        state[key] = np.array(value, copy=True)
    return state


def _read_file(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ImportError("reading .safetensors needs the safetensors package: "
                              "pip install safetensors") from None
        return load_file(path)
    try:
        import torch
    except ImportError:
        raise ImportError("reading .pth files needs PyTorch: pip install 'jaxzoo[torch]'") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise ValueError(
            f"could not read {path} as a PyTorch state dict ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). The file may be truncated or "
            f"not a torch.save() file: download or save it again.") from e


def _variables_template(model, min_size: int):
    x = jnp.zeros((1, min_size, min_size, 3), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))


def _head_num_classes(spec, state: Mapping[str, np.ndarray]) -> int | None:
    weight = state.get(f"{spec.head[0]}.weight")
    return None if weight is None else int(weight.shape[0])


def _is_head_key(spec, key: str) -> bool:
    return any(key.startswith(prefix + ".") for prefix in spec.head)


def load_torch(name: str, source: Any, num_classes: int | None = None, strict: bool = True,
               rng: jax.Array | None = None, **model_kwargs: Any):
    """Convert a torchvision state dict for model ``name``: returns ``(variables, LoadReport)``.

    ``num_classes=None`` takes the number of classes from the checkpoint's classifier. A different
    number re-initializes the classifier (``spec.head``), which the report lists as missing, as
    torch does after deleting those keys and loading with ``strict=False``.
    With ``strict=True``, any other missing or unexpected key is an error; a mis-shaped tensor is
    always an error. Every problem is listed, not just the first.
    """
    spec = get_spec(name)
    state = load_state_dict(source)
    checkpoint_classes = _head_num_classes(spec, state)
    if num_classes is None:
        num_classes = checkpoint_classes or 1000
    model = create_model(name, num_classes=num_classes, **model_kwargs)
    template = _variables_template(model, max(spec.min_size, 32))

    flat_template = traverse_util.flatten_dict(template)
    converted, missing, mismatched, used = {}, [], [], set()
    for (collection, *path), shape_dtype in flat_template.items():
        key = torch_key(collection, tuple(path), spec.dotted_indices)
        if _is_head_key(spec, key) and checkpoint_classes not in (None, num_classes):
            used.add(key)  # replaced on purpose: reported as missing, not as unexpected
            missing.append(key)
            continue
        if key not in state:
            missing.append(key)
            continue
        used.add(key)
        value = _to_flax_layout(path[-1], state[key])
        if value.shape != shape_dtype.shape:
            mismatched.append(f"{key}: checkpoint {tuple(state[key].shape)}, model expects "
                              f"{_to_torch_layout(path[-1], np.zeros(shape_dtype.shape)).shape}")
            continue
        converted[(collection, *path)] = jnp.asarray(value, shape_dtype.dtype)

    bn_prefixes = {k[: -len(".running_mean")] for k in used if k.endswith(".running_mean")}
    unexpected = [k for k in state if k not in used and not (
        k.endswith(".num_batches_tracked") and k[: -len(".num_batches_tracked")] in bn_prefixes)]
    head_swapped = checkpoint_classes not in (None, num_classes)
    fatal_missing = sorted(k for k in missing if not (head_swapped and _is_head_key(spec, k)))
    unexpected = sorted(unexpected)

    problems = []
    if mismatched:
        problems.append("shape mismatch:\n    " + "\n    ".join(mismatched))
    if strict and fatal_missing:
        problems.append(f"missing keys ({len(fatal_missing)}): {', '.join(fatal_missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if problems:
        counterpart = f"torchvision.models.{spec.torchvision}" if spec.torchvision else name
        raise ValueError(
            f"the state dict does not fit {name} ({counterpart}, num_classes={num_classes}):\n  "
            + "\n  ".join(problems)
            + "\nCheck that the weights belong to this model; pass strict=False to load the keys "
              "that match and initialize the rest.")

    rng = jax.random.PRNGKey(0) if rng is None else rng
    absent = [k for k in flat_template if k not in converted]

    def is_dense_head_leaf(flat_key) -> bool:
        kernel = flat_template.get(flat_key[:-1] + ("kernel",))
        return (_is_head_key(spec, torch_key(flat_key[0], flat_key[1:], spec.dotted_indices))
                and kernel is not None and len(kernel.shape) == 2)

    if not all(is_dense_head_leaf(k) for k in absent):
        # strict=False with missing backbone keys: take them from a full initialization.
        size = max(spec.min_size, 32)
        fresh = traverse_util.flatten_dict(jax.jit(
            lambda r: model.init(r, jnp.zeros((1, size, size, 3), jnp.float32), train=False))(rng))
        for flat_key in absent:
            converted[flat_key] = fresh[flat_key]
    else:
        # A new classifier, initialized as torch initializes `model.fc = nn.Linear(...)`
        # (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias); cheaper than compiling a full
        # model.init, which XLA:CPU takes seconds to do.
        for i, flat_key in enumerate(absent):
            shape = flat_template[flat_key].shape
            fan_in = flat_template[flat_key[:-1] + ("kernel",)].shape[0]
            bound = 1.0 / np.sqrt(fan_in)
            converted[flat_key] = jax.random.uniform(
                jax.random.fold_in(rng, i), shape, jnp.float32, -bound, bound)

    variables = traverse_util.unflatten_dict(converted)
    report = LoadReport(missing_keys=sorted(missing), unexpected_keys=sorted(unexpected))
    if missing or unexpected:
        log.info("loaded %s: %s", name, report)
    return variables, report


def from_torch(name: str, source: Any, num_classes: int | None = None, strict: bool = True,
               **model_kwargs: Any) -> dict:
    """torchvision state dict (mapping or ``.pth``/``.safetensors`` path) -> jaxzoo variables
    ``{'params': ..., 'batch_stats': ...}``. See ``load_torch`` for the rules and the report."""
    variables, _ = load_torch(name, source, num_classes=num_classes, strict=strict, **model_kwargs)
    return variables


def to_torch(name: str, variables: Mapping) -> dict[str, np.ndarray]:
    """jaxzoo variables -> numpy arrays under torchvision's key names (``torch.from_numpy`` each
    value, or pass the dict to ``save_torch``), including BatchNorm's ``num_batches_tracked``."""
    spec = get_spec(name)
    state: dict[str, np.ndarray] = {}
    flat = traverse_util.flatten_dict({k: variables[k] for k in ("params", "batch_stats")
                                       if k in variables})
    for (collection, *path), value in flat.items():
        key = torch_key(collection, tuple(path), spec.dotted_indices)
        # A writable copy, so that torch.from_numpy can take it.
        state[key] = np.array(_to_torch_layout(path[-1], np.asarray(value)), order="C")
        if collection == "batch_stats" and path[-1] == "var":
            state[key[: -len("running_var")] + "num_batches_tracked"] = np.array(0, np.int64)
    return state


def num_classes_of(name: str, variables: Mapping) -> int:
    """The number of classes of ``variables`` (the output width of the classifier)."""
    spec = get_spec(name)
    for (collection, *path), value in traverse_util.flatten_dict(dict(variables)).items():
        if torch_key(collection, tuple(path), spec.dotted_indices) == f"{spec.head[0]}.weight":
            return int(value.shape[-1])
    raise ValueError(f"no classifier {spec.head[0]!r} in these variables of {name}")


def save_torch(state: Mapping[str, np.ndarray], path: str) -> None:
    """Write a ``to_torch`` dict as a ``.pth`` file that ``torch.load(weights_only=True)`` reads."""
    import torch

    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, path)
