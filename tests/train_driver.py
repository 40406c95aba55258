"""One training run of TinyNet on QuadrantData through train.py's own ``run`` (exit codes,
messages) and ``initialize_distributed`` (the JAX_* environment), for the fault tests, which
start, kill and restart it:

    python tests/train_driver.py WORKDIR [--epochs 3] [--every 5] [--delay 0.1] [--hang-in-commit 5]

Before each training step it prints ``batch STEP epoch EPOCH: INDICES`` (the global step about to
run and the examples this process feeds it). ``--delay`` sleeps that long per batch, so that a
kill lands mid-epoch; ``--hang-in-commit`` prints ``committing`` and sleeps when a checkpoint is
written but not yet committed (renamed into place), so that a kill lands in a save. The JAX
compilation cache in ``--cache`` makes restarts cheap, and so does leaving out curves.png
(matplotlib takes seconds to import and draw; ``--curves`` draws it).
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import train as train_py  # noqa: E402
from train_helpers import QuadrantData, TinyNet, tiny_config  # noqa: E402


class LoggedData(QuadrantData):
    def __init__(self, delay: float, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def train_batches(self, epoch, start_step=0):
        for i, batch in enumerate(super().train_batches(epoch, start_step), start_step):
            step = (epoch - 1) * self.steps_per_epoch + i + 1
            indices = " ".join(map(str, self.train_indices(epoch, i)))
            print(f"batch {step} epoch {epoch}: {indices}", flush=True)
            time.sleep(self.delay)
            yield batch


# --reference-options: every option of jaxzoo.train.optim, mixing and ema that keeps state or
# draws random numbers (the EMA averages every 2 steps, after a warmup epoch of copies).
REFERENCE_OPTIONS = {"optimizer": "sgd_nesterov", "learning_rate": 0.1, "weight_decay": 1e-4,
                     "norm_weight_decay": 0.0, "lr_schedule": "step", "lr_step_size": 1,
                     "lr_gamma": 0.5, "warmup_epochs": 1.0, "warmup_decay": 0.1,
                     "label_smoothing": 0.1, "mixup_alpha": 0.2, "cutmix_alpha": 1.0,
                     "model_ema": True, "model_ema_steps": 2, "model_ema_decay": 0.99}


def hang_before_commit(seconds: float) -> None:
    from orbax.checkpoint._src.path import atomicity

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def slow_finalize(self):
        print(f"committing {self.get_final()}", flush=True)
        time.sleep(seconds)
        await finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = slow_finalize


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--every", type=int, default=5, help="config.checkpoint_every_steps")
    parser.add_argument("--keep", type=int, default=10, help="config.checkpoints_to_keep")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--hang-in-commit", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--cache", default="")
    parser.add_argument("--curves", action="store_true")
    parser.add_argument("--reference-options", action="store_true",
                        help="torchvision's reference-script options: SGD-Nesterov, norm weight "
                             "decay 0, a step schedule, label smoothing, MixUp/CutMix, the EMA")
    args = parser.parse_args()

    train_py.initialize_distributed()
    import jax

    if args.cache:
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    if args.hang_in_commit:
        hang_before_commit(args.hang_in_commit)
    from jaxzoo.train import report
    from jaxzoo.train.step import AXIS

    if not args.curves:
        report.plot_curves = lambda workdir, records: None

    config = tiny_config(num_epochs=args.epochs, checkpoint_every_steps=args.every,
                         checkpoints_to_keep=args.keep,
                         **(REFERENCE_OPTIONS if args.reference_options else {}))
    data = LoggedData(args.delay, process_index=jax.process_index(),
                      process_count=jax.process_count())
    return train_py.run(config, args.workdir, command="train_driver.py", data=data,
                        model=TinyNet(bn_axis_name=AXIS, dropout=args.dropout))


if __name__ == "__main__":
    sys.exit(main())
