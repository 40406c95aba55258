"""Prepare a dataset and measure how fast its input pipeline runs on this machine.

    python -m jaxzoo.data shapes --image-size 64 --batch-size 32
    python -m jaxzoo.data folder:~/flower_data --image-size 224 --data-dir /data/tfds
"""
import argparse
import time

from jaxzoo.data import get_datasets


def images_per_second(batches, limit: int) -> tuple[float, int]:
    """Images/s over up to ``limit`` batches, after a first batch that fills the pipeline."""
    batches = iter(batches)
    first = next(batches)
    start, images = time.perf_counter(), 0
    for step, batch in enumerate(batches, start=1):
        images += len(batch["label"])
        if step >= limit:
            break
    elapsed = time.perf_counter() - start
    return (images / elapsed if images else 0.0), images + len(first["label"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="shapes")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batches", type=int, default=50, help="batches timed for each split")
    args = parser.parse_args()

    start = time.perf_counter()
    data = get_datasets(args.dataset, image_size=args.image_size,
                        global_batch_size=args.batch_size, data_dir=args.data_dir,
                        process_index=0, process_count=1)
    print(f"{data} ready in {time.perf_counter() - start:.1f} s")
    print(f"classes: {data.class_names}")
    if data.skipped:
        print(f"skipped files: {data.skipped}")
    train, n_train = images_per_second(data.train_batches(0), args.batches)
    print(f"train preprocessing (decode, random-resized-crop, flip, normalize): "
          f"{train:.0f} images/s ({n_train} images)")
    val, n_val = images_per_second(data.val_batches(), args.batches)
    print(f"eval preprocessing (decode, resize, center crop, normalize): "
          f"{val:.0f} images/s ({n_val} images)")


if __name__ == "__main__":
    main()
