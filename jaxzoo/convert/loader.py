"""One loader for every source of weights, and torchvision's pretrained weights by name.

    loaded = load("resnet34", "resnet34-b627a593.pth", num_classes=5)    # a torchvision file
    loaded = load("resnet34", "weights/resnet34")              # from `python -m jaxzoo convert`
    loaded = load("resnet34", "torchvision")                             # DEFAULT weights, by name
    loaded = load("resnet50", "torchvision:IMAGENET1K_V2")
    loaded.variables, loaded.report, loaded.model, loaded.class_names

    model, variables = pretrained("resnet50")                            # jaxzoo.pretrained

Every source goes through ``fit_variables``: the same key checks, the same new classifier when
``num_classes`` differs (torch's rule for a new ``nn.Linear``, drawn from ``rng``), the same
adaptation of the input conv to ``in_channels``.

torchvision's weights come from torch's cache (``$TORCH_HOME/hub/checkpoints``) or are downloaded
there (``jaxzoo.convert.hub``). The first load converts the file and keeps the converted variables
in ``$JAXZOO_WEIGHTS_CACHE`` (default ``~/.cache/jaxzoo/weights/<file name>/``), so later loads read
them from there without torch.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import uuid
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxzoo import environment
from jaxzoo import weights as weights_dir
from jaxzoo.convert import hub
from jaxzoo.convert.torchvision import (LoadReport, _head_num_classes, fit_variables,
                                        load_state_dict, torch_key)
from jaxzoo.convert.catalog import (MODELS, WeightsEntry, is_pretrained_spec, list_weights,
                                          parse_weights, weights_entry)
from jaxzoo.models.layers import BUILD_FIELDS  # how it runs, not the weights' network
from jaxzoo.models.registry import create_model, get_spec, init_variables


@dataclasses.dataclass
class Loaded:
    """Weights fitted to a model, and what is known about them."""

    name: str
    variables: dict
    report: LoadReport
    model: Any                       # the flax module the variables fit
    model_kwargs: dict               # create_model arguments the network needs (no dtype)
    num_classes: int
    class_names: list[str] | None    # None when unknown (e.g. a new classifier)
    source: str                      # what was loaded, for messages
    path: str | None = None          # the file or directory read
    weights: WeightsEntry | None = None   # the table's entry, for torchvision's weights by name
    notes: list[str] = dataclasses.field(default_factory=list)


def weights_cache_dir() -> str:
    """Where converted torchvision weights are kept: ``$JAXZOO_WEIGHTS_CACHE``, else
    ``$XDG_CACHE_HOME/jaxzoo/weights``, else ``~/.cache/jaxzoo/weights``."""
    return environment.weights_cache()


def converted_dir(entry: WeightsEntry) -> str:
    """The converted-variables cache of ``entry``: one directory per file (its hash is in the
    name), as ``jaxzoo.weights.save_weights`` writes it."""
    return os.path.join(weights_cache_dir(), os.path.splitext(entry.file_name)[0])


def _by_torch_key(name: str, variables: Mapping) -> dict[str, np.ndarray]:
    spec = get_spec(name)
    flat = traverse_util.flatten_dict({k: variables[k] for k in ("params", "batch_stats")
                                       if k in variables})
    return {torch_key(c, tuple(p), spec.dotted_indices): v for (c, *p), v in flat.items()}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


SOURCE_JSON = "source.json"  # beside model.json in a converted-cache entry: the file it came from


def source_record(path: str, entry: WeightsEntry) -> dict:
    """What a conversion came from: the file's path, size, modification time and sha256, and
    whether that sha256 starts with the prefix torchvision publishes for ``entry`` (the one in
    its file name, torch.hub's ``check_hash`` rule)."""
    import hashlib

    sha256 = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha256.update(chunk)
    digest, stat = sha256.hexdigest(), os.stat(path)
    published = entry.sha256_prefix or hub.hash_prefix(entry.file_name)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256": digest, "published_prefix": published,
            "verified": bool(published) and digest.startswith(published)}


