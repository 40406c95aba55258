"""Training parity with PyTorch (jaxzoo.train.parity): a few steps of the train step
train.py builds, beside the same training in torch, from the same weights and batches.

Small inputs and few steps: Adam's early steps amplify float32 rounding (the README's "Training
parity with PyTorch"), so a few steps stay within the fixed tolerances where ten need the float64
reference. Each test prints its duration."""
import os
import subprocess
import sys
import time

import numpy as np
import optax
import pytest
import torch

from jaxzoo.train import parity as train_parity
from jaxzoo.train.parity import TorchTrainer, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(name, sets=(), steps=3, size=32, batch=4, **kwargs):
    start = time.perf_counter()
    lines = []
    result = train_parity.run(name, load_config(name, None, list(sets)), steps=steps, size=size,
                              batch=batch, reference=kwargs.pop("reference", "none"),
                              log=lines.append, **kwargs)
    print("\n".join(lines))
    print(train_parity.report(result))
    print(f"{name} {' '.join(sets)}: {time.perf_counter() - start:.1f} s")
    return result, lines


def _assert_parity(result, updates=0.1):
    assert result.diff.within(), train_parity.report(result)
    assert result.verdict() == "PASS"
    assert result.weight_change > 1e-3  # it trained
    assert result.diff.updates < updates, result.diff  # the same updates, not just small ones


def test_schedule_is_optax_per_step():
    """The LambdaLR factor is create_optimizer's warmup + cosine, step by step."""
    config = load_config("resnet18", None, ["warmup_epochs=1.5", "num_epochs=3"])
    warmup, total, factor = train_parity.lr_schedule(config, steps_per_epoch=4)
    assert (warmup, total) == (6, 12)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, total, 0.0)
    np.testing.assert_allclose([factor(s) for s in range(total + 3)],
                               [float(schedule(s)) for s in range(total + 3)], atol=1e-7)
    config = load_config("resnet18", None, ["warmup_epochs=0"])
    assert train_parity.lr_schedule(config, 5)[2](0) == 1.0  # no warmup: the peak at once


def test_resnet18_with_label_smoothing_warmup_weight_decay_and_clipping():
    # 2 steps of warmup, then the cosine: lr 0, 1.5e-4, 3e-4, 1.5e-4.
    result, lines = _run("resnet18", ["label_smoothing=0.1", "weight_decay=0.05",
                                      "grad_clip_norm=1.0", "warmup_epochs=1", "num_epochs=2"],
                         steps=4, steps_per_epoch=2)
    _assert_parity(result)
    np.testing.assert_allclose(result.learning_rates, [0.0, 1.5e-4, 3e-4, 1.5e-4], rtol=1e-6)
    assert min(result.grad_norms) > 1.0  # clipping was at work on every step
    text = "\n".join(lines)
    assert "torch.optim.AdamW" in text and "CrossEntropyLoss(label_smoothing=0.1)" in text
    assert "clip_grad_norm_(1)" in text


def test_head_only_freezes_the_same_parameters_on_both_sides():
    result, lines = _run("resnet18", ["trainable=head", "warmup_epochs=0"])
    _assert_parity(result)
    states = result.states
    for key, value in states["initial"].items():
        if key.startswith("fc."):
            assert not np.array_equal(states["torch"][key], value), key
        else:  # the backbone and its BatchNorm statistics, bit for bit, on both sides
            np.testing.assert_array_equal(states["torch"][key], value, err_msg=key)
            np.testing.assert_array_equal(states["jaxzoo"][key], value, err_msg=key)
    assert any("model.eval()" in line for line in lines)


class _L2Adam(TorchTrainer):
    """A mapping error: torch.optim.Adam's weight_decay (L2 in the gradient) for AdamW's."""

    def __init__(self, torch_model, config, spec, steps_per_epoch, dtype=None):
        super().__init__(torch_model, config, spec, steps_per_epoch, dtype)
        self.optimizer = torch.optim.Adam(
            [{"params": self.decay, "weight_decay": float(config.weight_decay)},
             {"params": self.no_decay, "weight_decay": 0.0}], lr=float(config.learning_rate))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, train_parity.lr_schedule(config, steps_per_epoch)[2])


def test_a_wrong_mapping_fails():
    result, _ = _run("resnet18", ["trainable=head", "warmup_epochs=0", "weight_decay=0.5"],
                     torch_trainer=_L2Adam, reference="float64")
    assert result.verdict() == "FAIL", train_parity.report(result)


@pytest.mark.slow
def test_mobilenet_v3_small():
    result, _ = _run("mobilenet_v3_small")
    _assert_parity(result)


@pytest.mark.slow
def test_googlenet_with_its_auxiliary_losses():
    result, lines = _run("googlenet", size=64, batch=8)
    _assert_parity(result)
    assert any("0.3 x CE(output 1) + 0.3 x CE(output 2)" in line for line in lines)


@pytest.mark.slow
def test_two_devices_split_the_batch():
    """``python -m jaxzoo check --train-steps`` with the batch split over two devices (BatchNorm
    statistics synchronized) against torch on the whole batch."""
    start = time.perf_counter()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "jaxzoo", "check", "resnet18", "--train-steps",
                          "3", "--batch", "4", "--size", "32", "--reference", "none"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
                         check=False)
    print(out.stdout)
    print(f"two devices: {time.perf_counter() - start:.1f} s")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "on 2 cpu device(s)" in out.stdout and "split 2 per device" in out.stdout
    assert out.stdout.rstrip().splitlines()[-1].startswith("PASS")
