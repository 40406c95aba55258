"""The catalog of torchvision's pretrained classification weights, by model and name (a weights
file is something else: a `.pth` in torch's cache, or a directory of `jaxzoo.weights`).

    entry = weights_entry("resnet50")                  # DEFAULT: IMAGENET1K_V2, as torchvision
    entry = weights_entry("resnet50", "IMAGENET1K_V1")
    entry.url, entry.file_name, entry.sha256_prefix, entry.transform.resize_size, entry.acc1

The facts are data (``_catalog.py``, generated from torchvision's weight enums by
``_make_catalog.py``); reading them imports neither torch nor torchvision.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

from jaxzoo import imagenet
from jaxzoo.convert._catalog import MODELS, TORCHVISION_VERSION

PREFIX = "torchvision"  # config.init_from="torchvision" or "torchvision:IMAGENET1K_V2"


@dataclasses.dataclass(frozen=True)
class Transform:
    """torchvision's evaluation transform for the weights: Resize(resize_size) of the shorter
    side with ``interpolation``, CenterCrop(crop_size), then normalization."""

    resize_size: int
    crop_size: int
    interpolation: str
    antialias: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One member of a torchvision weights enum (e.g. ``ResNet50_Weights.IMAGENET1K_V2``)."""

    model: str
    name: str                      # IMAGENET1K_V2
    enum: str                      # ResNet50_Weights
    is_default: bool
    url: str
    file_name: str                 # resnet50-11ad3fa6.pth
    sha256_prefix: str | None      # 11ad3fa6: torch.hub's check_hash rule
    num_classes: int
    classes: Any                   # "imagenet", a list of names, or None (not a classifier)
    transform: Transform
    acc1: float | None             # published ImageNet-1K top-1 / top-5 (%)
    acc5: float | None
    file_size_mb: float | None
    num_params: int | None
    min_size: tuple[int, int]
    torch_kwargs: dict             # what torchvision's builder passes for these weights
    aux_modules: tuple[str, ...]   # auxiliary heads (in the file; trained or not)
    keeps_aux: bool                # whether the builder keeps them: googlenet deletes aux1/aux2
                                   # after loading, inception_v3 keeps AuxLogits (its builder
                                   # refuses aux_logits=False with weights)
    key_rewrites: tuple            # ((pattern, replacement), ...) applied to the file's keys
    license: str | None = None
    recipe: str | None = None

    @property
    def spec(self) -> str:
        """``torchvision:IMAGENET1K_V2``: how ``config.init_from`` names these weights."""
        return f"{PREFIX}:{self.name}"

    def class_names(self) -> list[str] | None:
        if self.classes == "imagenet":
            return list(imagenet.class_names())
        return None if self.classes is None else list(self.classes)

    def model_kwargs(self, aux_logits: bool | None = None, **overrides: Any) -> dict:
        """jaxzoo ``create_model`` arguments for the network torchvision builds for these weights:
        its builder arguments (``transform_input=True`` for googlenet and inception_v3) with the
        auxiliary heads kept or not as torchvision does (``aux_logits`` overrides: jaxzoo also
        drops inception_v3's or keeps googlenet's on request), then ``overrides``."""
        kwargs = {k: v for k, v in self.torch_kwargs.items()
                  if k not in ("init_weights", "aux_logits")}
        if self.aux_modules:
            kwargs["aux_logits"] = self.keeps_aux if aux_logits is None else bool(aux_logits)
        elif aux_logits is not None:
            kwargs["aux_logits"] = bool(aux_logits)
        kwargs.update(overrides)
        return kwargs


def _entry(model: str, name: str) -> WeightsEntry:
    info = MODELS[model]
    raw = info["weights"][name]
    t = raw["transform"]
    return WeightsEntry(
        model=model, name=name, enum=info["enum"], is_default=name == info["default"],
        url=raw["url"], file_name=raw["file_name"], sha256_prefix=raw["sha256_prefix"],
        num_classes=raw["num_classes"], classes=raw["classes"],
        transform=Transform(t["resize_size"], t["crop_size"], t["interpolation"], t["antialias"],
                            tuple(t["mean"]), tuple(t["std"])),
        acc1=raw["acc1"], acc5=raw["acc5"], file_size_mb=raw["file_size_mb"],
        num_params=raw["num_params"], min_size=tuple(raw["min_size"]),
        torch_kwargs=dict(raw["torch_kwargs"]), aux_modules=tuple(raw["aux_modules"]),
        keeps_aux=raw["keeps_aux"], key_rewrites=tuple(tuple(r) for r in raw["key_rewrites"]),
        license=raw.get("license"), recipe=raw.get("recipe"))


