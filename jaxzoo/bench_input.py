"""Input-pipeline throughput: jaxzoo's tf.data pipeline beside torchvision's DataLoader.

``python -m jaxzoo bench --input [FOLDER]`` reads the same JPEG files both ways, with the same
number of CPUs: jaxzoo's ``folder:`` dataset (decode, RandomResizedCrop + flip or resize + centre
crop, normalize, batch) and ``torchvision.datasets.ImageFolder`` with the matching transforms in a
``DataLoader`` with one worker process per CPU. Each repeat reads one epoch with each, so load from
other processes hits both; the table reports the median images/s and the ratio jaxzoo/torch.

FOLDER holds ``train/CLASS/*.jpg`` and ``val/CLASS/*.jpg``; without it a folder of photo-sized
JPEGs is generated in a temporary directory.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from jaxzoo import imagenet


@dataclasses.dataclass
class InputRow:
    pipeline: str   # "train" (augmenting) or "eval"
    images: int     # per epoch
    size: int
    batch: int
    threads: int
    jaxzoo_img_s: float
    torch_img_s: float | None

    @property
    def ratio(self) -> float | None:
        return self.jaxzoo_img_s / self.torch_img_s if self.torch_img_s else None

    def cells(self) -> list[str]:
        fmt = lambda v, d: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        return [self.pipeline, str(self.images), str(self.size), str(self.batch), str(self.threads),
                fmt(self.jaxzoo_img_s, 1), fmt(self.jaxzoo_img_s / self.threads, 1),
                fmt(self.torch_img_s, 1), fmt(self.ratio, 3)]


HEADER = ["pipeline", "images", "size", "batch", "threads", "jaxzoo img/s", "jaxzoo img/s/core",
          "torch img/s", "ratio"]


def make_folder(root: str, per_class: int = 64, classes: int = 2, width: int = 500,
                height: int = 375, seed: int = 0) -> str:
    """``root/{train,val}/class_K/*.jpg``: smooth random colour images of photo size (JPEG q90)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for k in range(classes):
            directory = os.path.join(root, split, f"class_{k}")
            os.makedirs(directory, exist_ok=True)
            for i in range(per_class):
                small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
                image = Image.fromarray(small).resize((width, height), Image.BICUBIC)
                image.save(os.path.join(directory, f"{i:04d}.jpg"), quality=90)
    return root


def _jaxzoo_epoch(data, pipeline: str) -> int:
    batches = data.train_batches(1) if pipeline == "train" else data.val_batches()
    return sum(int(b["mask"].sum()) if "mask" in b else len(b["label"]) for b in batches)


def _torch_loaders(root: str, size: int, batch: int, threads: int):
    import torch
    from torchvision import datasets, transforms

    normalize = transforms.Normalize(imagenet.MEAN, imagenet.STD)
    train = transforms.Compose([transforms.RandomResizedCrop(size),
                                transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
    evaluate = transforms.Compose([transforms.Resize(int(size / 0.875)),
                                   transforms.CenterCrop(size), transforms.ToTensor(), normalize])
    loaders = {}
    for pipeline, split, transform in (("train", "train", train), ("eval", "val", evaluate)):
        dataset = datasets.ImageFolder(os.path.join(root, split), transform=transform)
        loaders[pipeline] = torch.utils.data.DataLoader(
            dataset, batch_size=batch, shuffle=pipeline == "train", num_workers=threads,
            drop_last=pipeline == "train")
    return loaders


def _torch_epoch(loader) -> int:
    return sum(len(labels) for _, labels in loader)


def _rate(fn, *args) -> float:
    t0 = time.perf_counter()
    count = fn(*args)
    return count / (time.perf_counter() - t0)


def run(folder: str | None, *, size: int, batch: int, threads: int, repeats: int,
        compare: str | None, log: Any = print) -> list[InputRow]:
    from jaxzoo.bench import limit_threads

    limit_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        if not folder:
            folder = make_folder(tmp)
            log(f"generated {folder}: 128 train and 128 val JPEGs of 500x375")
        from jaxzoo.data import get_datasets

        data = get_datasets(f"folder:{folder}", image_size=size, global_batch_size=batch,
                            process_index=0, process_count=1)
        loaders = _torch_loaders(folder, size, batch, threads) if compare == "torch" else {}
        rows = []
        for pipeline in ("train", "eval"):
            # Warm-up epoch (tf.data start-up, worker start, file cache), which also checks that
            # both read the same number of images.
            images = _jaxzoo_epoch(data, pipeline)
            if loaders and _torch_epoch(loaders[pipeline]) != images:
                raise RuntimeError(f"the {pipeline} pipelines read different numbers of images")
            ours, theirs = [], []
            for _ in range(repeats):
                ours.append(_rate(_jaxzoo_epoch, data, pipeline))
                if loaders:
                    theirs.append(_rate(_torch_epoch, loaders[pipeline]))
            row = InputRow(pipeline, images, size, batch, threads, statistics.median(ours),
                           statistics.median(theirs) if theirs else None)
            log(" ".join(f"{h}={c}" for h, c in zip(HEADER, row.cells())))
            rows.append(row)
    return rows


def markdown(rows) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"
