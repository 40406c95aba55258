"""torchvision <-> jaxzoo weight conversion.

jaxzoo's modules carry torchvision's attribute names, so the mapping is mechanical:

* the flax path ``params/layer1_0/downsample_0/kernel`` is torch's ``layer1.0.downsample.0.weight``
  (``_<n>`` becomes ``.<n>`` unless the model's torch names end in digits themselves);
* leaves: ``kernel``/``scale`` -> ``weight``, ``bias`` -> ``bias``, ``batch_stats`` ``mean``/``var``
  -> ``running_mean``/``running_var``; torch's ``num_batches_tracked`` is dropped on import and
  written as 0 on export; any other leaf (a bare ``nn.Parameter`` such as ConvNeXt's
  ``layer_scale``) keeps its name and its torch layout;
* layouts: conv kernels OIHW -> HWIO (transpose 2, 3, 1, 0), grouped and depthwise alike, since
  torch's (out, in/groups, kh, kw) is flax's (kh, kw, in/groups, out); Linear weights transposed.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import zlib
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxzoo.convert.catalog import aux_modules_for, key_rewrites_for, rewrite_keys
from jaxzoo.models.registry import create_model, get_spec, init_variables, variable_shapes

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
    """What ``torch.nn.Module.load_state_dict(strict=False)`` would report, plus the input
    convolutions adapted to another number of input channels (timm's ``adapt_input_conv``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]
    adapted_keys: tuple[str, ...] = ()
    in_channels: int = 3

    def __str__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            text = "<All keys matched successfully>"
        else:
            text = (f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
                    f"unexpected_keys={self.unexpected_keys})")
        if self.adapted_keys:
            text += (f"; {', '.join(self.adapted_keys)} adapted from 3 to {self.in_channels} "
                     f"input channels (timm's adapt_input_conv)")
        return text


def torch_key(collection: str, path: tuple[str, ...], dotted_indices: bool = True) -> str:
    """The torchvision state-dict key of the flax leaf ``variables[collection][path...]``."""
    *modules, leaf = path
    if dotted_indices:
        modules = [_SEQUENTIAL_INDEX.sub(r".\1", m) for m in modules]
    if collection not in ("params", "batch_stats"):
        raise ValueError(f"no torch name for flax leaf {collection}/{'/'.join(path)}")
    # Bare parameters (ConvNeXt's layer_scale) keep their name and their torch layout.
    return ".".join([*modules, _LEAF_TO_TORCH.get((collection, leaf), leaf)])


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
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        # torch's weights-only loader advises retrying with weights_only=False, which would run
        # whatever code the file holds; its own reason follows "WeightsUnpickler error:".
        reason = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)",
                           str(e), re.S)
        what = (f"torch's weights-only loader refused it: {' '.join(reason[1].split())}"
                if reason else f"{type(e).__name__}: {lines[0] if lines else ''}")
        raise ValueError(
            f"could not read {path} as a PyTorch state dict ({what}). The file may be "
            f"truncated, damaged or not a torch.save() file of tensors: download or save it "
            f"again.") from None


def _head_num_classes(spec, tensors: Mapping[str, np.ndarray], layout: str) -> int | None:
    weight = tensors.get(f"{spec.head[0]}.weight")
    if weight is None:
        return None
    return int(weight.shape[0] if layout == "torch" else weight.shape[-1])


def new_head_value(key: str, leaf: str, shape: tuple[int, ...], fan_in: int | None,
                   rng: jax.Array) -> jax.Array:
    """One leaf of a re-initialized classifier, as torch initializes a new ``nn.Linear`` (or
    ``nn.Conv2d``) layer: weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); normalization
    layers at weight 1, bias 0, mean 0, variance 1. Each leaf draws from ``rng`` folded with its
    torch key, so the values depend only on the rng and the layer, not on the weights' source."""
    if leaf in ("kernel", "bias") and fan_in:
        bound = 1.0 / np.sqrt(fan_in)
        key_rng = jax.random.fold_in(rng, zlib.crc32(key.encode()) & 0x7FFFFFFF)
        return jax.random.uniform(key_rng, shape, jnp.float32, -bound, bound)
    return (jnp.ones if leaf in ("scale", "var") else jnp.zeros)(shape, jnp.float32)


