"""The training loop and ``python train.py``: learning, resuming, divergence, the workdir, errors."""
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxzoo.train import TrainingDiverged, train_and_evaluate
from jaxzoo.train.loop import check_config
from jaxzoo.train.step import AXIS
from train_helpers import QuadrantData, TinyNet, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(workdir, **fields):
    config = tiny_config(**fields)
    return train_and_evaluate(config, str(workdir), data=QuadrantData(),
                              model=TinyNet(bn_axis_name=AXIS, dropout=0.1))


def _checkpoint_steps(workdir):
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def _restore_params(workdir, step):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    return ocp.StandardCheckpointer().restore(path)["params"]


def test_training_learns_and_resumes_where_it_stopped(tmp_path, capsys):
    records = _train(tmp_path / "a", num_epochs=3, checkpoints_to_keep=2)
    out = capsys.readouterr().out
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < 0.5 * records[0]["train_loss"]
    assert records[-1]["val_accuracy"] >= 0.8  # chance: 0.25
    assert "[epoch 3] train_loss: " in out and "  val_accuracy: " in out and "  best: " in out
    assert _checkpoint_steps(tmp_path / "a")[-1] == 3 * QuadrantData().steps_per_epoch

    # Interrupted after epoch 2: the same command continues from there to the same result.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    last = _checkpoint_steps(tmp_path / "b")[-1]
    shutil.rmtree(tmp_path / "b" / "checkpoints" / str(last))
    assert _checkpoint_steps(tmp_path / "b")[-1] == 2 * QuadrantData().steps_per_epoch
    resumed = _train(tmp_path / "b", num_epochs=3, checkpoints_to_keep=2)
    assert "resuming from" in capsys.readouterr().out
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert _checkpoint_steps(tmp_path / "b")[-1] == last
    expected, got = _restore_params(tmp_path / "a", last), _restore_params(tmp_path / "b", last)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), expected, got)
    with open(tmp_path / "b" / "metrics.jsonl") as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2, 3]


def test_the_next_batch_goes_to_the_devices_before_the_host_waits_for_a_step(tmp_path,
                                                                            monkeypatch):
    """The input's copy to the devices overlaps the step before it: dispatch is asynchronous and
    the host reads a step's metrics one step late, so batch N+1 is put (``shard_batch``, an
    asynchronous copy) before the host first waits for step N, while step N runs."""
    from jaxzoo.train import loop

    events, put = [], loop.shard_batch

    def logged_put(mesh, batch):
        if "mask" not in batch:  # a training batch (evaluation's have a mask)
            events.append(("put", 1 + sum(kind == "put" for kind, _ in events)))
        return put(mesh, batch)

    add = loop.EpochMetrics.add

    def logged_add(self, metrics, step, *args):
        events.append(("wait", step))  # float(metrics["loss"]) waits for the step
        return add(self, metrics, step, *args)

    monkeypatch.setattr(loop, "shard_batch", logged_put)
    monkeypatch.setattr(loop.EpochMetrics, "add", logged_add)
    _train(tmp_path, num_epochs=1)
    steps = QuadrantData().steps_per_epoch
    assert sorted(events) == sorted([("put", n) for n in range(1, steps + 1)]
                                    + [("wait", n) for n in range(1, steps + 1)])
    for n in range(1, steps):
        assert events.index(("put", n + 1)) < events.index(("wait", n)), events


def test_throughput_goes_to_metrics_the_epoch_line_tensorboard_and_a_profile(tmp_path, capsys):
    from jaxzoo.data._tf import tf
    from jaxzoo.train import report

    records = _train(tmp_path, num_epochs=1, tensorboard=True, profile_steps=2)
    out = capsys.readouterr().out
    (record,) = records
    with open(tmp_path / "metrics.jsonl") as f:
        assert json.loads(f.readline()) == record
    assert record["images_per_s"] > 0 and record["step_time_s"] > 0
    # 7 steps timed after the first (which compiles), 16 images each.
    assert record["images_per_s"] * record["step_time_s"] == pytest.approx(16)
    assert record["flops_per_step"] > 1e6  # XLA's count for TinyNet's forward and backward
    assert record["flops_per_s"] == pytest.approx(record["flops_per_step"]
                                                  / record["step_time_s"])
    assert record["mfu"] is None  # no known peak for CPUs
    assert record["learning_rate"] == pytest.approx(3e-2 * 0.5 * (1 + math.cos(
        math.pi * (7 - 2) / (8 - 2))), rel=1e-4)  # warmup 2 steps, cosine to step 8
    assert f"{record['images_per_s']:.1f} images/s" in out
    events = [f for f in os.listdir(tmp_path / "tensorboard") if "tfevents" in f]
    scalars = {}
    for event in tf.data.TFRecordDataset(str(tmp_path / "tensorboard" / events[0])):
        event = tf.compat.v1.Event.FromString(event.numpy())
        for value in event.summary.value:
            scalars[value.tag] = (event.step, float(tf.make_ndarray(value.tensor)))
    assert scalars["val_accuracy"] == (8, pytest.approx(record["val_accuracy"]))
    assert scalars["images_per_s"][1] == pytest.approx(record["images_per_s"], rel=1e-6)
    assert {"train_loss", "learning_rate", "step_time_s"} <= set(scalars)
    traces = [f for _, _, files in os.walk(tmp_path / "profile") for f in files]
    assert any(f.endswith(".xplane.pb") for f in traces), traces
    assert report.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert report.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert report.peak_flops("TPU v5 lite") == 197e12 and report.peak_flops("cpu") is None


