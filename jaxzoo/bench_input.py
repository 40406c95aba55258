"""Input-pipeline throughput: jaxzoo's tf.data pipeline beside torchvision's DataLoader.

``python -m jaxzoo bench --input [FOLDER]`` reads the same JPEG files both ways, with the same
number of CPUs: jaxzoo's ``folder:`` dataset with ``image_dtype="uint8"`` (decode, of a JPEG
only RandomResizedCrop's window, + flip, or resize + centre crop; uint8 batches, which the train
and eval steps normalize on the device) and ``torchvision.datasets.ImageFolder`` with the
matching transforms (normalized float32) in a ``DataLoader`` with one worker process per CPU.
Each repeat reads one epoch with each, so load from other processes hits both; the table reports
the median images/s, the same per core (divided by the CPUs given), images per CPU-second (the
CPU time the pipeline used, which load from other processes changes little) and the ratios
jaxzoo/torch.

``python -m jaxzoo.bench_input [FOLDER] --reference`` adds jaxzoo's pipeline as it was before,
"train (before)" and "eval (before)" (float32 batches normalized on the host, whole JPEGs
decoded for RandomResizedCrop), to the same repeats.

FOLDER holds ``train/CLASS/*.jpg`` and ``val/CLASS/*.jpg``; without it a folder of photo-sized
JPEGs is generated in a temporary directory.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from jaxzoo import imagenet

# The reference rows' suffix: jaxzoo's pipeline before uint8 batches and JPEG crop decoding.
REFERENCE = " (before)"


@dataclasses.dataclass
class InputRow:
    pipeline: str   # "train" (augmenting) or "eval"; REFERENCE appended for the pipeline before
    images: int     # per epoch
    size: int
    batch: int
    threads: int
    jaxzoo_img_s: float
    torch_img_s: float | None
    jaxzoo_img_cpu_s: float | None = None   # images per CPU-second of the process
    torch_img_cpu_s: float | None = None    # of the DataLoader's workers and the main process
    epochs_img_s: list[float] = dataclasses.field(default_factory=list)  # jaxzoo's, every repeat

    @property
    def ratio(self) -> float | None:
        return self.jaxzoo_img_s / self.torch_img_s if self.torch_img_s else None

    @property
    def cpu_ratio(self) -> float | None:
        if self.jaxzoo_img_cpu_s and self.torch_img_cpu_s:
            return self.jaxzoo_img_cpu_s / self.torch_img_cpu_s
        return None

    def cells(self) -> list[str]:
        fmt = lambda v, d: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        return [self.pipeline, str(self.images), str(self.size), str(self.batch), str(self.threads),
                fmt(self.jaxzoo_img_s, 1), fmt(self.jaxzoo_img_s / self.threads, 1),
                fmt(self.torch_img_s, 1), fmt(self.ratio, 3), fmt(self.jaxzoo_img_cpu_s, 1),
                fmt(self.torch_img_cpu_s, 1), fmt(self.cpu_ratio, 3)]


HEADER = ["pipeline", "images", "size", "batch", "threads", "jaxzoo img/s", "jaxzoo img/s/core",
          "torch img/s", "ratio", "jaxzoo img/CPU-s", "torch img/CPU-s", "ratio per CPU-s"]


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # scikit-image's colour photographs


def make_folder(root: str, per_class: int = 64, classes: int = 2, width: int = 500,
                height: int = 375, seed: int = 0, content: str = "smooth") -> str:
    """``root/{train,val}/class_K/*.jpg`` of photo size: ``content="smooth"``, random colour
    fields (JPEG quality 90, about 28 KB a file at 500x375), or ``"photos"``, random crops of
    scikit-image's photographs (quality 95, about 60 KB: nearer a camera's JPEG, which costs
    more to decode; needs scikit-image)."""
    from PIL import Image

    if content not in ("smooth", "photos"):
        raise ValueError(f'content must be "smooth" or "photos", got {content!r}')
    if content == "photos":
        from skimage import data

        photos = [getattr(data, name)() for name in PHOTOS]
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for k in range(classes):
            directory = os.path.join(root, split, f"class_{k}")
            os.makedirs(directory, exist_ok=True)
            for i in range(per_class):
                if content == "photos":
                    photo = photos[rng.integers(len(photos))]
                    side = rng.uniform(0.5, 1.0)  # a crop of the photo's shape, then resized
                    h, w = int(photo.shape[0] * side), int(photo.shape[1] * side)
                    y = rng.integers(photo.shape[0] - h + 1)
                    x = rng.integers(photo.shape[1] - w + 1)
                    image = Image.fromarray(photo[y:y + h, x:x + w]).resize((width, height),
                                                                           Image.BICUBIC)
                    if rng.integers(2):
                        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                    quality = 95
                else:
                    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
                    image = Image.fromarray(small).resize((width, height), Image.BICUBIC)
                    quality = 90
                image.save(os.path.join(directory, f"{i:04d}.jpg"), quality=quality)
    return root


def _cpu_seconds() -> tuple[float, float]:
    """CPU time (user + system) of this process and of its finished child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _jaxzoo_epoch(data, pipeline: str) -> int:
    batches = data.train_batches(1) if pipeline == "train" else data.val_batches()
    return sum(int(b["mask"].sum()) if "mask" in b else len(b["label"]) for b in batches)


def _torch_loaders(root: str, size: int, batch: int, threads: int):
    import torch
    from torchvision import datasets, transforms

    normalize = transforms.Normalize(imagenet.MEAN, imagenet.STD)
    train = transforms.Compose([transforms.RandomResizedCrop(size),
                                transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
    evaluate = transforms.Compose([transforms.Resize(imagenet.eval_resize_size(size)),
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


def _measure(fn, *args) -> tuple[float, float]:
    """(images/s, images per CPU-second) of one ``fn(*args)``, which returns its image count.
    The CPU time counts this process and the child processes that ended meanwhile (a
    DataLoader's workers end with its epoch)."""
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    count = fn(*args)
    elapsed, cpu1 = time.perf_counter() - t0, _cpu_seconds()
    cpu = (cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1])
    return count / elapsed, (count / cpu if cpu > 0 else float("nan"))


def run(folder: str | None, *, size: int, batch: int, threads: int, repeats: int,
        compare: str | None, log: Any = print, reference: bool = False) -> list[InputRow]:
    """The train and eval rows (``reference``: each followed by the pipeline before, float32
    batches normalized on the host with whole JPEGs decoded, measured in the same repeats)."""
    from jaxzoo.bench import limit_threads

    limit_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        if not folder:
            folder = make_folder(tmp)
            log(f"generated {folder}: 128 train and 128 val JPEGs of 500x375")
        from jaxzoo.data import get_datasets

        def load(image_dtype):
            return get_datasets(f"folder:{folder}", image_size=size, global_batch_size=batch,
                                process_index=0, process_count=1, image_dtype=image_dtype)

        variants = [("", load("uint8"))]
        if reference:
            before = load("float32")
            before.crop_decoding = False
            variants.append((REFERENCE, before))
        loaders = _torch_loaders(folder, size, batch, threads) if compare == "torch" else {}
        rows = []
        for pipeline in ("train", "eval"):
            # Warm-up epoch (tf.data start-up, worker start, file cache), which also checks that
            # both read the same number of images.
            counts = {_jaxzoo_epoch(data, pipeline) for _, data in variants}
            if loaders:
                counts.add(_torch_epoch(loaders[pipeline]))
            if len(counts) != 1:
                raise RuntimeError(f"the {pipeline} pipelines read different numbers of images")
            images = counts.pop()
            ours = {name: [] for name, _ in variants}
            theirs = []
            for _ in range(repeats):
                for name, data in variants:
                    ours[name].append(_measure(_jaxzoo_epoch, data, pipeline))
                if loaders:
                    theirs.append(_measure(_torch_epoch, loaders[pipeline]))
            for name, _ in variants:
                rates = [rate for rate, _ in ours[name]]
                row = InputRow(
                    pipeline + name, images, size, batch, threads, statistics.median(rates),
                    statistics.median(r for r, _ in theirs) if theirs else None,
                    jaxzoo_img_cpu_s=statistics.median(c for _, c in ours[name]),
                    torch_img_cpu_s=statistics.median(c for _, c in theirs) if theirs else None,
                    epochs_img_s=rates)
                log(" ".join(f"{h}={c}" for h, c in zip(HEADER, row.cells()))
                    + f" epochs_img_s={' '.join(f'{r:.0f}' for r in rates)}")
                rows.append(row)
    return rows


def markdown(rows) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from jaxzoo.host_memory import keep_freed_memory

    keep_freed_memory()  # as ``python -m jaxzoo`` runs the benchmark
    parser = argparse.ArgumentParser(description="input pipelines: jaxzoo beside torchvision")
    parser.add_argument("folder", nargs="?", default="",
                        help="FOLDER/{train,val}/CLASS/*.jpg (generated when omitted)")
    parser.add_argument("--image-size", "--size", type=int, default=224,
                        help="input side in pixels (default 224)")
    parser.add_argument("--batch-size", "--batch", type=int, default=16,
                        help="images per batch (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both pipelines")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median)")
    parser.add_argument("--compare", choices=["torch", "none"], default="torch",
                        help="time torchvision's DataLoader beside jaxzoo's pipeline or not")
    parser.add_argument("--reference", action="store_true",
                        help="also jaxzoo's pipeline before: float32 batches, whole JPEGs decoded")
    args = parser.parse_args(argv)
    rows = run(args.folder or None, size=args.image_size, batch=args.batch_size,
               threads=args.threads, repeats=args.repeats,
               compare=None if args.compare == "none" else args.compare,
               reference=args.reference)
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    from jaxzoo import environment

    environment.quiet_tensorflow()
    raise SystemExit(main())
