"""Write ``jaxzoo/convert/_catalog.py`` from the installed torchvision's weight enums.

    python -m jaxzoo.convert._make_catalog          # rewrite the table
    python -m jaxzoo.convert._make_catalog --check  # exit 1 if it differs from torchvision

jaxzoo reads the generated table at run time and never imports torchvision for it. The tests
compare the table with ``table_from_torchvision()`` and check ``builder_kwargs`` against what
torchvision's builders build, so a torchvision upgrade that changes a fact is caught.
"""
from __future__ import annotations

import math
import os
import pprint
import re
import sys

from jaxzoo.convert.catalog import rewrite_keys

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_catalog.py")

# torch.hub's rule for the hash prefix in a file name (torch.hub.HASH_REGEX).
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")

# torchvision's densenet files keep the old key names 'norm.1', 'conv.2', ...; its builder renames
# them before loading (torchvision.models.densenet._load_state_dict).
DENSENET_KEY_REWRITES = [
    [r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$",
     r"\1\2"],
]


def builder_kwargs(model: str, meta: dict) -> tuple[dict, list[str], bool, list]:
    """What torchvision's builder does for pretrained weights of ``model`` besides setting
    ``num_classes``: the keyword arguments it passes to the model class, the auxiliary heads the
    file holds, whether the builder keeps them (googlenet deletes aux1/aux2 after loading unless
    called with ``aux_logits=True``; inception_v3 keeps AuxLogits, and refuses
    ``aux_logits=False`` with weights), and the key rewrites it applies to the file's keys."""
    kwargs, aux, keeps_aux, rewrites = {}, [], False, []
    if model in ("googlenet", "inception_v3"):
        kwargs = {"transform_input": True, "aux_logits": True, "init_weights": False}
        aux = ["aux1", "aux2"] if model == "googlenet" else ["AuxLogits"]
        keeps_aux = model == "inception_v3"
    elif model.startswith("vgg"):
        kwargs = {"init_weights": False}
    elif model.startswith("vit_"):
        kwargs = {"image_size": meta["min_size"][0]}
    elif model.startswith("maxvit"):
        kwargs = {"input_size": list(meta["min_size"])}
    if model.startswith("densenet"):
        rewrites = DENSENET_KEY_REWRITES
    return kwargs, aux, keeps_aux, rewrites


