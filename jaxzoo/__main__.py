"""python -m jaxzoo {list,weights,convert,check,predict,evaluate,export,bench,recipe} ..."""
from __future__ import annotations

import argparse
import json
import os
import sys

from jaxzoo import environment

# Each subcommand imports what it needs when it runs: `--help`, `list` or `weights` start without
# TensorFlow or torch, and `bench` pins its CPUs before JAX starts its thread pool.

environment.quiet_tensorflow()


def cmd_list(args) -> int:
    import fnmatch

    import jax

    import jaxzoo
    from jaxzoo.models.registry import variable_shapes

    # A plain word matches as a prefix ("resnet" lists every ResNet), a pattern as the shell does.
    patterns = [p if any(c in p for c in "*?[") else p + "*" for p in args.patterns]
    names = [n for n in jaxzoo.list_models()
             if not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not names:
        print(f"error: no model matches {' '.join(args.patterns)}; the names: "
              f"{', '.join(jaxzoo.list_models())}", file=sys.stderr)
        return 1
    print(f"{'model':<22} {'parameters':>12}  {'input':>5}  torchvision counterpart")
    for name in names:
        spec = jaxzoo.get_spec(name)
        model = jaxzoo.create_model(name)
        size = spec.init_size
        shapes = variable_shapes(model, size)  # with the model's own in_channels
        count = sum(x.size for x in jax.tree.leaves(shapes["params"]))
        counterpart = f"torchvision.models.{spec.torchvision}" if spec.torchvision else "-"
        print(f"{name:<22} {count:>12,}  {spec.default_size:>5}  {counterpart}")
    return 0


def cmd_weights(args) -> int:
    import jaxzoo
    from jaxzoo.convert import catalog, hub, loader

    entries = catalog.list_weights(args.model)
    registered = set(jaxzoo.list_models())
    names = [e.name + (" (DEFAULT)" if e.is_default else "") for e in entries]
    width, model_width = max(map(len, names)), max(len(e.model) for e in entries)
    print(f"{'model':<{model_width}}  {'weights':<{width}} {'acc@1':>7} {'acc@5':>7} {'size':>9}  "
          f"{'eval transform':<21} cached")
    for e, name in zip(entries, names):
        acc1 = "-" if e.acc1 is None else f"{e.acc1:.3f}"
        acc5 = "-" if e.acc5 is None else f"{e.acc5:.3f}"
        size = "-" if e.file_size_mb is None else f"{e.file_size_mb:.1f} MB"
        t = e.transform
        transform = f"{t.resize_size}/{t.crop_size} {t.interpolation}"
        cached = [what for what, there in (
            ("file", os.path.isfile(hub.cached_file(e.url, e.file_name))),
            ("converted", os.path.isdir(loader.converted_dir(e)))) if there]
        note = "" if e.model in registered else "  (model not in jaxzoo yet)"
        print(f"{e.model:<{model_width}}  {name:<{width}} {acc1:>7} {acc5:>7} {size:>9}  "
              f"{transform:<21} {', '.join(cached) or 'no'}{note}")
    print(f"\nacc@1, acc@5: torchvision's published ImageNet-1K accuracy (%). eval transform: "
          f"Resize (shorter side) / CenterCrop, interpolation.\n"
          f"cached: file in {hub.checkpoints_dir()} (torch's cache, shared with torchvision), "
          f"converted in {loader.weights_cache_dir()}.\n"
          f"Use: jaxzoo.pretrained(MODEL, weights=...), --config.init_from=torchvision[:WEIGHTS], "
          f"python -m jaxzoo predict --model MODEL --pretrained [WEIGHTS] IMAGE")
    return 0


def cmd_convert(args) -> int:
    from jaxzoo import convert
    from jaxzoo.weights import save_weights

    variables, report = convert.load_torch(args.model, args.weights, num_classes=args.num_classes,
                                           strict=not args.non_strict)
    num_classes = convert.num_classes_of(args.model, variables)
    out = save_weights(args.out, args.model, variables, num_classes=num_classes,
                       source=os.path.abspath(args.weights))
    print(f"converted {args.weights} -> {out} ({args.model}, {num_classes} classes): {report}")
    return 0


def cmd_check(args) -> int:
    import torch

    from jaxzoo.convert import parity

    torch.set_num_threads(args.threads)
    if args.train_steps:
        return _check_training(args)
    if args.pretrained:
        result = parity.check_pretrained(args.model, args.pretrained, size=args.image_size,
                                         batch=args.batch_size, seed=args.seed)
    else:
        result = parity.check(args.model, args.weights, size=args.image_size,
                              batch=args.batch_size, seed=args.seed)
    source = (f"torchvision's {args.pretrained} weights" if args.pretrained else args.weights
              or "random weights, randomized BatchNorm statistics")
    print(f"{args.model} vs torchvision.models.{args.model} ({source}), "
          f"{args.batch_size} inputs of {args.image_size or 'default'} px:")
    print(f"  max abs logit difference  {result.max_abs_diff:.3e}")
    print(f"  logit scale (max |torch|)  {result.logit_scale:.3e}")
    print(f"  relative difference        {result.relative_diff:.3e}  (tolerance 1e-4)")
    print(f"  top-1 agreement            {result.top1_agreement:.0%}")
    print("PASS" if result.ok() else "FAIL")
    return 0 if result.ok() else 1


def _check_training(args) -> int:
    """``check MODEL --train-steps N``: jaxzoo's train step beside PyTorch's (train_parity)."""
    from jaxzoo.train import parity as train_parity

    if args.weights or args.pretrained:
        raise ValueError("--train-steps starts from random weights with randomized BatchNorm "
                         "statistics; it takes no --weights or --pretrained")
    config = train_parity.load_config(args.model, args.config, args.set)
    size = args.image_size or 64
    print(f"{args.model}: {args.train_steps} training steps in jaxzoo and in PyTorch from the same "
          f"random weights (randomized BatchNorm statistics), batches of {args.batch_size} random "
          f"{size}-px images, {args.num_classes} classes, config "
          f"{args.config or args.model}{''.join(' --set ' + s for s in args.set)}:")
    result = train_parity.run(args.model, config, steps=args.train_steps, batch=args.batch_size,
                              size=size, num_classes=args.num_classes,
                              steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                              reference=args.reference)
    print(train_parity.report(result))
    return 0 if result.ok() else 1


def cmd_predict(args) -> int:
    from jaxzoo.predict import Predictor, UnreadableImage

    if args.pretrained is not None and not _is_weights_name(args.pretrained):
        args.images, args.pretrained = [args.pretrained, *args.images], "DEFAULT"
    if not args.images:
        raise ValueError("give at least one image file or folder to predict")
    if args.workdir and (args.model or args.image_size):
        raise ValueError("--model and --image-size go with --weights; a workdir knows its model "
                         "and image size")
    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}")
    if args.workdir:
        predictor = Predictor.from_workdir(args.workdir, batch_size=args.batch_size)
    elif args.pretrained is not None:
        if not args.model:
            raise ValueError("say which model's pretrained weights to use: --model NAME "
                             "(python -m jaxzoo weights lists them)")
        predictor = Predictor.from_pretrained(args.model, args.pretrained,
                                              image_size=args.image_size,
                                              batch_size=args.batch_size)
    else:
        predictor = Predictor.from_weights(args.model, args.weights, image_size=args.image_size,
                                           batch_size=args.batch_size)
    predicted, skipped = 0, []
    for result in predictor.predict_files(args.images, top_k=args.top_k):
        if isinstance(result, UnreadableImage):
            skipped.append(result)
            print(f"skipped {printable(result.path)}: {printable(result.reason)}",
                  file=sys.stderr, flush=True)
            continue
        predicted += 1
        print(json.dumps(result.to_json()) if args.json else
              f"{printable(result.path)}  {printable(str(result))}",
              flush=True)
    if skipped:
        print(f"{len(skipped)} file(s) could not be read and were skipped", file=sys.stderr)
    if not predicted:
        print("error: no image could be predicted" + ("" if skipped else
              f" (no image files in {' '.join(args.images)})"), file=sys.stderr)
        return 1
    return 0


