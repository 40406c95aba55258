"""``python -m jaxzoo bench``: it times the step ``train.py`` runs and the predictor's forward
(not copies of them), and its table and CSV hang together. (Speed itself is the benchmark's
business, not the tests'.)"""
import csv

import jax
import numpy as np
import pytest

from jaxzoo import bench


@pytest.mark.slow
def test_train_runner_times_the_step_train_py_builds_from_the_model_config():
    runner = bench.JaxRunner("inception10", "train", batch=2, size=8, dtype="float32",
                             lowering="xla")
    assert runner.aux_loss_weights == ()
    before = jax.device_get(runner.state.step)
    runner.step()
    runner.step()
    assert jax.device_get(runner.state.step) == before + 2  # the donated state moves on
    # The trainer's state and step: its metrics, its non-finite check.
    assert type(runner.state).__name__ == "TrainState"
    assert set(runner.metrics) == {"loss", "main_loss", "accuracy", "finite"}
    assert bool(runner.metrics["finite"])


@pytest.mark.slow
def test_plain_runner_trains_a_default_create_model_with_the_trainers_lowering():
    """``--mode plain``: a user's own jitted step on ``create_model(name)``, which gets the
    lowering the trainer picks for these devices; the donated state moves and the loss falls on
    a repeated batch."""
    plain = bench.JaxRunner("inception10", "plain", batch=4, size=16, dtype="float32")
    trainer = bench.JaxRunner("inception10", "train", batch=4, size=16, dtype="float32")
    assert plain.model.lowering == trainer.model.lowering == "cpu"
    losses = []
    for _ in range(4):
        plain.step()
        losses.append(float(plain.metrics["loss"]))
    assert losses[-1] < losses[0]
    params, batch_stats, opt_state = plain.state
    assert int(opt_state[0].count) == 5  # the compile-time warm-up step and four more


def test_aux_loss_weights_come_from_the_model_config():
    config = bench.train_config("googlenet", batch=4, dtype="float32")
    assert tuple(config.aux_loss_weights) == (0.3, 0.3) and config.batch_size == 4
    assert tuple(bench.train_config("inception_v3", 2, "bfloat16").aux_loss_weights) == (0.4,)


def test_torch_runner_weighs_aux_losses_like_the_config():
    import torch

    runner = object.__new__(bench.TorchRunner)
    runner.y, runner.aux_loss_weights = torch.tensor([0, 1]), (0.3, 0.5)
    logits = [torch.randn(2, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    ce = torch.nn.functional.cross_entropy
    expected = ce(logits[0], runner.y) + 0.3 * ce(logits[1], runner.y) + 0.5 * ce(logits[2],
                                                                                   runner.y)
    assert torch.allclose(runner._loss(tuple(logits)), expected)


@pytest.mark.slow
def test_infer_runner_times_the_predictors_forward():
    runner = bench.JaxRunner("inception10", "infer", batch=3, size=8, dtype="float32",
                             lowering="xla")
    probabilities = np.asarray(runner.compiled(runner.state, runner.x))
    assert probabilities.shape == (3, 1000)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)  # the predictor's softmax


def _rows():
    return [bench.Row("resnet18", "train", 16, 128, "float32", 2, 30.0, 40.0, 0.75, 12.5, 900.0,
                      2100.0, 1600.0),
            bench.Row("resnet18_cifar", "infer", 16, 32, "float32", 2, 500.0, None, None, 3.0,
                      None)]


def test_markdown_table_has_a_row_per_model_and_mode():
    lines = bench.markdown(_rows()).strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["model", "mode", "batch"] and "ratio" in header
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [(r[0], r[1]) for r in body] == [("resnet18", "train"), ("resnet18_cifar", "infer")]
    assert all(len(r) == len(header) for r in body)
    assert body[0][header.index("ratio")] == "0.750" and body[1][header.index("ratio")] == "-"


def test_csv_keeps_the_numbers_and_leaves_missing_ones_empty(tmp_path):
    path = tmp_path / "results.csv"
    bench.write_csv(str(path), _rows())
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == bench.COLUMNS
    assert float(rows[0]["ratio"]) == pytest.approx(30.0 / 40.0)
    assert rows[1]["torch_img_s"] == "" and rows[1]["ratio"] == ""
    assert float(rows[0]["torch_peak_mib"]) == 1600.0 and rows[1]["jaxzoo_peak_mib"] == ""


@pytest.mark.slow
def test_input_benchmark_reads_every_image_both_ways(tmp_path):
    from jaxzoo import bench_input

    folder = bench_input.make_folder(str(tmp_path / "jpegs"), per_class=6, width=64, height=48)
    rows = bench_input.run(folder, size=32, batch=4, threads=1, repeats=1, compare="torch",
                           log=lambda *a: None)
    assert [r.pipeline for r in rows] == ["train", "eval"]
    train, evaluate = rows
    assert train.images == 12 and evaluate.images == 12  # 3 full batches; every val image
    for row in rows:
        assert row.jaxzoo_img_s > 0 and row.torch_img_s > 0
        assert row.ratio == pytest.approx(row.jaxzoo_img_s / row.torch_img_s)
    table = bench_input.markdown(rows).splitlines()
    assert len(table) == 4 and table[2].startswith("| train | 12 | 32 | 4 | 1 |")


@pytest.mark.slow
def test_each_frameworks_peak_memory_is_measured_in_a_process_of_its_own():
    kwargs = dict(batch=2, size=32, dtype="float32", threads=2, lowering="xla", steps=1)
    ours = bench.peak_rss_apart("jaxzoo", "squeezenet1_1", "train", **kwargs)
    theirs = bench.peak_rss_apart("torch", "squeezenet1_1", "train", **kwargs)
    # Each a whole process's peak: a framework and a compiled or built squeezenet at least.
    assert 200 < ours < 8000 and 200 < theirs < 8000
    with pytest.raises(RuntimeError, match="peak memory for no_such_model failed"):
        bench.peak_rss_apart("jaxzoo", "no_such_model", "train", **kwargs)


@pytest.mark.slow
def test_accelerator_check_script_runs_end_to_end_on_the_cpu_install(tmp_path):
    """benchmarks/accelerator_check.sh with the CPU install and small sizes (one model): every
    step runs and leaves its file, so the script works the first time an accelerator is at
    hand."""
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    venv = os.sys.prefix  # this test's virtual environment
    env = dict(os.environ, OUT=str(tmp_path), JAXZOO_EXTRA="none", JAXZOO_CHECK_QUICK="1",
               JAXZOO_SKIP_INSTALL="1", JAXZOO_VENV=venv, JAXZOO_CHECK_MODELS="resnet18",
               JAX_PLATFORMS="cpu", JAXZOO_COMPILATION_CACHE="off")
    out = subprocess.run(["bash", os.path.join(root, "benchmarks", "accelerator_check.sh")],
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert "devices: [CpuDevice(id=0)]" in summary
    assert "parity: 1 of 1 PASS" in summary
    assert "[epoch 1] train_loss:" in summary
    table = (tmp_path / "bench.md").read_text().splitlines()
    assert [line.split("|")[1:3] for line in table[2:]] == [[" resnet18 ", " train "],
                                                            [" resnet18 ", " infer "]]
    assert all(" bfloat16 " in line for line in table[2:])
    record = __import__("json").loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert record["epoch"] == 1 and record["images_per_s"] > 0
