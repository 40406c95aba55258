"""Faults: kill -9 and SIGTERM/SIGINT at random moments (also inside a checkpoint save), two
processes on jax.distributed, resuming on other device and process counts, the best checkpoint
across restarts, a NaN batch, bad image files, unknown or unavailable TFDS datasets.

The training runs are ``tests/train_driver.py`` subprocesses (TinyNet on QuadrantData, through
train.py's own code) sharing one compilation cache; they are compared with one uninterrupted
reference run of the same configuration: 3 epochs of 8 steps, a checkpoint every 5 steps, on
2 CPU devices."""
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from train_helpers import QuadrantData, TinyNet, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "train_driver.py")
EXIT_INTERRUPTED = 75  # train.py's
STEPS_PER_EPOCH, EPOCHS = 8, 3
LAST_STEP = STEPS_PER_EPOCH * EPOCHS
# More fault sequences: JAXZOO_FAULT_SEEDS=1,2,3 pytest tests/test_reliability.py -k kill -s
FAULT_SEEDS = [int(s) for s in os.environ.get("JAXZOO_FAULT_SEEDS", "0").split(",")]


class Driver:
    """A train_driver.py subprocess; its output lines are collected as they come."""

    def __init__(self, workdir, *args, cache, devices=2, env=None):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT, **(env or {}),
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        self.proc = subprocess.Popen(
            [sys.executable, DRIVER, str(workdir), "--cache", str(cache), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.out, self.err, self._lines = [], [], queue.Queue()
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in [(self.proc.stdout, self.out),
                                               (self.proc.stderr, self.err)]]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines):
        for line in stream:
            lines.append(line.rstrip("\n"))
            if stream is self.proc.stdout:
                self._lines.put(lines[-1])
        if stream is self.proc.stdout:
            self._lines.put(None)

    def wait_for(self, pattern, count=1, timeout=180):
        """Blocks until ``count`` stdout lines matched ``pattern``; returns the last match."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"exited before {pattern!r}:\n{self.output()}"
            match = re.search(pattern, line)
            count -= bool(match)
            if count <= 0:
                return match

    def finish(self, timeout=300):
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.proc.kill()
            for reader in self._readers:
                reader.join(timeout=10)
        return code

    def output(self):
        return "\n".join(self.out + ["--- stderr ---"] + self.err[-40:])

    def batches(self):
        """{global step: example indices} of the batches this run fetched."""
        found = {}
        for line in self.out:
            if match := re.match(r"batch (\d+) epoch \d+: ([\d ]+)$", line):
                found[int(match[1])] = [int(i) for i in match[2].split()]
        return found

    def resumed_at(self):
        match = re.search(r"resuming from .* at step (\d+) ", "\n".join(self.out))
        return int(match[1]) if match else 0


def _steps(workdir):
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


def _restore(workdir, step):
    """The train state saved at ``step`` as numpy arrays, whatever devices saved it."""
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))


def _assert_states(expected, got, **tolerance):
    assert jax.tree.structure(expected) == jax.tree.structure(got)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
        if tolerance:
            np.testing.assert_allclose(b, a, err_msg=jax.tree_util.keystr(path), **tolerance)
        else:
            np.testing.assert_array_equal(b, a, err_msg=jax.tree_util.keystr(path))


def _metrics(workdir):
    """metrics.jsonl without the fields that measure the machine's speed (images/s, ...)."""
    from jaxzoo.train import report

    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in report.TIMING_FIELDS}
                for line in f]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="module")
def references(tmp_path_factory, cache):
    """``get(options)``: the uninterrupted run of the driver with ``options`` (its workdir and
    the batches it trained on), run once per options."""
    runs = {}

    def get(options=()):
        if options not in runs:
            workdir = tmp_path_factory.mktemp("reference") / "run"
            run = Driver(workdir, *options, cache=cache)
            assert run.finish() == 0, run.output()
            assert _steps(workdir) == [5, 8, 10, 15, 16, 20, 24]
            metrics = _metrics(workdir)[-1]
            assert metrics["val_accuracy"] >= 0.8, metrics  # it learns (chance: 0.25)
            if options:  # the weights' average is evaluated beside them
                assert metrics["ema_val_accuracy"] >= 0.8, metrics
            runs[options] = workdir, run.batches()
        return runs[options]

    return get