def test_nan_loss_stops_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    good = _train(tmp_path, num_epochs=1)
    steps_before = _checkpoint_steps(tmp_path)
    with pytest.raises(TrainingDiverged, match=r"at step (\d+) \(epoch 2\)") as e:
        _train(tmp_path, num_epochs=2, learning_rate=1e30, warmup_epochs=0.0)
    assert "last good checkpoint (step 8)" in str(e.value)
    assert _checkpoint_steps(tmp_path) == steps_before == [8]
    with open(tmp_path / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert records == good
    assert all(math.isfinite(r["best_val_accuracy"]) for r in records)


def test_batch_must_divide_over_devices():
    config = tiny_config(batch_size=30)
    with pytest.raises(ValueError, match="not divisible by the 4 devices.*batch_size=28"):
        check_config(config, device_count=4, process_count=1)
    check_config(tiny_config(batch_size=32), device_count=4, process_count=1)


def _run_train_py(*args, timeout=420):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_train_py_on_two_devices_leaves_the_workdir(tmp_path):
    workdir = tmp_path / "run"
    out = _run_train_py("--config=inception10", f"--workdir={workdir}",
                        "--config.dataset=shapes/tiny", f"--config.data_dir={tmp_path / 'tfds'}",
                        "--config.image_size=8", "--config.batch_size=16",
                        "--config.eval_batch_size=16", "--config.num_epochs=1",
                        f"--config.compilation_cache_dir={tmp_path / 'xla'}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "with 2 cpu device(s)" in out.stdout
    with open(workdir / "config.json") as f:
        config = json.load(f)
    assert config["model"] == "inception10" and config["image_size"] == 8
    with open(workdir / "class_names.json") as f:
        assert sorted(json.load(f).values()) == sorted(
            ["circle", "square", "triangle", "star", "cross", "ring"])
    with open(workdir / "metrics.jsonl") as f:
        (record,) = [json.loads(line) for line in f]
    assert record["epoch"] == 1 and record["step"] == 240 // 16
    assert record["val_count"] == 90  # shapes/tiny: 90 validation images, 16 per batch
    assert 0 <= record["val_accuracy"] <= 1 and math.isfinite(record["train_loss"])
    assert f"[epoch 1] train_loss: {record['train_loss']:.3f}" in out.stdout
    with open(workdir / "curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(workdir / "checkpoints" / "15")
    assert os.listdir(tmp_path / "xla")  # the persistent compilation cache was used

    # The same command again: nothing left to train, nothing lost.
    again = _run_train_py("--config=inception10", f"--workdir={workdir}",
                          "--config.dataset=shapes/tiny", f"--config.data_dir={tmp_path / 'tfds'}",
                          "--config.image_size=8", "--config.batch_size=16",
                          "--config.num_epochs=1", "--config.compilation_cache_dir=off")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already trained" in again.stdout
    assert os.listdir(workdir / "checkpoints" / "15")


@pytest.mark.parametrize("args, message", [
    (["--config=resnet1"], "unknown config 'resnet1'. Available configs: .*resnet18_cifar"),
    (["--config=resnet18_cifar", "--config.batch_size=3"],
     "batch_size=3 is not divisible by the 2 devices"),
    (["--config=resnet18_cifar", "--config.dataset=folder:/no/such/dir"], "/no/such/dir"),
])
def test_train_py_user_errors(tmp_path, args, message):
    out = _run_train_py(*args, f"--workdir={tmp_path / 'run'}", timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert __import__("re").search(message, out.stderr), out.stderr[-2000:]


def test_folder_with_one_class_is_an_error(tmp_path):
    from PIL import Image

    os.makedirs(tmp_path / "photos" / "daisy")
    for i in range(4):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / "photos" / "daisy" / f"{i}.jpg")
    out = _run_train_py("--config=resnet18_cifar", f"--config.dataset=folder:{tmp_path / 'photos'}",
                        "--config.batch_size=2", f"--workdir={tmp_path / 'run'}", timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "class folder" in out.stderr, out.stderr[-2000:]
