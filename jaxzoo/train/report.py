"""What training reports in the workdir and prints for people: metrics.jsonl, curves.png,
TensorBoard event files, and the line printed after each epoch (the run's own files, config.json,
class_names.json and identity.json, are ``jaxzoo.train.workdir``'s); and
the throughput figures in them (images/s, step time, FLOP/s, model-FLOPs utilization)."""
from __future__ import annotations

import json
import os

METRICS_JSONL = "metrics.jsonl"  # one JSON record per epoch
CURVES_PNG = "curves.png"


def epoch_line(record: dict, nonfinite_steps: list[int]) -> str:
    """``[epoch 3] train_loss: 0.412  val_accuracy: 0.871  best: 0.871  177.3 images/s ...``."""
    skipped = f"  skipped non-finite updates at steps {nonfinite_steps}" if nonfinite_steps else ""
    speed = ""
    if record.get("images_per_s"):
        speed = (f"  {record['images_per_s']:.1f} images/s  "
                 f"{record['step_time_s'] * 1e3:.0f} ms/step")
        if record.get("flops_per_s"):
            speed += f"  {record['flops_per_s'] / 1e12:.3g} TFLOP/s"
        if record.get("mfu") is not None:
            speed += f"  MFU {record['mfu']:.1%}"
    return (f"[epoch {record['epoch']}] train_loss: {record['train_loss']:.3f}  "
            f"val_accuracy: {record['val_accuracy']:.3f}  "
            f"best: {record['best_val_accuracy']:.3f}{speed}{skipped}")


# The fields of a record that depend on the machine and its load, not on the training.
TIMING_FIELDS = ("images_per_s", "step_time_s", "flops_per_s", "mfu")

# Dense bfloat16 peak FLOP/s per device, from the vendors' data sheets, by a piece of
# ``jax.Device.device_kind`` (the longest match wins).
PEAK_BF16_FLOPS = {
    "A100": 312e12, "H100": 989e12, "H100 PCIe": 756e12, "H200": 989e12, "B200": 2250e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


def peak_flops(device_kind: str) -> float | None:
    """The device's dense bfloat16 peak FLOP/s, or None for devices not in the table (CPUs)."""
    known = [kind for kind in PEAK_BF16_FLOPS if kind.lower() in device_kind.lower()]
    return PEAK_BF16_FLOPS[max(known, key=len)] if known else None


def step_flops(step, *args) -> float | None:
    """The FLOPs of one call of the jitted ``step`` on one device, from XLA's cost analysis of
    its lowered program (nothing is compiled); None where the backend does not count them."""
    try:
        flops = step.lower(*args).cost_analysis().get("flops")
    except Exception:  # noqa: BLE001  (a backend without cost analysis)
        return None
    return float(flops) if flops else None


def throughput(images: int, steps: int, seconds: float, flops_per_step: float | None,
               devices) -> dict:
    """images/s, seconds per step, FLOP/s and the model-FLOPs utilization against the devices'
    bfloat16 peak (None where the peak is unknown)."""
    devices = list(devices)
    record = {"images_per_s": images / seconds, "step_time_s": seconds / steps,
              "flops_per_s": None, "mfu": None}
    if flops_per_step:
        record["flops_per_s"] = flops_per_step * steps / seconds
        peaks = [peak_flops(d.device_kind) for d in devices]
        if all(peaks):
            record["mfu"] = record["flops_per_s"] / sum(peaks)
    return record


class TensorBoard:
    """Scalars for ``tensorboard --logdir WORKDIR``: event files in WORKDIR/tensorboard, written
    with TensorFlow's summary ops (TensorFlow reads the data already; ``tf.summary.scalar``
    itself would need the tensorboard package, so the op is given the scalars plugin's metadata,
    which is what it adds) and flushed after each write, so they can be read while training
    runs."""

    def __init__(self, workdir: str):
        from jaxzoo.data._tf import tf

        self._tf = tf
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
        self._metadata = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
        ).SerializeToString()

    def write(self, step: int, scalars: dict) -> None:
        tf = self._tf
        with self.writer.as_default():
            for name, value in scalars.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    tf.summary.write(name, tf.constant(float(value)), step=step,
                                     metadata=self._metadata)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, METRICS_JSONL)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_metrics(workdir: str, records: list[dict]) -> None:
    path = os.path.join(workdir, METRICS_JSONL)
    with open(path + ".tmp", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    os.replace(path + ".tmp", path)


def plot_curves(workdir: str, records: list[dict]) -> str:
    """Loss (train and validation) and validation accuracy per epoch, as ``curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in records], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["train_accuracy"] for r in records], "o-", label="train")
    ax_acc.plot(epochs, [r["val_accuracy"] for r in records], "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    ax_acc.legend()
    fig.tight_layout()
    path = os.path.join(workdir, CURVES_PNG)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