def _source_unchanged(record: dict, path: str) -> bool:
    """Whether ``path`` is still the file ``record`` describes (same place, size and time)."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return (record.get("path") == os.path.abspath(path) and record.get("size") == stat.st_size
            and record.get("mtime_ns") == stat.st_mtime_ns)


def _read_converted(entry: WeightsEntry) -> dict | None:
    """The cached converted variables of ``entry`` keyed by torch name, or None when there are
    none or they may not be used: the file they were converted from (torch's cache) has changed
    since, or it is gone and its hash was not torchvision's published one when it was converted
    (or was never recorded)."""
    directory = converted_dir(entry)
    if not weights_dir.is_weights_dir(directory):
        return None
    try:
        variables, meta = weights_dir.load_weights(directory)
        with open(os.path.join(directory, SOURCE_JSON)) as f:
            record = json.load(f)
    except FileNotFoundError:  # converted before sources were recorded: convert again
        record, variables, meta = None, None, {}
    except Exception as e:  # a damaged cache is converted again, not an error
        _say(f"ignoring the unreadable converted weights in {directory} ({type(e).__name__}: {e})")
        return None
    if record is None or meta.get("model") != entry.model or meta.get("source") != entry.url:
        return None
    path = hub.cached_file(entry.url, entry.file_name)
    if os.path.exists(path):
        if not _source_unchanged(record, path):
            _say(f"{path} is not the file the converted weights in {directory} were made from "
                 f"(it was {record.get('size')} bytes, sha256 {record.get('sha256', '')[:12]}...); "
                 f"converting it again")
            return None
    elif not record.get("verified"):
        return None  # the source is gone and was never checked: fetch it again
    return _by_torch_key(entry.model, variables)


def _write_converted(entry: WeightsEntry, variables: dict, model_kwargs: dict,
                     record: dict) -> None:
    """Keep the converted variables and what they came from (``source.json``), written beside
    and renamed when complete, over a stale entry; a cache that cannot be written costs only
    speed."""
    directory = converted_dir(entry)
    partial = f"{directory}.{uuid.uuid4().hex}.partial"
    stale = f"{directory}.{uuid.uuid4().hex}.stale"
    try:
        weights_dir.save_weights(partial, entry.model, variables, num_classes=entry.num_classes,
                                 model_kwargs=model_kwargs, class_names=entry.class_names(),
                                 source=entry.url)
        with open(os.path.join(partial, SOURCE_JSON), "w") as f:
            json.dump(record, f, indent=2)
        try:
            if os.path.exists(directory):  # made from another file, or before sources were kept
                os.rename(directory, stale)
            os.rename(partial, directory)
        except OSError:  # another process cached it first
            pass
        else:
            _say(f"cached the converted {entry.model} weights ({entry.name}) in {directory}; "
                 f"later loads read them from there")
    except Exception as e:
        _say(f"could not cache the converted weights in {directory} ({type(e).__name__}: {e}); "
             f"set JAXZOO_WEIGHTS_CACHE to a writable folder to skip the conversion next time")
    finally:
        for leftover in (partial, stale):
            if os.path.exists(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


def pretrained_tensors(entry: WeightsEntry, progress: bool = True) -> tuple[dict, str]:
    """torchvision's weights of ``entry`` as ``{torch key: array in flax's layout}`` and the path
    they came from: the converted cache, else the file (torch's cache or downloaded), converted
    once into the full network the file holds and cached with a record of the file."""
    cached = _read_converted(entry)
    if cached is not None:
        return cached, converted_dir(entry)
    get_spec(entry.model)  # an unregistered model fails here, before any download
    path = hub.fetch(entry.url, entry.file_name, progress=progress,
                     what=f"torchvision's {entry.model} weights ({entry.name})")
    record = source_record(path, entry)
    if record["published_prefix"] and not record["verified"]:
        # torch.hub checks the hash only when it downloads; a file found in its cache is used
        # as it is, by torchvision too. Said here, and never served once the file is gone.
        _say(f"note: {path} is not the file torchvision publishes for "
             f"{entry.enum}.{entry.name}: its sha256 "
             f"is {record['sha256'][:16]}..., its name says {record['published_prefix']}...; "
             f"using it as torchvision would")
    state = load_state_dict(path)
    full_kwargs = entry.model_kwargs(aux_logits=True if entry.aux_modules else None)
    model = create_model(entry.model, num_classes=entry.num_classes, **full_kwargs)
    variables, _ = fit_variables(entry.model, model, state, what=f"the file {path}")
    variables = jax.tree.map(np.asarray, variables)
    _write_converted(entry, variables, full_kwargs, record)
    return _by_torch_key(entry.model, variables), path


def load(name: str, source: Any, *, num_classes: int | None = None, model=None,
         strict: bool = True, rng: jax.Array | None = None, progress: bool = True,
         **model_kwargs: Any) -> Loaded:
    """Weights for model ``name`` from ``source``, fitted to ``model`` (or to the model built from
    ``num_classes`` and ``model_kwargs``):

    * a state dict, or a torchvision ``.pth``/``.safetensors`` file;
    * a directory written by ``python -m jaxzoo convert`` (or ``jaxzoo.weights.save_weights``);
    * ``"torchvision"`` (torchvision's DEFAULT weights for ``name``) or ``"torchvision:NAME"``
      (e.g. ``torchvision:IMAGENET1K_V2``), or a ``WeightsEntry``: built as torchvision builds the
      model for those weights (``transform_input=True`` for googlenet and inception_v3, auxiliary
      heads kept as torchvision keeps them unless ``aux_logits`` says otherwise).

    ``num_classes=None`` keeps the weights' classifier; another number gets a new one (drawn from
    ``rng``, default ``PRNGKey(0)``), the same for every kind of source.
    """
    spec = get_spec(name)
    entry, class_names, path, notes = None, None, None, []
    if isinstance(source, WeightsEntry) or is_pretrained_spec(source):
        entry = source if isinstance(source, WeightsEntry) else weights_entry(
            name, parse_weights(source))
        if entry.model != name:
            raise ValueError(f"{entry.spec} names {entry.model} weights, not {name}")
        tensors, path = pretrained_tensors(entry, progress=progress)
        layout = "flax"
        aux = model_kwargs.pop("aux_logits", None)
        model_kwargs = entry.model_kwargs(aux_logits=aux, **model_kwargs)
        checkpoint_classes = entry.num_classes
        class_names = entry.class_names()
        description = f"torchvision's {name} weights {entry.name} ({path})"
        if model is not None:
            notes += _differences(model, entry.model_kwargs(), entry)
    elif isinstance(source, Mapping):
        tensors, layout = load_state_dict(source), "torch"
        checkpoint_classes = _head_num_classes(spec, tensors, layout)
        description = "the state dict"
    elif isinstance(source, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(source))
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"no weights at {path}: give a torchvision .pth/.safetensors file, a directory "
                f"from `python -m jaxzoo convert`, or torchvision's weights by name: "
                f"'torchvision' (its DEFAULT weights) or 'torchvision:IMAGENET1K_V1'")
        if os.path.isdir(path):
            if not weights_dir.is_weights_dir(path):
                hint = (f"it is a training workdir: use its checkpoints with --workdir {path}"
                        if os.path.isfile(os.path.join(path, "config.json")) else
                        f"expected {weights_dir.MODEL_JSON} and {weights_dir.VARIABLES_DIR}/ "
                        f"in it, as `python -m jaxzoo convert` writes them")
                raise ValueError(f"{path} is not a directory of converted weights: {hint}")
            variables, meta = weights_dir.load_weights(path)
            if meta["model"] != name:
                raise ValueError(f"{path} holds {meta['model']} weights, not {name}")
            tensors, layout = _by_torch_key(name, variables), "flax"
            model_kwargs = {**dict(meta.get("model_kwargs") or {}), **model_kwargs}
            checkpoint_classes = int(meta["num_classes"])
            class_names = meta.get("class_names")
            description = f"the converted weights in {path}"
        else:
            tensors, layout = load_state_dict(path), "torch"
            checkpoint_classes = _head_num_classes(spec, tensors, layout)
            description = f"the state dict {path}"
            published = _published_as(name, path)
            if published is not None:  # torchvision's own file: build what torchvision builds
                entry = published
                aux = model_kwargs.pop("aux_logits", None)
                model_kwargs = published.model_kwargs(aux_logits=aux, **model_kwargs)
                class_names = published.class_names()
                if model is not None:
                    notes += _differences(model, published.model_kwargs(), published)
    else:
        raise ValueError(f"cannot load weights from a {type(source).__name__}: give a state "
                         f"dict, a file or directory path, or 'torchvision[:NAME]'")

    if model is None:
        num_classes = int(num_classes or checkpoint_classes or 1000)
        model = create_model(name, num_classes=num_classes, **model_kwargs)
    num_classes = int(model.num_classes)
    variables, report = fit_variables(name, model, tensors, layout=layout, strict=strict,
                                      rng=rng, what=description)
    if checkpoint_classes is not None and num_classes != checkpoint_classes:
        class_names = None
    return Loaded(name=name, variables=dict(variables), report=report, model=model,
                  model_kwargs={k: v for k, v in model_kwargs.items() if k not in BUILD_FIELDS},
                  num_classes=num_classes, class_names=class_names, source=description,
                  path=path, weights=entry, notes=notes)


def _published_as(name: str, path: str) -> WeightsEntry | None:
    """The table's entry whose file name ``path`` has (``googlenet-1378be20.pth``), if any."""
    base = os.path.basename(path)
    matches = [e for e in list_weights(name) if e.file_name == base] if name in MODELS else []
    return matches[0] if matches else None


def network_kwargs(name: str, source: Any) -> dict:
    """The ``create_model`` arguments torchvision builds ``name`` with for the weights
    ``source`` names (``"torchvision[:WEIGHTS]"``, or torchvision's own file by its name), other
    than the auxiliary heads: ``{"transform_input": True}`` for googlenet and inception_v3, as
    ``torchvision.models.googlenet(weights=...)`` sets it. ``{}`` for any other source."""
    if isinstance(source, WeightsEntry):
        entry = source
    elif isinstance(source, str) and is_pretrained_spec(source):
        entry = weights_entry(name, parse_weights(source))
    elif isinstance(source, (str, os.PathLike)) and os.path.isfile(os.path.expanduser(source)):
        entry = _published_as(name, os.fspath(source))
    else:
        entry = None
    if entry is None:
        return {}
    return {k: v for k, v in entry.model_kwargs().items() if k != "aux_logits"}


def _differences(model, expected: dict, entry: WeightsEntry) -> list[str]:
    """Where a model built elsewhere differs from the network torchvision builds for ``entry``
    in a way that changes what the weights compute (``transform_input``)."""
    notes = []
    for field, value in expected.items():
        if field == "aux_logits" or not hasattr(model, field) or getattr(model, field) == value:
            continue
        notes.append(f"torchvision builds {entry.model} with {field}={value!r} for {entry.spec}, "
                     f"but this model has {field}={getattr(model, field)!r}, so the pretrained "
                     f"layers see their inputs otherwise than they were trained on; build it with "
                     f"{field}={value!r} (train.py: --config.model_kwargs.{field}={value!r}) "
                     f"for torchvision's network")
    return notes


def pretrained(name: str, weights: str | None = "DEFAULT", num_classes: int | None = None,
               dtype: Any = jnp.float32, lowering: str = "auto", *, rng: jax.Array | None = None,
               progress: bool = True, **model_kwargs: Any):
    """``(model, variables)``: jaxzoo's ``name`` with torchvision's pretrained ``weights``
    ("DEFAULT" as torchvision defines it, "IMAGENET1K_V1", "IMAGENET1K_V2", ...), built as
    torchvision builds it for those weights. ``num_classes`` other than the weights' gets a new
    classifier (torch's ``nn.Linear`` initialization from ``rng``); ``model_kwargs`` go to
    ``create_model`` (e.g. ``in_channels=1``: the input conv is adapted as timm does;
    ``aux_logits``). ``weights=None`` gives random weights, as torchvision's ``weights=None``.

    The file comes from torch's cache (``$TORCH_HOME/hub/checkpoints``) or is downloaded there;
    the converted variables are cached in ``~/.cache/jaxzoo/weights`` (``JAXZOO_WEIGHTS_CACHE``).
    """
    if weights is None:
        model = create_model(name, num_classes=num_classes or 1000, dtype=dtype,
                             lowering=lowering, **model_kwargs)
        spec = get_spec(name)
        size = spec.init_size
        return model, init_variables(model, size, jax.random.PRNGKey(0) if rng is None else rng)
    entry = weights_entry(name, weights)
    loaded = load(name, entry, num_classes=num_classes, rng=rng, progress=progress, dtype=dtype,
                  lowering=lowering, **model_kwargs)
    return loaded.model, loaded.variables
