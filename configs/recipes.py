"""torchvision's training recipes as presets: ``--config=MODEL:WEIGHTS`` trains with the settings
of the reference command (``references/classification/README.md``) that produced torchvision's
``WEIGHTS`` for ``MODEL``.

``RECIPES`` maps ``(model, weights)`` to a ``Recipe``; ``recipe_fields(model, weights)`` gives the
config fields ``get_config_for`` applies over the defaults.

Each recipe keeps the command as the README gives it, and its fields are read from that command
(``fields_from_command``) over the reference script's own defaults (``REFERENCE_DEFAULTS``), so
the two cannot disagree. The reference's ``--batch-size`` is per GPU: the global batch here is
that times the GPUs (``--nproc_per_node``, times the nodes where the README says more were used),
at the learning rate as given. Where the README says the published weights were trained with
another number of GPUs or batch than its command shows, the preset follows the weights
(``Recipe.note`` says so). Flags with no counterpart here (``--amp``: float16 autocast; jaxzoo
computes in ``config.dtype``; ``--sync-bn``: BatchNorm statistics are always synchronized;
``--transformer-embedding-decay``: no transformer here) are left out.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex


@dataclasses.dataclass(frozen=True)
class Recipe:
    command: str          # the reference command, as the README gives it
    fields: dict          # the config fields that reproduce it (global batch = per-GPU x GPUs)
    acc1: float | None = None  # the weights' published ImageNet top-1
    note: str = ""        # where the weights' training differs from the command shown


# references/classification/train.py's defaults, as config fields (the flags' names mapped).
REFERENCE_DEFAULTS = {
    "dataset": "imagenet2012", "image_size": 224, "batch_size": 32, "num_epochs": 90,
    "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
    "norm_weight_decay": None, "bias_weight_decay": None, "label_smoothing": 0.0,
    "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "lr_schedule": "step", "lr_step_size": 30,
    "lr_gamma": 0.1, "lr_min": 0.0, "warmup_epochs": 0.0, "warmup_method": "constant",
    "warmup_decay": 0.01, "auto_augment": "", "ra_magnitude": 9, "augmix_severity": 3,
    "random_erase": 0.0, "model_ema": False, "model_ema_steps": 32, "model_ema_decay": 0.99998,
    "interpolation": "bilinear", "val_resize_size": 256, "val_crop_size": 224, "ra_reps": 0,
    "grad_clip_norm": 0.0,
}

_SCHEDULES = {"steplr": "step", "cosineannealinglr": "cosine", "exponentiallr": "exponential"}


def _parser() -> argparse.ArgumentParser:
    """The reference script's flags that change the math (its get_args_parser), with None
    defaults: only what a command sets is taken."""
    p = argparse.ArgumentParser(add_help=False)
    add = p.add_argument
    add("--model")
    add("-b", "--batch-size", type=int)
    add("--epochs", type=int)
    add("--opt")
    add("--lr", type=float)
    add("--momentum", type=float)
    add("--wd", "--weight-decay", dest="weight_decay", type=float)
    add("--norm-weight-decay", type=float)
    add("--bias-weight-decay", type=float)
    add("--transformer-embedding-decay", type=float)
    add("--label-smoothing", type=float)
    add("--mixup-alpha", type=float)
    add("--cutmix-alpha", type=float)
    add("--lr-scheduler")
    add("--lr-warmup-epochs", type=int)
    add("--lr-warmup-method")
    add("--lr-warmup-decay", type=float)
    add("--lr-step-size", type=int)
    add("--lr-gamma", type=float)
    add("--lr-min", type=float)
    add("--auto-augment")
    add("--ra-magnitude", type=int)
    add("--augmix-severity", type=int)
    add("--random-erase", type=float)
    add("--model-ema", action="store_true", default=None)
    add("--model-ema-steps", type=int)
    add("--model-ema-decay", type=float)
    add("--interpolation")
    add("--val-resize-size", type=int)
    add("--val-crop-size", type=int)
    add("--train-crop-size", type=int)
    add("--ra-sampler", action="store_true", default=None)
    add("--ra-reps", type=int)
    add("--clip-grad-norm", type=float)
    add("--amp", action="store_true", default=None)
    add("--sync-bn", action="store_true", default=None)
    add("--nproc_per_node", "--nproc-per-node", type=int)
    return p


# The reference script's flag for each config field a recipe sets.
REFERENCE_FLAGS = {
    "dataset": "--data-path", "image_size": "--train-crop-size",
    "batch_size": "--batch-size x GPUs", "num_epochs": "--epochs", "optimizer": "--opt",
    "learning_rate": "--lr", "momentum": "--momentum", "weight_decay": "--weight-decay",
    "norm_weight_decay": "--norm-weight-decay", "bias_weight_decay": "--bias-weight-decay",
    "label_smoothing": "--label-smoothing", "mixup_alpha": "--mixup-alpha",
    "cutmix_alpha": "--cutmix-alpha", "lr_schedule": "--lr-scheduler",
    "lr_step_size": "--lr-step-size", "lr_gamma": "--lr-gamma", "lr_min": "--lr-min",
    "warmup_epochs": "--lr-warmup-epochs", "warmup_method": "--lr-warmup-method",
    "warmup_decay": "--lr-warmup-decay", "auto_augment": "--auto-augment",
    "ra_magnitude": "--ra-magnitude", "augmix_severity": "--augmix-severity",
    "random_erase": "--random-erase", "model_ema": "--model-ema",
    "model_ema_steps": "--model-ema-steps", "model_ema_decay": "--model-ema-decay",
    "interpolation": "--interpolation", "val_resize_size": "--val-resize-size",
    "val_crop_size": "--val-crop-size", "ra_reps": "--ra-sampler --ra-reps",
    "grad_clip_norm": "--clip-grad-norm",
}
_COMPUTED = ("dataset", "batch_size", "optimizer", "lr_schedule", "warmup_epochs", "ra_reps")


def fields_from_command(command: str, nodes: int = 1) -> dict:
    """The config fields of a reference command (``torchrun --nproc_per_node=8 train.py ...``)
    over ``REFERENCE_DEFAULTS``; ``nodes`` multiplies the GPUs of ``--nproc_per_node``."""
    words = [w for w in shlex.split(command.replace("\\\n", " ").replace("\\", " "))
             if w not in ("torchrun", "train.py")]
    args, unknown = _parser().parse_known_args(words)
    if unknown:
        raise ValueError(f"flags the recipes do not know: {' '.join(unknown)}")
    fields = dict(REFERENCE_DEFAULTS)
    gpus = (args.nproc_per_node or 1) * nodes
    # The flags whose value is the field's as parsed (the others are computed below).
    simple = {flag.split()[-1].lstrip("-").replace("-", "_"): field
              for field, flag in REFERENCE_FLAGS.items() if field not in _COMPUTED}
    for flag, field in simple.items():
        value = getattr(args, flag)
        if value is not None:
            fields[field] = value
    fields["batch_size"] = (args.batch_size or REFERENCE_DEFAULTS["batch_size"]) * gpus
    if args.opt is not None:
        fields["optimizer"] = args.opt.lower()
    if args.lr_scheduler is not None:
        fields["lr_schedule"] = _SCHEDULES[args.lr_scheduler.lower()]
    if args.lr_warmup_epochs is not None:
        fields["warmup_epochs"] = float(args.lr_warmup_epochs)
    if args.ra_sampler:
        fields["ra_reps"] = args.ra_reps or 3  # the reference's --ra-reps default
    for flag, field in (("num_epochs", "num_epochs"), ("lr_step_size", "lr_step_size")):
        fields[field] = int(fields[field])
    return fields


def _recipe(model: str, weights: str, command: str, note: str = "", **overrides) -> tuple:
    from jaxzoo.convert._catalog import MODELS

    command = command.replace("$MODEL", model)
    fields = {**fields_from_command(command), **overrides}
    acc1 = MODELS[model]["weights"][weights]["acc1"]
    return (model, weights), Recipe(command=command, fields=fields, acc1=acc1, note=note)


_TORCHRUN = "torchrun --nproc_per_node=8 train.py"

_RESNET_V2 = (  # pytorch/vision#3995 (the weights' recipe link), the blog post's command
    f"{_TORCHRUN} --model $MODEL --batch-size 128 --lr 0.5 \\\n"
    "--lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear \\\n"
    "--auto-augment ta_wide --epochs 600 --random-erase 0.1 --weight-decay 0.00002 \\\n"
    "--norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0 \\\n"
    "--train-crop-size 176 --model-ema --val-resize-size 232 --ra-sampler --ra-reps 4")

_MOBILENET_V3 = (
    f"{_TORCHRUN}\\\n     --model $MODEL --epochs 600 --opt rmsprop --batch-size 128 --lr 0.064\\\n"
    "     --wd 0.00001 --lr-step-size 2 --lr-gamma 0.973 --auto-augment imagenet "
    "--random-erase 0.2")

_EFFICIENTNET_V2 = (
    _TORCHRUN + " \\\n--model $MODEL --batch-size 128 --lr 0.5 --lr-scheduler cosineannealinglr "
    "\\\n--lr-warmup-epochs 5 --lr-warmup-method linear --auto-augment ta_wide --epochs 600 "
    "--random-erase 0.1 \\\n--label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0 "
    "--weight-decay 0.00002 --norm-weight-decay 0.0 \\\n--train-crop-size {train} --model-ema "
    "--val-crop-size {val} --val-resize-size {val} \\\n--ra-sampler --ra-reps 4")

_REGNET = (
    _TORCHRUN + "\\\n     --model $MODEL --epochs 100 --batch-size {batch} --wd 0.00005 "
    "--lr={lr}\\\n     --lr-scheduler=cosineannealinglr --lr-warmup-method=linear\\\n"
    "     --lr-warmup-epochs=5 --lr-warmup-decay=0.1")

_CONVNEXT = (
    f"{_TORCHRUN}\\\n--model $MODEL --batch-size 128 --opt adamw --lr 1e-3 --lr-scheduler "
    "cosineannealinglr \\\n--lr-warmup-epochs 5 --lr-warmup-method linear --auto-augment ta_wide "
    "--epochs 600 --random-erase 0.1 \\\n--label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha "
    "1.0 --weight-decay 0.05 --norm-weight-decay 0.0 \\\n--train-crop-size 176 --model-ema "
    "--val-resize-size 232 --ra-sampler --ra-reps 4")

_SHUFFLENET_V2 = (
    f"{_TORCHRUN} \\\n--batch-size=128 \\\n--lr=0.5 --lr-scheduler=cosineannealinglr "
    "--lr-warmup-epochs=5 --lr-warmup-method=linear \\\n--auto-augment=ta_wide --epochs=600 "
    "--random-erase=0.1 --weight-decay=0.00002 \\\n--norm-weight-decay=0.0 "
    "--label-smoothing=0.1 --mixup-alpha=0.2 --cutmix-alpha=1.0 \\\n--train-crop-size=176 "
    "--model-ema --val-resize-size=232 --ra-sampler --ra-reps=4")

_ON_MORE_GPUS = ("the README's command is for one node of 8 GPUs; the published weights were "
                 "trained on {gpus} GPUs with --batch-size {batch}{lr}: the preset's global "
                 "batch is {total}")


def _more_gpus(gpus: int, batch: int, lr: float | None = None) -> tuple[str, dict]:
    note = _ON_MORE_GPUS.format(gpus=gpus, batch=batch, total=gpus * batch,
                                lr=f" and --lr {lr:g}" if lr is not None else "")
    return note, {"batch_size": gpus * batch, **({"learning_rate": lr} if lr else {})}


def _all() -> dict:
    recipes = []
    for model in ("alexnet", "vgg11", "vgg13", "vgg16", "vgg19"):
        recipes.append(_recipe(model, "IMAGENET1K_V1", f"{_TORCHRUN}\\\n    --model $MODEL --lr 1e-2"))
    for model in ("vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
                  "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        recipes.append(_recipe(model, "IMAGENET1K_V1", f"{_TORCHRUN} --model $MODEL"))
    recipes.append(_recipe("resnet50", "IMAGENET1K_V2", _RESNET_V2,
                           note="from pytorch/vision#3995, the weights' recipe link; the README "
                                "lists it under the blog post 'How to Train State-Of-The-Art "
                                "Models Using TorchVision's Latest Primitives'"))
    resnext = f"{_TORCHRUN}\\\n    --model $MODEL --epochs 100"
    recipes.append(_recipe("resnext50_32x4d", "IMAGENET1K_V1", resnext))
    note, overrides = _more_gpus(64, 16, 0.4)
    recipes.append(_recipe("resnext101_32x8d", "IMAGENET1K_V1", resnext, note, **overrides))
    recipes.append(_recipe(
        "mobilenet_v2", "IMAGENET1K_V1", f"{_TORCHRUN}\\\n     --model $MODEL --epochs 300 "
        "--lr 0.045 --wd 0.00004\\\n     --lr-step-size 1 --lr-gamma 0.98"))
    for model in ("mobilenet_v3_large", "mobilenet_v3_small"):
        recipes.append(_recipe(model, "IMAGENET1K_V1", _MOBILENET_V3,
                               note="the published weights then average the parameters of the "
                                    "last 3 checkpoints that improved Acc@1 (not done here)"))
    for model, train, val in (("efficientnet_v2_s", 300, 384), ("efficientnet_v2_m", 384, 480)):
        note, overrides = _more_gpus(32, 32)
        recipes.append(_recipe(model, "IMAGENET1K_V1",
                               _EFFICIENTNET_V2.format(train=train, val=val), note, **overrides))
    regnets = {(128, 0.8): ("regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf",
                            "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf"),
               (64, 0.4): ("regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf", "regnet_y_3_2gf",
                           "regnet_y_8gf"),
               (32, 0.2): ("regnet_x_32gf", "regnet_y_16gf", "regnet_y_32gf")}
    for (batch, lr), models in regnets.items():
        for model in models:
            if model == "regnet_y_400mf":  # "we used learning rate 0.4 for regnet_y_400mf"
                recipes.append(_recipe(model, "IMAGENET1K_V1", _REGNET.format(batch=batch, lr=lr),
                                       note="the README: learning rate 0.4 for this model",
                                       learning_rate=0.4))
            else:
                recipes.append(_recipe(model, "IMAGENET1K_V1",
                                       _REGNET.format(batch=batch, lr=lr)))
    for model in ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"):
        note, overrides = _more_gpus(16, 64)
        recipes.append(_recipe(model, "IMAGENET1K_V1", _CONVNEXT, note, **overrides))
    for model in ("shufflenet_v2_x1_5", "shufflenet_v2_x2_0"):
        recipes.append(_recipe(model, "IMAGENET1K_V1", _SHUFFLENET_V2,
                               note="the README's command omits --model (it names the models "
                                    "below it)"))
    return dict(recipes)


RECIPES: dict[tuple[str, str], Recipe] = _all()


def recipe_fields(model: str, weights: str) -> dict:
    """The config fields of the recipe that produced ``model``'s ``weights``."""
    return dict(RECIPES[(model, weights)].fields)