@pytest.fixture(scope="module")
def reference(references):
    """The uninterrupted run: its workdir and the batches it trained on."""
    return references()


@pytest.mark.slow
@pytest.mark.parametrize("options", [(), ("--reference-options",)],
                         ids=["default", "reference-options"])
@pytest.mark.parametrize("seed", FAULT_SEEDS)
def test_kill_9_sigterm_and_sigint_at_random_moments_then_resume_as_if_never_stopped(
        references, cache, tmp_path, seed, options):
    """``reference-options``: SGD-Nesterov, a step schedule after a warmup, MixUp/CutMix draws
    and the EMA (train_driver.REFERENCE_OPTIONS), resumed bitwise all the same."""
    ref_workdir, ref_batches = references(options)
    workdir, rng, runs, latest_before = tmp_path / "run", random.Random(seed), [], []
    for fault in ["kill", "sigterm", "kill", "kill_in_save", "sigint", "kill"]:
        before = _steps(workdir)
        latest_before.append(before[-1] if before else 0)
        remaining = LAST_STEP - (before[-1] if before else 0)
        run = Driver(workdir, "--delay", "0.05", *options,
                     *(["--hang-in-commit", "60"] if fault == "kill_in_save" else []),
                     cache=cache)
        runs.append(run)
        if fault == "kill_in_save":
            run.wait_for(r"^committing")
            run.proc.send_signal(signal.SIGKILL)
            assert run.finish() == -signal.SIGKILL
            leftovers = os.listdir(workdir / "checkpoints")
            assert any("orbax-checkpoint-tmp" in name for name in leftovers), leftovers
            assert _steps(workdir)[-1] == before[-1] if before else not _steps(workdir)
            print(f"fault {fault}: last batch {max(run.batches())}, checkpoints {before} -> "
                  f"{_steps(workdir)}, unfinished save left behind")
            continue
        run.wait_for(r"^batch ", count=rng.randint(1, max(1, min(5, remaining - 3))))
        time.sleep(rng.uniform(0, 0.1))
        if fault == "kill":
            run.proc.send_signal(signal.SIGKILL)
            assert run.finish() == -signal.SIGKILL
            unfinished = [n for n in os.listdir(workdir / "checkpoints") if "tmp" in n]
            print(f"fault {fault}: last batch {max(run.batches())}, checkpoints {before} -> "
                  f"{_steps(workdir)}, unfinished save left behind: {bool(unfinished)}")
            continue
        run.proc.send_signal(signal.SIGTERM if fault == "sigterm" else signal.SIGINT)
        assert run.finish() == EXIT_INTERRUPTED, run.output()
        name = "SIGTERM" if fault == "sigterm" else "SIGINT"
        message = re.search(rf"stopped: training stopped by {name} at step (\d+) .*"
                            rf"Resume with: train_driver.py", "\n".join(run.err))
        assert message, run.output()
        assert _steps(workdir)[-1] == int(message[1])  # a checkpoint of the current step
        print(f"fault {fault}: last batch {max(run.batches())}, stopped at step {message[1]}, "
              f"exit {EXIT_INTERRUPTED}")

    latest_before.append(_steps(workdir)[-1])
    final = Driver(workdir, *options, cache=cache)
    runs.append(final)
    assert final.finish() == 0, final.output()
    assert not [n for n in os.listdir(workdir / "checkpoints") if "tmp" in n]
    print(f"resumed at steps {[run.resumed_at() for run in runs[1:]]}")

    # Each run resumed from the latest checkpoint on disk and went on with the next batch; the
    # batches that made the final state are the uninterrupted run's, each example once an epoch.
    trained = {}
    for run, latest in zip(runs, latest_before):
        assert run.resumed_at() == latest, run.output()  # the latest complete checkpoint
        batches = run.batches()
        assert min(batches) == latest + 1, run.output()
        trained.update(batches)
    assert trained == ref_batches
    for epoch in range(EPOCHS):
        seen = sum((trained[epoch * STEPS_PER_EPOCH + i + 1] for i in range(STEPS_PER_EPOCH)), [])
        assert sorted(seen) == list(range(128))

    _assert_states(_restore(ref_workdir, LAST_STEP), _restore(workdir, LAST_STEP))  # bitwise
    assert _metrics(workdir) == _metrics(ref_workdir)
    print("final state bitwise equal to the uninterrupted run's; metrics.jsonl equal")
    assert any(run.resumed_at() % STEPS_PER_EPOCH for run in runs[1:]), "none resumed mid-epoch"


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_two_processes(workdir, cache, *args):
    env = {"JAX_COORDINATOR_ADDRESS": f"localhost:{_free_port()}", "JAX_NUM_PROCESSES": "2"}
    return [Driver(workdir, *args, devices=1, cache=cache, env={**env, "JAX_PROCESS_ID": str(i)})
            for i in range(2)]


