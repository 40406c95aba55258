"""What training leaves in the workdir and prints for people: config.json, class_names.json,
metrics.jsonl, curves.png, and the line printed after each epoch."""
from __future__ import annotations

import json
import os


def write_run_files(workdir: str, config, class_names: list[str]) -> None:
    """The resolved config and the class names (index -> name), what prediction reads back."""
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2) + "\n")
    with open(os.path.join(workdir, "class_names.json"), "w") as f:
        json.dump({str(i): name for i, name in enumerate(class_names)}, f, indent=2)


def epoch_line(record: dict, nonfinite_steps: list[int]) -> str:
    """``[epoch 3] train_loss: 0.412  val_accuracy: 0.871  best: 0.871``."""
    skipped = f"  skipped non-finite updates at steps {nonfinite_steps}" if nonfinite_steps else ""
    return (f"[epoch {record['epoch']}] train_loss: {record['train_loss']:.3f}  "
            f"val_accuracy: {record['val_accuracy']:.3f}  "
            f"best: {record['best_val_accuracy']:.3f}{skipped}")


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_metrics(workdir: str, records: list[dict]) -> None:
    path = os.path.join(workdir, "metrics.jsonl")
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
    path = os.path.join(workdir, "curves.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