def models_with_weights() -> list[str]:
    """Every torchvision classification model that has pretrained weights, sorted."""
    return sorted(MODELS)


def list_weights(model: str | None = None) -> list[WeightsEntry]:
    """The table: every entry, or those of ``model``, in torchvision's enum order."""
    models = models_with_weights() if model is None else [_known_model(model)]
    return [_entry(m, name) for m in models for name in MODELS[m]["weights"]]


def _known_model(model: str) -> str:
    if model in MODELS:
        return model
    close = difflib.get_close_matches(str(model), MODELS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"torchvision {TORCHVISION_VERSION} has no pretrained weights for "
                     f"{model!r}.{hint} Models with weights: {', '.join(models_with_weights())}")


def parse_weights(weights: str | None) -> str:
    """``None``/"DEFAULT"/"torchvision"/"torchvision:IMAGENET1K_V2"/"ResNet50_Weights.IMAGENET1K_V2"
    /"imagenet1k_v2" -> the member name ("DEFAULT" or "IMAGENET1K_V2")."""
    name = "DEFAULT" if weights is None else str(weights).strip()
    if name == PREFIX:
        return "DEFAULT"
    if name.startswith(PREFIX + ":"):
        name = name[len(PREFIX) + 1:]
    name = name.rpartition(".")[2] if "_Weights." in name else name
    return name.upper() or "DEFAULT"


def weights_entry(model: str, weights: str | None = "DEFAULT") -> WeightsEntry:
    """The entry of ``model``'s weights named ``weights`` (see ``parse_weights``); an unknown
    model or name is an error that lists what exists."""
    model = _known_model(model)
    info = MODELS[model]
    name = parse_weights(weights)
    if name == "DEFAULT":
        name = info["default"]
    if name not in info["weights"]:
        raise ValueError(f"{model} has no weights named {weights!r}; torchvision's "
                         f"{info['enum']} has {', '.join(info['weights'])} and DEFAULT "
                         f"(= {info['default']})")
    return _entry(model, name)


def is_pretrained_spec(source: Any) -> bool:
    """Whether ``source`` names torchvision's weights: "torchvision" or "torchvision:NAME"."""
    return isinstance(source, str) and (source == PREFIX or source.startswith(PREFIX + ":"))


def looks_like_weights_name(value: str) -> bool:
    """"DEFAULT", "IMAGENET1K_V2", "torchvision:IMAGENET1K_V1", "ResNet50_Weights.IMAGENET1K_V2"
    (rather than a file name)."""
    return is_pretrained_spec(value) or bool(
        re.fullmatch(r"([A-Za-z0-9_]+_Weights\.)?[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)+|DEFAULT|default",
                     value))


def key_rewrites_for(model: str) -> tuple:
    """The state-dict key rewrites torchvision applies to ``model``'s files (densenet's old
    ``norm.1`` names), the same for all its weights."""
    info = MODELS.get(model)
    if not info:
        return ()
    rewrites = {tuple(r) for w in info["weights"].values() for r in w["key_rewrites"]}
    return tuple(sorted(rewrites))


def aux_modules_for(model: str) -> tuple[str, ...]:
    """The auxiliary heads torchvision deletes from ``model`` after loading its weights when
    ``aux_logits=False`` (googlenet's aux1/aux2, inception_v3's AuxLogits)."""
    info = MODELS.get(model)
    if not info:
        return ()
    return tuple(sorted({m for w in info["weights"].values() for m in w["aux_modules"]}))


def rewrite_keys(state: dict, rewrites) -> dict:
    """Apply ``key_rewrites`` ([pattern, replacement], ...) to a state dict's keys, as
    torchvision's builder does before loading."""
    if not rewrites:
        return dict(state)
    compiled = [(re.compile(p), r) for p, r in rewrites]
    out = {}
    for key, value in state.items():
        for pattern, replacement in compiled:
            if pattern.match(key):
                key = pattern.sub(replacement, key)
        out[key] = value
    return out