def _finish_all(procs):
    try:
        return [p.finish(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.proc.kill()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, cache):
    """The reference's configuration trained by two processes of one CPU device each; process 1
    alone gets a SIGTERM at a random batch, then both are started again."""
    workdir = tmp_path_factory.mktemp("two_processes") / "run"
    first = _start_two_processes(workdir, cache, "--delay", "0.05")
    first[1].wait_for(r"^batch ", count=random.Random(0).randint(3, 12))
    first[1].proc.send_signal(signal.SIGTERM)
    codes = _finish_all(first)
    assert codes == [EXIT_INTERRUPTED] * 2, "\n\n".join(p.output() for p in first)
    second = _start_two_processes(workdir, cache)
    codes = _finish_all(second)
    assert codes == [0, 0], "\n\n".join(p.output() for p in second)
    return workdir, first, second


@pytest.mark.slow
def test_two_processes_on_jax_distributed_stop_together_and_train_in_lock_step_like_one(
        reference, two_processes):
    ref_workdir, ref_batches = reference
    workdir, first, second = two_processes
    assert "with 2 cpu device(s) in 2 process(es)" in first[0].out[0]
    # SIGTERM reached process 1 only; both saved the same step, together, and stopped.
    stopped = re.search(r"stopped: training stopped by a signal to another process at step "
                        r"(\d+) ", "\n".join(first[0].err))
    assert stopped, first[0].output()
    step = int(stopped[1])
    assert step in _steps(workdir)
    for p, q in zip(first, second):
        assert max(p.batches()) == step and min(q.batches()) == step + 1
    assert second[0].resumed_at() == step
    # Only process 0 logs (and shows progress).
    assert sum(line.startswith("[epoch") for p in (first[0], second[0]) for line in p.out) == EPOCHS
    for p in (first[1], second[1]):
        assert not [line for line in p.out if re.match(r"(training|resuming|\[epoch|done)", line)]
        assert not [line for line in p.err if re.match(r"(epoch|stopped|error)", line)]
    # Each process fed its own half of every global batch, step by step.
    halves = [{**p.batches(), **q.batches()} for p, q in zip(first, second)]
    for step, indices in ref_batches.items():
        assert halves[0][step] + halves[1][step] == indices
        assert not set(halves[0][step]) & set(halves[1][step])
    _assert_states(_restore(ref_workdir, LAST_STEP), _restore(workdir, LAST_STEP))  # bitwise
    assert _metrics(workdir) == _metrics(ref_workdir)


def _copy_until(workdir, step, to):
    """A copy of ``workdir`` whose latest checkpoint is ``step``."""
    shutil.copytree(workdir, to)
    for later in [s for s in _steps(to) if s > step]:
        shutil.rmtree(to / "checkpoints" / str(later))
    return to


@pytest.mark.slow
def test_checkpoint_of_2_devices_in_2_processes_resumes_on_1_device_and_on_4(
        reference, two_processes, cache, tmp_path):
    ref_workdir, _ = reference
    finals = []
    for devices in (1, 4):
        workdir = _copy_until(two_processes[0], 10, tmp_path / f"on{devices}")
        # No dropout: its masks depend on the device layout; all else must agree.
        run = Driver(workdir, "--dropout", "0", devices=devices, cache=cache)
        assert run.finish() == 0, run.output()
        assert f"with {devices} cpu device(s) in 1 process(es)" in run.out[0]
        assert run.resumed_at() == 10 and min(run.batches()) == 11
        assert _metrics(workdir)[0] == _metrics(ref_workdir)[0]  # epoch 1, from the checkpoint
        assert _metrics(workdir)[-1]["val_accuracy"] >= 0.8
        finals.append(_restore(workdir, LAST_STEP))
    _assert_states(finals[0], finals[1], rtol=1e-4, atol=1e-5)
    moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), finals[0]["params"],
                         _restore(ref_workdir, 10)["params"])
    assert max(jax.tree.leaves(moved)) > 1e-2  # the 14 steps after the restore did train


