"""Evaluate the best checkpoint of a training workdir on a dataset split: top-1 and top-5
accuracy, per-class accuracy and the confusion matrix (a PNG and a JSON summary in the workdir).

    summary = evaluate("runs/resnet34")                      # the dataset it was trained on, val
    summary = evaluate("runs/resnet34", dataset="folder:test_photos", split="val")
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from jaxzoo.predict import Predictor


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def summarize(labels: np.ndarray, top_indices: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy figures from true labels (N,) and the predicted classes (N, k), best first."""
    labels, top_indices = np.asarray(labels), np.asarray(top_indices)
    matrix = confusion_matrix(labels, top_indices[:, 0], len(class_names))
    counts = matrix.sum(axis=1)
    per_class = [{"class": name, "count": int(n),
                  "accuracy": float(matrix[i, i] / n) if n else None}
                 for i, (name, n) in enumerate(zip(class_names, counts))]
    off_diagonal = [(int(matrix[t, p]), t, p) for t in range(len(class_names))
                    for p in range(len(class_names)) if t != p and matrix[t, p]]
    confused = [{"true": class_names[t], "predicted": class_names[p], "count": n}
                for n, t, p in sorted(off_diagonal, key=lambda x: (-x[0], x[1], x[2]))[:10]]
    count = len(labels)
    return {"count": count,
            "top1": float((top_indices[:, 0] == labels).mean()) if count else None,
            "top5": float((top_indices[:, :5] == labels[:, None]).any(1).mean()) if count else None,
            "per_class": per_class, "most_confused": confused, "class_names": list(class_names),
            "confusion_matrix": matrix.tolist()}


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: str, title: str = "") -> str:
    """The confusion matrix as a PNG: rows true, columns predicted, colour = share of the row."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n = len(class_names)
    side = min(4 + 0.45 * n, 40)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= 60:
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
    if n <= 25:
        for t in range(n):
            for p in range(n):
                if matrix[t, p]:
                    ax.text(p, t, str(matrix[t, p]), ha="center", va="center", fontsize=8,
                            color="white" if shares[t, p] > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _slug(dataset: str) -> str:
    """``folder:~/photos/test`` -> ``folder_test``, ``shapes/tiny`` -> ``shapes_tiny``."""
    if dataset.startswith("folder:"):
        dataset = "folder_" + os.path.basename(os.path.normpath(dataset.partition(":")[2]))
    return re.sub(r"[^A-Za-z0-9]+", "_", dataset).strip("_")


def evaluate(workdir: str | None, dataset: str | None = None, split: str = "val",
             data_dir: str | None = None, batch_size: int | None = None,
             step: int | None = None, predictor: Predictor | None = None) -> dict:
    """Evaluate the best checkpoint of ``workdir`` (or ``step``), in float32, on ``split``
    ("val" or "train", without augmentation) of ``dataset`` (default: the one it was trained
    on). Writes ``evaluation_<split>.json`` and ``confusion_<split>.png`` into the workdir (with
    the dataset's name in them when it is not the training dataset); returns the summary.

    ``predictor`` (e.g. ``Predictor.from_pretrained("resnet50")``) evaluates it instead of a
    workdir's checkpoint, on ``dataset``, writing into ``workdir`` (default: the current folder).
    A 1000-class dataset whose classes are ImageNet's WordNet ids in sorted order (TFDS
    ``imagenet2012``, or ImageNet's val images in ``folder:`` class folders) matches ImageNet's
    class names by position."""
    from jaxzoo.data import get_datasets

    if predictor is None:
        predictor = Predictor.from_workdir(workdir, step=step)
        run = predictor.run
        config, trained_on, out = run.config, run.config["dataset"], run.workdir
    else:
        run, config, trained_on, out = None, {}, None, workdir or "."
        if not dataset:
            raise ValueError("say which dataset to evaluate these weights on: --dataset NAME "
                             "(e.g. imagenet2012, or folder:PATH with one folder per class)")
        os.makedirs(out, exist_ok=True)
    if not os.access(out, os.W_OK):  # before the images are read, not after
        raise ValueError(f"cannot write the evaluation (evaluation_*.json, confusion_*.png) into "
                         f"{out}: it is not writable. Make it writable, or evaluate a copy of "
                         f"the workdir")
    dataset = dataset or trained_on
    batch_size = batch_size or config.get("eval_batch_size") or config.get("batch_size") or 32
    data = get_datasets(dataset, image_size=predictor.image_size, global_batch_size=1,
                        eval_batch_size=batch_size, seed=config.get("seed", 0),
                        data_dir=(config.get("data_dir") or None) if data_dir is None else data_dir,
                        val_fraction=config.get("val_fraction", 0.1), process_index=0,
                        process_count=1, augment=False, channels=predictor.channels,
                        # The predictor's own transform (pretrained weights have theirs).
                        eval_resize_size=predictor.resize_size,
                        interpolation=predictor.interpolation)
    wordnet_ids = list(data.class_names) == sorted(data.class_names) and all(
        re.fullmatch(r"n\d{8}", str(c)) for c in data.class_names)
    if list(data.class_names) != predictor.class_names and not (
            run is None and wordnet_ids and len(data.class_names) == len(predictor.class_names)):
        trained = f"the model in {run.workdir} was trained on" if run else "the weights predict"
        raise ValueError(f"{dataset} has the classes {list(data.class_names)[:20]}, but "
                         f"{trained} {predictor.class_names[:20]}; evaluate it on a dataset "
                         f"with the same classes")

    labels, top = [], []
    k = min(5, len(predictor.class_names))
    for batch in data.eval_batches(split):
        probabilities = predictor.probabilities(batch["image"])[batch["mask"]]
        top.append(np.argsort(-probabilities, axis=1, kind="stable")[:, :k])
        labels.append(batch["label"][batch["mask"]])
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    top = np.concatenate(top) if top else np.zeros((0, k), np.int64)

    weights = getattr(predictor, "weights", None)
    summary = {"workdir": run.workdir if run else os.path.abspath(out),
               "model": predictor.model_name, "step": run.step if run else None,
               "epoch": run.progress.get("epoch") if run else None,
               **({"weights": f"{weights.enum}.{weights.name}"} if weights else {}),
               "dataset": dataset, "split": split,
               "image_size": predictor.image_size,
               "transform": data.eval_transform,
               **summarize(labels, top, predictor.class_names)}
    suffix = split if dataset == trained_on else f"{_slug(dataset)}_{split}"
    if run is None:
        suffix = f"{predictor.model_name}_{suffix}"
    what = (f"{run.model} step {run.step}" if run else
            f"{predictor.model_name} {summary.get('weights', '')}")
    summary["confusion_png"] = plot_confusion(
        np.array(summary["confusion_matrix"]), predictor.class_names,
        os.path.join(out, f"confusion_{suffix}.png"),
        title=f"{what}: {dataset} {split}, top-1 {summary['top1']:.3f}"
        if summary["count"] else f"{what}: {dataset} {split} (no images)")
    summary["json"] = os.path.join(out, f"evaluation_{suffix}.json")
    with open(summary["json"], "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def report(summary: dict) -> str:
    """The summary for people: accuracies, per-class accuracy, the most confused pairs."""
    where = summary.get("weights") or f"step {summary['step']}"
    lines = [f"{summary['model']} ({where}) on {summary['dataset']} "
             f"{summary['split']}: {summary['count']} images"]
    if not summary["count"]:
        return "\n".join(lines + ["no images to evaluate"])
    lines.append(f"top-1 accuracy {summary['top1']:.4f}   top-5 accuracy {summary['top5']:.4f}"
                 f"   (images: {summary['transform']})")
    rows = [c for c in summary["per_class"] if c["count"]]
    if len(rows) > 30:
        rows = sorted(rows, key=lambda c: c["accuracy"])[:10]
        lines.append(f"the 10 classes with the lowest accuracy (all in {summary['json']}):")
    width = max(len(c["class"]) for c in rows)
    lines.append(f"{'class':<{width}}  accuracy  images")
    for c in rows:
        lines.append(f"{c['class']:<{width}}  {c['accuracy']:>8.4f}  {c['count']:>6}")
    if summary["most_confused"]:
        lines.append("most confused (true -> predicted): " + ", ".join(
            f"{c['true']} -> {c['predicted']} {c['count']}" for c in summary["most_confused"][:5]))
    lines.append(f"wrote {summary['confusion_png']} and {summary['json']}")
    return "\n".join(lines)