def adapt_input_conv(kernel: np.ndarray, in_channels: int) -> np.ndarray:
    """An RGB conv kernel (HWIO, I=3) for ``in_channels`` inputs, as timm's ``adapt_input_conv``:
    summed over RGB for one channel; otherwise RGB repeated to ``in_channels`` and scaled by
    3 / in_channels, so the response to a gray image stays the same."""
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"cannot adapt a kernel of shape {kernel.shape} (HWIO, 3 inputs expected)")
    if in_channels == 3:
        return kernel
    if in_channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    repeat = -(-in_channels // 3)
    return np.tile(kernel, (1, 1, repeat, 1))[:, :, :in_channels] * (3 / float(in_channels))


@functools.lru_cache(maxsize=16)
def _template(model, size: int) -> dict:
    """The flattened variable shapes of ``model`` (tracing ``init`` takes seconds for the larger
    models; flax modules with equal fields are equal, so repeated loads share it)."""
    return traverse_util.flatten_dict(variable_shapes(model, size))


def fit_variables(name: str, model, tensors: Mapping[str, np.ndarray], *, layout: str = "torch",
                  strict: bool = True, rng: jax.Array | None = None,
                  drop: tuple[str, ...] = (), what: str = "the state dict"):
    """The one place weights are fitted to a model: ``tensors`` (torch key -> array, in torch's
    layout or, for converted weights, flax's) -> ``(variables, LoadReport)`` for ``model``.

    * A classifier (``spec.head``) of another width than ``model.num_classes`` is re-initialized
      with ``new_head_value`` (torch's rule for a new ``nn.Linear``) and listed as missing, as torch
      reports after deleting those keys and loading with ``strict=False``.
    * An RGB input conv loaded into a model with ``in_channels != 3`` is adapted
      (``adapt_input_conv``) and listed in ``report.adapted_keys``.
    * Keys of auxiliary heads the model does not have (``aux_logits=False``), which torchvision
      deletes after loading (the table's ``aux_modules``, and ``drop``), are left out silently.
    * With ``strict=True`` any other missing or unexpected key is an error; a mis-shaped tensor is
      always one. Every problem is listed, not just the first. With ``strict=False`` the missing
      backbone leaves come from ``model.init(rng)``.
    """
    spec = get_spec(name)
    tensors = dict(tensors)
    if layout == "torch":
        tensors = rewrite_keys(tensors, key_rewrites_for(name))
    flat_template = _template(model, spec.init_size)
    keys = {flat: torch_key(flat[0], tuple(flat[1:]), spec.dotted_indices)
            for flat in flat_template}
    model_keys = set(keys.values())
    for prefix in (*aux_modules_for(name), *drop):
        if not any(k.startswith(prefix + ".") for k in model_keys):
            tensors = {k: v for k, v in tensors.items() if not k.startswith(prefix + ".")}

    num_classes = int(model.num_classes)
    in_channels = int(getattr(model, "in_channels", 3))
    checkpoint_classes = _head_num_classes(spec, tensors, layout)
    head_swapped = checkpoint_classes not in (None, num_classes)
    converted, missing, mismatched, used, adapted, new_head = {}, [], [], set(), [], []
    for flat, shape_dtype in flat_template.items():
        key, leaf = keys[flat], flat[-1]
        if spec.is_head(key) and head_swapped:
            if key in tensors:
                used.add(key)  # replaced on purpose: reported as missing, not as unexpected
            missing.append(key)
            new_head.append(flat)
            continue
        if key not in tensors:
            missing.append(key)
            continue
        used.add(key)
        value = tensors[key]
        value = _to_flax_layout(leaf, value) if layout == "torch" else np.asarray(value)
        if (value.shape != shape_dtype.shape and in_channels != 3 and leaf == "kernel"
                and value.ndim == 4 and value.shape[2] == 3
                and shape_dtype.shape == value.shape[:2] + (in_channels,) + value.shape[3:]):
            value = adapt_input_conv(value, in_channels)
            adapted.append(key)
        if value.shape != shape_dtype.shape:
            torch_shape = tuple(tensors[key].shape) if layout == "torch" else \
                _to_torch_layout(leaf, np.zeros(value.shape, np.int8)).shape
            expected = _to_torch_layout(leaf, np.zeros(shape_dtype.shape, np.int8)).shape
            mismatched.append(f"{key}: checkpoint {torch_shape}, model expects {expected}")
            continue
        converted[flat] = jnp.asarray(value, shape_dtype.dtype)

    bn_prefixes = {k[: -len(".running_mean")] for k in used if k.endswith(".running_mean")}
    unexpected = sorted(k for k in tensors if k not in used and not (
        k.endswith(".num_batches_tracked") and k[: -len(".num_batches_tracked")] in bn_prefixes))
    fatal_missing = sorted(k for k in missing if not (head_swapped and spec.is_head(k)))

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
            f"{what} does not fit {name} ({counterpart}, num_classes={num_classes}, "
            f"in_channels={in_channels}):\n  " + "\n  ".join(problems)
            + "\nCheck that the weights belong to this model; pass strict=False to load the keys "
              "that match and initialize the rest.")

    rng = jax.random.PRNGKey(0) if rng is None else rng
    absent = [flat for flat in flat_template if flat not in converted and flat not in new_head]
    if absent:  # strict=False: the missing backbone leaves from a full initialization
        fresh = traverse_util.flatten_dict(init_variables(model, spec.init_size, rng))
        for flat in absent:
            converted[flat] = fresh[flat]
    for flat in new_head:
        kernel = flat_template.get(flat[:-1] + ("kernel",))
        fan_in = int(np.prod(kernel.shape[:-1])) if kernel is not None else None
        converted[flat] = new_head_value(keys[flat], flat[-1], flat_template[flat].shape,
                                         fan_in, rng)

    variables = traverse_util.unflatten_dict(converted)
    report = LoadReport(missing_keys=sorted(missing), unexpected_keys=unexpected,
                        adapted_keys=tuple(sorted(adapted)), in_channels=in_channels)
    if missing or unexpected or adapted:
        log.info("loaded %s: %s", name, report)
    return variables, report


def load_torch(name: str, source: Any, num_classes: int | None = None, strict: bool = True,
               rng: jax.Array | None = None, **model_kwargs: Any):
    """Convert a torchvision state dict (mapping or ``.pth``/``.safetensors`` path) for model
    ``name``: returns ``(variables, LoadReport)``.

    ``num_classes=None`` takes the number of classes from the checkpoint's classifier; a different
    number re-initializes it (see ``fit_variables`` for every rule). ``model_kwargs`` build the
    model (e.g. ``in_channels=1``: the input conv is adapted). For every kind of source (a
    converted directory, torchvision's weights by name) use ``jaxzoo.convert.load``.
    """
    spec = get_spec(name)
    state = load_state_dict(source)
    if num_classes is None:
        num_classes = _head_num_classes(spec, state, "torch") or 1000
    model = create_model(name, num_classes=num_classes, **model_kwargs)
    what = "the state dict" + (f" {source}" if isinstance(source, (str, os.PathLike)) else "")
    return fit_variables(name, model, state, strict=strict, rng=rng, what=what)


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