def printable(text: str) -> str:
    """``text`` with its control and line-separating characters escaped (``\\n``, ``\\x1b``,
    ``\\u2028``), so that a file or class name cannot start a line of its own or move the
    cursor in plain output; everything else (accents, CJK, spaces) is left as it is."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode()
                   for c in str(text))


def _is_weights_name(value: str) -> bool:
    """``--pretrained IMAGENET1K_V2`` names weights; ``--pretrained photo.jpg`` is an image."""
    from jaxzoo.convert.catalog import looks_like_weights_name

    return looks_like_weights_name(value) and not os.path.exists(value)


def cmd_evaluate(args) -> int:
    from jaxzoo import evaluate

    predictor = None
    if args.pretrained is not None:
        from jaxzoo.predict import Predictor

        if not args.model:
            raise ValueError("say which model's pretrained weights to evaluate: --model NAME")
        if not args.dataset:
            raise ValueError("say which dataset to evaluate the pretrained weights on: --dataset "
                             "NAME (imagenet2012, or folder:PATH with ImageNet's class folders)")
        predictor = Predictor.from_pretrained(args.model, args.pretrained)
    elif not args.workdir:
        raise ValueError("give --workdir (a training run) or --model NAME --pretrained [WEIGHTS]")
    summary = evaluate.evaluate(args.workdir, dataset=args.dataset, split=args.split,
                                data_dir=args.data_dir, batch_size=args.batch_size,
                                predictor=predictor)
    print(json.dumps(summary, indent=2) if args.json else evaluate.report(summary))
    return 0


def cmd_export(args) -> int:
    from jaxzoo import export
    from jaxzoo.predict import Predictor

    export.check_format(args.format)
    if args.format != "torch":
        export.require(args.format)  # before any weights are read or downloaded
    if args.workdir:
        if args.image_size:
            raise ValueError("a workdir's model is exported at the image size it was trained "
                             "at; --image-size is for --weights and --pretrained")
        predictor = Predictor.from_workdir(args.workdir)
    elif args.weights:
        predictor = Predictor.from_weights(args.model, args.weights, image_size=args.image_size)
    else:
        name, _, weights = args.pretrained.partition(":")
        predictor = Predictor.from_pretrained(name, weights or "DEFAULT",
                                              image_size=args.image_size)
    platforms = args.platforms.split(",") if args.platforms else None
    exported = export.export(predictor, args.format, args.out, platforms)
    size = exported.image_size
    from jaxzoo import imagenet

    resize = imagenet.eval_resize_size(size, predictor.resize_size)
    if exported.format == "torch":
        print(f"wrote {exported.path} (class names: {exported.class_names_path}); load it with:\n"
              f"  model = {exported.constructor}\n"
              f"  model.load_state_dict(torch.load({exported.path!r}))\n"
              f"and prepare images as it was trained: transforms.Resize({resize}), "
              f"CenterCrop({size}), ToTensor(), Normalize(ImageNet mean and std)")
        return 0
    lowered = f", lowered for {','.join(exported.platforms)}" if exported.platforms else ""
    load = {"stablehlo": f"jax.export.deserialize(open({exported.path!r}, 'rb').read())"
                         f".call(images)",
            "savedmodel": f"tf.saved_model.load({exported.path!r}).signatures"
                          f"['serving_default'](images=images)['logits']",
            "onnx": f"onnxruntime.InferenceSession({exported.path!r}).run(None, "
                    f"{{'images': images}})[0]"}[exported.format]
    print(f"wrote {exported.path} ({exported.format}{lowered}; class names: "
          f"{exported.class_names_path})\n"
          f"  input  images: uint8 RGB, shape (batch, {size}, {size}, 3), any batch size; resize "
          f"and crop as evaluation does (Resize({resize}, {predictor.interpolation}), "
          f"CenterCrop({size})); the ImageNet normalization is inside\n"
          f"  output logits: float32, shape (batch, {exported.num_classes})\n"
          f"  logits = {load}")
    return 0


def cmd_bench(args) -> int:
    from jaxzoo import bench

    if args.input is not None:
        return _bench_input(args)

    modes = [m for mode in args.mode for m in (["train", "infer"] if mode == "both" else [mode])]
    rows = bench.run(args.models, modes, batch=args.batch_size, size=args.image_size or 128,
                     dtype=args.dtype, threads=args.threads, repeats=args.repeats, steps=args.steps,
                     compare=None if args.compare == "none" else args.compare,
                     torch_format=args.torch_format, out=args.out, cache_dir=args.cache_dir,
                     lowering=args.lowering, memory=args.memory, remat=args.remat)
    print(bench.markdown(rows), end="")
    return 0


def _bench_input(args) -> int:
    from jaxzoo import bench_input

    rows = bench_input.run(args.input or None, size=args.image_size or 224, batch=args.batch_size,
                           threads=args.threads, repeats=args.repeats,
                           compare=None if args.compare == "none" else args.compare)
    table = bench_input.markdown(rows)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    print(table, end="")
    return 0


def cmd_recipe(args) -> int:
    """The reference command beside the config fields of the preset, and the published
    accuracy; without WEIGHTS, the model's recipes (without MODEL, all of them)."""
    from jaxzoo.configs import recipes

    if not args.weights:
        names = sorted(k for k in recipes.RECIPES if args.model in (None, k[0]))
        if not names:
            raise ValueError(f"no training recipe for {args.model}; models with one: "
                             f"{', '.join(sorted({m for m, _ in recipes.RECIPES}))}")
        for model, weights in names:
            acc1 = recipes.RECIPES[(model, weights)].acc1
            print(f"{model}:{weights}  acc@1 {acc1:.3f}  (python train.py "
                  f"--config={model}:{weights})")
        return 0
    matches = [k for k in recipes.RECIPES
               if k[0] == args.model and k[1].lower() == args.weights.lower()]
    if not matches:
        known = sorted(w for m, w in recipes.RECIPES if m == args.model)
        raise ValueError(f"no training recipe {args.model}:{args.weights}; "
                         + (f"{args.model} has {', '.join(known)}" if known else
                            "models with one: " + ", ".join(sorted({m for m, _ in
                                                                     recipes.RECIPES}))))
    (model, weights), = matches
    recipe = recipes.RECIPES[(model, weights)]
    print(f"{model} {weights}: published ImageNet-1K acc@1 {recipe.acc1:.3f}")
    print("\nthe reference command (torchvision references/classification):")
    print("  " + recipe.command.replace("\n", "\n  "))
    if recipe.note:
        print(f"  note: {recipe.note}")
    print(f"\nthe preset: python train.py --config={model}:{weights}")
    width = max(len(k) for k in recipe.fields)
    print(f"  {'config field':<{width}}  {'value':<14}  reference flag")
    for field, value in recipe.fields.items():
        print(f"  {field:<{width}}  {value!s:<14}  {recipes.REFERENCE_FLAGS.get(field, '')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jaxzoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="models with parameter counts and torchvision counterparts")
    p.add_argument("patterns", nargs="*", metavar="PATTERN",
                   help="only the models whose name starts with PATTERN ('resnet') or matches it "
                        "as a shell pattern ('resnet*50', 'efficientnet_b?')")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("weights", help="torchvision's pretrained weights: accuracy, size, cached")
    p.add_argument("model", nargs="?", default=None, help="only this model's weights")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("convert", help="torchvision .pth -> jaxzoo weights directory (orbax)")
    p.add_argument("model", help="the jaxzoo model the weights belong to, e.g. resnet50")
    p.add_argument("weights", help="a torchvision state dict (.pth or .safetensors)")
    p.add_argument("--out", required=True, help="directory to create")
    p.add_argument("--num-classes", type=int, default=None,
                   help="re-initialize the classifier for this many classes")
    p.add_argument("--non-strict", action="store_true",
                   help="load the keys that match and initialize the rest")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("check", help="logits parity against torchvision")
    p.add_argument("model", help="the model to check, e.g. resnet50")
    weights = p.add_mutually_exclusive_group()  # both at once: a usage error (exit 2)
    weights.add_argument("--weights", default=None,
                         help="a torchvision state dict; default: random")
    weights.add_argument("--pretrained", nargs="?", const="DEFAULT", default=None,
                         metavar="WEIGHTS",
                         help="torchvision's pretrained weights by name (DEFAULT, IMAGENET1K_V1, "
                              "...), from torch's cache or downloaded; compared as torchvision "
                              "builds them")
    p.add_argument("--image-size", "--size", type=int, default=None,
                   help="input side in pixels (default: the model's smallest convenient size)")
    p.add_argument("--batch-size", "--batch", type=int, default=4,
                   help="inputs per batch (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--train-steps", type=int, default=0, metavar="N",
                   help="training parity instead: N steps of the train step train.py runs beside "
                        "the same training in PyTorch (--image-size default 64)")
    p.add_argument("--config", default=None, metavar="NAME",
                   help="with --train-steps: the training config, as train.py's --config "
                        "(NAME[:PRESET] or a path; default: the model's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --train-steps: override a config field (repeatable), e.g. "
                        "--set weight_decay=0.05 --set trainable=head")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="with --train-steps: the epoch length the schedule counts warmup_epochs "
                        "and num_epochs in (default N)")
    p.add_argument("--num-classes", type=int, default=10,
                   help="with --train-steps: classifier width")
    p.add_argument("--reference", choices=["auto", "float64", "none"], default="auto",
                   help="with --train-steps: also train torch in float64 to measure float32's "
                        "own error (auto: when the fixed tolerances are not met)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("predict", help="classify images with a trained or converted model")
    p.add_argument("images", nargs="*", metavar="IMAGE_OR_FOLDER",
                   help="image files, or folders (walked for images)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a training workdir: its best checkpoint")
    source.add_argument("--weights", help="a torchvision .pth/.safetensors (with --model) or a "
                        "directory from `python -m jaxzoo convert`")
    source.add_argument("--pretrained", nargs="?", const="DEFAULT", default=None,
                        metavar="WEIGHTS", help="torchvision's pretrained weights of --model by "
                        "name (DEFAULT, IMAGENET1K_V1, ...), with their own eval transform")
    p.add_argument("--model", help="the model the --weights file belongs to, e.g. resnet50")
    p.add_argument("--image-size", "--size", type=int, default=None,
                   help="input side for --weights (default: the model's, e.g. 224)")
    p.add_argument("--top-k", type=int, default=5, help="classes printed per image (default 5)")
    p.add_argument("--batch-size", "--batch", type=int, default=32,
                   help="images per forward pass (default 32)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a "
                       "training workdir's best checkpoint")
    p.add_argument("--workdir", default=None,
                   help="a training workdir (with --pretrained: where to write the results)")
    p.add_argument("--pretrained", nargs="?", const="DEFAULT", default=None, metavar="WEIGHTS",
                   help="evaluate torchvision's pretrained weights of --model instead "
                        "(DEFAULT, IMAGENET1K_V1, ...) on --dataset")
    p.add_argument("--model", default=None, help="the model of --pretrained, e.g. resnet50")
    p.add_argument("--dataset", default=None,
                   help="a dataset spec as in config.dataset (default: the one trained on)")
    p.add_argument("--split", choices=["val", "train"], default="val",
                   help="the split to evaluate (default val)")
    p.add_argument("--data-dir", default=None, help="TFDS data dir (default: the config's)")
    p.add_argument("--batch-size", "--batch", type=int, default=None,
                   help="images per batch (default: the config's eval batch)")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="a model as a torchvision state dict (.pth), or for "
                       "serving: StableHLO, a TF SavedModel or ONNX (uint8 images in, logits out)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a training workdir: its best checkpoint")
    source.add_argument("--weights", help="a directory from `python -m jaxzoo convert`, or a "
                        "torchvision .pth/.safetensors (with --model)")
    source.add_argument("--pretrained", metavar="NAME[:WEIGHTS]",
                        help="torchvision's pretrained weights by name, e.g. resnet50 or "
                             "resnet50:IMAGENET1K_V2 (from torch's cache, else downloaded)")
    p.add_argument("--model", help="the model the --weights file belongs to, e.g. resnet50")
    p.add_argument("--format", default="torch",
                   choices=["torch", "stablehlo", "savedmodel", "onnx"],
                   help="torch: the torchvision counterpart's state dict; stablehlo: jax.export; "
                        "savedmodel: jax2tf; onnx: torch.onnx from the torchvision counterpart")
    p.add_argument("--out", required=True,
                   help="the file (a directory for savedmodel) to write; the class names go "
                        "beside it as NAME.class_names.json")
    p.add_argument("--platforms", default=None, metavar="LIST",
                   help="stablehlo and savedmodel: the platforms to lower for, comma-separated "
                        "from cpu, cuda, rocm, tpu (default: this host's)")
    p.add_argument("--image-size", "--size", type=int, default=None,
                   help="--weights/--pretrained: the input side (default: the weights' own)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench",
                       help="images/s of jaxzoo beside torchvision, same threads and batch")
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "resnext50_32x4d"],
                   help="the models to time (default resnet18 resnet50 resnext50_32x4d)")
    p.add_argument("--mode", nargs="+", choices=["train", "plain", "infer", "both"],
                   default=["train"],
                   help="one or more of: train (the trainer's step), plain (a user's own jitted "
                        "step on create_model(name)), infer (the predictor's forward), both "
                        "(train and infer)")
    p.add_argument("--batch-size", "--batch", type=int, default=16,
                   help="images per step (default 16)")
    p.add_argument("--image-size", "--size", type=int, default=None,
                   help="input side in pixels (default 128; 224 with --input)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="compute dtype (torch: autocast for bfloat16)")
    p.add_argument("--compare", choices=["torch", "none"], default="torch",
                   help="time torchvision's model beside jaxzoo's (default) or not")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both frameworks")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median reported)")
    p.add_argument("--steps", type=int, default=3, help="timed calls per repeat")
    p.add_argument("--torch-format", choices=["channels_last", "contiguous"],
                   default="channels_last", help="torch's memory format (default channels_last, "
                                                 "its faster one on CPUs)")
    p.add_argument("--out", default=None, help="markdown table path (CSV beside it)")
    p.add_argument("--cache-dir", default=None, help="JAX persistent compilation cache")
    p.add_argument("--remat", choices=["none", "blocks", "blocks_full"], default="none",
                   help="jaxzoo's train step with its blocks rematerialized (config.remat)")
    p.add_argument("--memory", action="store_true",
                   help="also measure each framework's peak memory in a process of its own")
    p.add_argument("--lowering", choices=["auto", "xla", "cpu"], default="auto",
                   help="convs and pools: XLA's own ops, or XLA:CPU's faster formulations "
                        "(auto: cpu on CPUs)")
    p.add_argument("--input", nargs="?", const="", default=None, metavar="FOLDER",
                   help="measure the input pipelines instead, on FOLDER/{train,val}/CLASS/*.jpg "
                        "(generated when omitted) beside torchvision's DataLoader")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("recipe", help="torchvision's training recipe for a model's weights: the "
                                      "reference command beside the preset's config fields")
    p.add_argument("model", nargs="?", default=None, help="e.g. resnet50 (none: every recipe)")
    p.add_argument("weights", nargs="?", default=None,
                   help="e.g. IMAGENET1K_V2 (none: the model's recipes)")
    p.set_defaults(func=cmd_recipe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError, ImportError) as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 1  # a user error, as train.py's (argparse's own usage errors exit 2)


if __name__ == "__main__":
    from jaxzoo.host_memory import keep_freed_memory

    keep_freed_memory()  # before JAX starts its threads
    sys.exit(main())