# --------------------------------------------------------------------------- in this process


def test_the_best_checkpoint_survives_restarts_and_worse_or_unranked_saves(tmp_path):
    import flax
    import jax.numpy as jnp

    from jaxzoo.train import checkpoint

    @flax.struct.dataclass
    class State:
        step: jax.Array
        w: jax.Array

    for saves in ([(8, 0.5), (16, 0.9), (24, 0.3)], [(28, None), (32, 0.4), (40, float("nan"))]):
        manager = checkpoint.create_manager(str(tmp_path), keep_latest=1)  # a restarted run
        for step, accuracy in saves:
            checkpoint.save(manager, State(jnp.array(step), jnp.full(3, step)),
                            {"val_accuracy": accuracy})
        manager.wait_until_finished()
        manager.close()
    assert _steps(tmp_path) == [16, 40]  # the best (0.9) and the latest
    assert checkpoint.create_manager(str(tmp_path), keep_latest=1).best_step() == 16


class NonFiniteData(QuadrantData):
    """QuadrantData with a NaN pixel in the batch of global step 3."""

    def train_batches(self, epoch, start_step=0):
        for i, batch in enumerate(super().train_batches(epoch, start_step), start_step):
            if (epoch - 1) * self.steps_per_epoch + i + 1 == 3:
                batch = {**batch, "image": batch["image"].copy()}
                batch["image"][0, 0, 0, 0] = np.nan
            yield batch


def test_nonfinite_update_is_skipped_and_counted_with_skip_nonfinite(tmp_path, capsys):
    from jaxzoo.train import train_and_evaluate
    from jaxzoo.train.step import AXIS

    # (Without skip_nonfinite the run stops: test_train.py's test_nan_loss_stops_...)
    records = train_and_evaluate(tiny_config(num_epochs=2, skip_nonfinite=True), str(tmp_path),
                                 data=NonFiniteData(), model=TinyNet(bn_axis_name=AXIS))
    assert "skipped non-finite updates at steps [3]" in capsys.readouterr().out
    assert [r["nonfinite_skipped"] for r in records] == [1, 0]
    assert np.isfinite(records[0]["train_loss"])
    assert records[-1]["val_accuracy"] >= 0.8  # chance: 0.25; the bad update left no NaN behind
    state = _restore(tmp_path, 2 * QuadrantData().steps_per_epoch)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))