def _module_facts(model) -> dict:
    """Every submodule's parameter and buffer shapes and its plain attributes (flags such as
    ``transform_input``, ``aux_logits``, dropout rates): what a builder argument can change."""
    facts = {f"{k}:shape": tuple(v.shape) for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if not attr.startswith("_") and attr != "training" and isinstance(
                    value, (bool, int, float, str, tuple, type(None))):
                facts[f"{name}.{attr}"] = value
    return facts


def builder_differences(model: str, weights_name: str, entry: dict) -> list[str]:
    """Build ``model`` as torchvision builds it for ``weights_name`` (no download: the state dict
    is intercepted) and as ``get_model(model, weights=None, num_classes=..., **torch_kwargs)``
    followed by deleting ``aux_modules`` unless ``keeps_aux``, both on the meta device (tensors
    without data), and list how they differ."""
    import torch
    import torchvision.models as tvm
    import torchvision.models.regnet as tv_regnet
    from torchvision.models._api import WeightsEnum

    class Intercepted(dict):
        pass

    renamed = {}
    real_get, real_load = WeightsEnum.get_state_dict, torch.nn.Module.load_state_dict

    def load(self, state, *args, **kwargs):
        if isinstance(state, Intercepted):
            renamed.update(state)
            return None
        return real_load(self, state, *args, **kwargs)

    old_keys = {"features.denseblock1.denselayer1.norm.1.weight": 0,
                "features.denseblock1.denselayer1.conv.2.weight": 0, "classifier.weight": 0}
    real_block_params = tv_regnet.BlockParams.__dict__["from_init_params"]

    def block_params(cls, *args, **kwargs):  # computes widths with tensors that need data
        with torch.device("cpu"):
            return real_block_params.__func__(cls, *args, **kwargs)

    WeightsEnum.get_state_dict = lambda self, *a, **k: Intercepted(old_keys)
    torch.nn.Module.load_state_dict = load
    tv_regnet.BlockParams.from_init_params = classmethod(block_params)
    try:
        with torch.device("meta"):
            theirs = tvm.get_model(model, weights=weights_name)
            ours = tvm.get_model(model, weights=None, num_classes=entry["num_classes"],
                                 **entry["torch_kwargs"])
    finally:
        WeightsEnum.get_state_dict, torch.nn.Module.load_state_dict = real_get, real_load
        tv_regnet.BlockParams.from_init_params = real_block_params
    if entry["aux_modules"] and not entry["keeps_aux"]:
        for module in entry["aux_modules"]:
            setattr(ours, module, None)
        ours.aux_logits = False
    differences = []
    a, b = _module_facts(theirs), _module_facts(ours)
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            differences.append(f"{key}: torchvision {a.get(key, '<absent>')}, table "
                               f"{b.get(key, '<absent>')}")
    rewritten = rewrite_keys(old_keys, entry["key_rewrites"])
    if set(rewritten) != set(renamed):
        differences.append(f"state dict keys: torchvision loads {sorted(renamed)}, the table's "
                           f"rewrites give {sorted(rewritten)}")
    return differences


def _number(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def entry_from_torchvision(model: str, weights) -> dict:
    """The table's facts about one torchvision weights enum member."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    meta = weights.meta
    file_name = os.path.basename(weights.url)
    match = HASH_REGEX.search(file_name)
    transform = weights.transforms()
    categories = meta.get("categories")
    if categories is None:
        classes = None
    elif list(categories) == list(_IMAGENET_CATEGORIES):
        classes = "imagenet"
    else:
        classes = list(categories)
    (dataset, metrics), = meta["_metrics"].items()
    kwargs, aux, keeps_aux, rewrites = builder_kwargs(model, meta)
    entry = {
        "url": weights.url,
        "file_name": file_name,
        "sha256_prefix": match.group(1) if match else None,
        "num_classes": len(categories) if categories is not None else 1000,
        "classes": classes,
        "transform": {
            "resize_size": int(transform.resize_size[0]),
            "crop_size": int(transform.crop_size[0]),
            "interpolation": transform.interpolation.value,
            "antialias": bool(transform.antialias),
            "mean": [float(x) for x in transform.mean],
            "std": [float(x) for x in transform.std],
        },
        "metrics_dataset": dataset,
        "acc1": _number(metrics.get("acc@1")),
        "acc5": _number(metrics.get("acc@5")),
        "file_size_mb": _number(meta.get("_file_size")),
        "num_params": meta.get("num_params"),
        "min_size": list(meta["min_size"]),
        "gflops": _number(meta.get("_ops")),
        "recipe": meta.get("recipe"),
        "torch_kwargs": kwargs,
        "aux_modules": aux,
        "keeps_aux": keeps_aux,
        "key_rewrites": rewrites,
    }
    if "license" in meta:
        entry["license"] = meta["license"]
    return entry


def table_from_torchvision() -> dict:
    """``{model: {"enum", "default", "weights": {NAME: entry}}}`` for every classification model
    of the installed torchvision."""
    import torchvision.models as tvm

    table = {}
    for model in tvm.list_models(module=tvm):
        enum = tvm.get_model_weights(model)
        table[model] = {
            "enum": enum.__name__,
            "default": enum.DEFAULT.name,
            "weights": {w.name: entry_from_torchvision(model, w) for w in enum},
        }
    return table


def torchvision_version() -> str:
    import torchvision

    return torchvision.__version__.split("+")[0]


def render(table: dict, version: str) -> str:
    return (
        '"""torchvision\'s classification weights: URL, file, classes, evaluation transform,\n'
        "published accuracy and the builder arguments torchvision uses for them.\n\n"
        "Generated from torchvision " + version + " by\n"
        "``python -m jaxzoo.convert._make_catalog``; do not edit by hand\n"
        '(tests/test_pretrained.py compares it with the installed torchvision)."""\n'
        f"TORCHVISION_VERSION = {version!r}\n\n"
        f"MODELS = {pprint.pformat(table, width=100, sort_dicts=True)}\n")


def main(argv: list[str]) -> int:
    table = table_from_torchvision()
    problems = [f"{model} {name}: {difference}" for model, info in table.items()
                for name, entry in info["weights"].items()
                for difference in builder_differences(model, name, entry)]
    if problems:
        print("builder_kwargs() no longer describes what torchvision's builders do:\n  "
              + "\n  ".join(problems[:20]))
        return 1
    text = render(table, torchvision_version())
    if "--check" in argv:
        with open(TABLE_PATH) as f:
            same = f.read() == text
        print("the table matches the installed torchvision" if same else
              f"{TABLE_PATH} differs from the installed torchvision: regenerate it with "
              f"python -m jaxzoo.convert._make_catalog")
        return 0 if same else 1
    with open(TABLE_PATH, "w") as f:
        f.write(text)
    print(f"wrote {TABLE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