def _png_claiming(width, height) -> bytes:
    """A PNG header of ``width`` x ``height`` pixels with (almost) no pixel data."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def _jpeg_only_pil_reads() -> bytes:
    """A JPEG with damaged image data that PIL decodes and TensorFlow rejects."""
    import io

    import tensorflow as tf
    from PIL import Image

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG",
                                                                          quality=95)
    good = buffer.getvalue()
    scan = good.index(b"\xff\xda") + 20
    for _ in range(2000):
        data = bytearray(good)
        start, length = int(rng.integers(scan, len(good) - 20)), int(rng.integers(1, 50))
        data[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        try:
            Image.open(io.BytesIO(data)).load()
        except OSError:
            continue
        try:
            tf.io.decode_image(bytes(data), channels=3)
        except tf.errors.InvalidArgumentError:
            return bytes(data)
    raise AssertionError("no such JPEG found")


def test_a_folder_of_bad_files_and_empty_classes_trains_on_the_good_images(tmp_path, capsys):
    from PIL import Image

    from jaxzoo.data import get_datasets
    from jaxzoo.train import train_and_evaluate
    from jaxzoo.train.step import AXIS

    root = tmp_path / "photos"
    for split, count in [("train", 10), ("val", 2)]:
        for label, name in enumerate(["circle", "square"]):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (20, 24), (25 * i, 200 * label, 90)).save(
                    root / split / name / f"{i}.{'jpg' if label else 'png'}")
    jpeg = (root / "train" / "square" / "0.jpg").read_bytes()
    png = (root / "train" / "circle" / "0.png").read_bytes()
    bad = root / "train" / "circle"
    (bad / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "notes.png").write_text("not a picture\n")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), np.uint8)).save(
        bad / "corrupt.png")
    with open(bad / "corrupt.png", "r+b") as f:  # zeros over the middle of the pixel data
        f.seek((bad / "corrupt.png").read_bytes().index(b"IDAT") + 40)
        f.write(bytes(20))
    (bad / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))  # PIL refuses to open it
    Image.new("RGB", (200, 200)).save(bad / "large.png")  # over max_image_pixels below
    # Readable, though TensorFlow rejects them: PIL decodes these two.
    (bad / "damaged.jpg").write_bytes(_jpeg_only_pil_reads())
    (bad / "no_end.png").write_bytes(png[:-12])  # without its IEND chunk
    (root / "train" / "empty_class").mkdir()
    (root / "train" / "only_bad").mkdir()
    (root / "train" / "only_bad" / "zero.jpg").write_bytes(b"")

    config = tiny_config(dataset=f"folder:{root}", num_epochs=1, batch_size=2, eval_batch_size=2,
                         max_image_pixels=20_000)
    with pytest.warns(UserWarning, match=r"skipped in .*: 7 of 33 image files: .*; 2 class "
                                         r"folder\(s\) without readable training images"):
        data = get_datasets(config.dataset, image_size=16, global_batch_size=2,
                            max_image_pixels=config.max_image_pixels, process_count=1,
                            process_index=0)
    assert data.skipped == {"corrupt": 1, "empty": 2, "not_an_image": 1, "too_large": 2,
                            "truncated": 1, "empty_class": 2}
    assert data.class_names == ["circle", "square"] and (data.num_train, data.num_val) == (22, 4)
    records = train_and_evaluate(config, str(tmp_path / "run"), data=data,
                                 model=TinyNet(num_classes=2, bn_axis_name=AXIS))
    assert (f"skipped in folder:{root}: 1 corrupt, 2 empty, 2 empty_class, 1 not_an_image, "
            f"2 too_large, 1 truncated") in capsys.readouterr().out
    assert records[0]["step"] == 11 and np.isfinite(records[0]["train_loss"])  # every image once
    assert records[0]["val_count"] == 4
    with open(tmp_path / "run" / "class_names.json") as f:
        assert json.load(f) == {"0": "circle", "1": "square"}


@pytest.mark.parametrize("dataset, message", [
    ("tf_flowerz", r"error: unknown dataset 'tf_flowerz'\. Did you mean tf_flowers\?"),
    ("imagenet2012", r"error: could not download and prepare the TFDS dataset 'imagenet2012' "
                     r".*dataset='folder:PATH'"),
])
def test_train_py_reports_unknown_and_unavailable_tfds_datasets(tmp_path, capsys, dataset,
                                                                message):
    import train as train_py

    config = tiny_config(dataset=dataset, data_dir=str(tmp_path / "tfds"))
    assert train_py.run(config, str(tmp_path / "run")) == 1
    err = capsys.readouterr().err
    assert re.search(message, err, re.S), err
