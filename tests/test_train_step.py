"""The train and eval steps, the optimizer and fine-tuning, on whatever devices this process has
(one CPU device under pytest), plus the 1-vs-2-device equality in a subprocess with two."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torchvision
from flax import traverse_util

from jaxzoo import create_model
from jaxzoo.train import create_train_state, make_eval_step, make_mesh, make_train_step, shard_batch
from jaxzoo.train.state import initial_variables, trainable_mask
from jaxzoo.train.step import AXIS, replicate
from train_helpers import QuadrantData, TinyNet, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup(model, data, config=None, mask_name=None):
    config = config or tiny_config()
    mesh = make_mesh()
    batch = next(data.train_batches(0))
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(batch["image"][:1]))
    state = create_train_state(config, model, variables, data.steps_per_epoch,
                               jax.random.PRNGKey(1))
    return mesh, batch, variables, replicate(mesh, state)


def test_aux_losses_are_added_with_their_weights():
    data = QuadrantData(global_batch_size=8)
    model = TinyNet(num_aux=2, bn_axis_name=AXIS)
    mesh, batch, variables, state = _setup(model, data)
    weights = (0.3, 0.7)
    step = make_train_step(model, mesh, num_classes=4, aux_loss_weights=weights)
    # The same network outside shard_map: BatchNorm over this (whole) batch, nothing to sync.
    logits, aux_a, aux_b = model.clone(bn_axis_name=None).apply(
        variables, batch["image"], train=True, mutable=["batch_stats"])[0]
    ce = lambda out: optax.softmax_cross_entropy_with_integer_labels(out, batch["label"]).mean()  # noqa: E731
    _, metrics = step(state, shard_batch(mesh, batch))
    np.testing.assert_allclose(metrics["main_loss"], ce(logits), rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], ce(logits) + 0.3 * ce(aux_a) + 0.7 * ce(aux_b),
                               rtol=1e-5)
    assert float(metrics["loss"]) > float(metrics["main_loss"]) + 0.5  # aux terms are there

    wrong = make_train_step(model, mesh, num_classes=4, aux_loss_weights=(0.4,))
    with pytest.raises(ValueError, match="2 auxiliary output"):
        wrong(replicate(mesh, create_train_state(tiny_config(), model, variables, 8,
                                                 jax.random.PRNGKey(1))), shard_batch(mesh, batch))


def test_uint8_batches_are_normalized_on_the_device_like_the_host_would():
    from jaxzoo import imagenet

    data = QuadrantData(global_batch_size=8)
    model = TinyNet(bn_axis_name=AXIS)
    mesh, batch, _, state = _setup(model, data)
    pixels = np.random.default_rng(0).integers(0, 256, batch["image"].shape).astype(np.uint8)
    step = make_train_step(model, mesh, num_classes=4)
    eval_step = make_eval_step(model, mesh, num_classes=4)
    results = []
    for images in (pixels, imagenet.normalize(pixels)):  # uint8, and float32 from the host
        sharded = shard_batch(mesh, {"image": images, "label": batch["label"],
                                     "mask": np.ones(len(images), bool)})
        sums = eval_step(state, sharded)
        new_state, metrics = step(jax.tree.map(jnp.copy, state), sharded)
        results.append(jax.device_get((sums, metrics, new_state.params)))
    assert results[0][0]["count"] == 8
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bfloat16_policy_keeps_params_optimizer_statistics_and_loss_float32():
    data = QuadrantData(image_size=8, global_batch_size=4)
    model = create_model("resnet18_cifar", num_classes=4, dtype="bfloat16", bn_axis_name=AXIS,
                         lowering="xla")
    mesh, batch, variables, state = _setup(model, data, tiny_config(dtype="bfloat16"))
    step = make_train_step(model, mesh, num_classes=4)
    new_state, metrics = step(state, shard_batch(mesh, batch))
    float32 = {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(new_state.params)} == float32
    assert {x.dtype for x in jax.tree.leaves(new_state.batch_stats)} == float32
    assert {x.dtype for x in jax.tree.leaves(new_state.opt_state) if jnp.ndim(x)} == float32
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
    # ... while the network computes in bfloat16.
    logits, _ = model.clone(bn_axis_name=None).apply(variables, batch["image"], train=True,
                                                     mutable=["batch_stats"])
    assert logits.dtype == jnp.bfloat16


def test_eval_counts_every_validation_example_once():
    data = QuadrantData(num_val=37, global_batch_size=8)  # 37 = 4 full batches + 5, padded
    model = TinyNet(bn_axis_name=AXIS)
    mesh, _, variables, state = _setup(model, data)
    from jaxzoo.train.loop import evaluate

    result = evaluate(make_eval_step(model, mesh, num_classes=4), state, mesh, data)
    logits = model.apply(variables, data.val[0])
    expected_acc = float((np.argmax(logits, -1) == data.val[1]).mean())
    expected_loss = float(optax.softmax_cross_entropy_with_integer_labels(
        logits, data.val[1]).mean())
    assert result["val_count"] == 37
    assert result["val_accuracy"] == pytest.approx(expected_acc, abs=1e-6)
    assert result["val_loss"] == pytest.approx(expected_loss, rel=1e-5)


def _opt_state_size(state) -> int:
    return sum(x.size for x in jax.tree.leaves(state.opt_state) if jnp.ndim(x) > 0)


def test_head_only_training_freezes_backbone_and_its_batchnorm():
    data = QuadrantData(image_size=8, global_batch_size=4)
    model = create_model("resnet18_cifar", num_classes=4, bn_axis_name=AXIS)
    config = tiny_config(trainable="head", image_size=8)
    mesh = make_mesh()
    batch = next(data.train_batches(0))
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(batch["image"][:1]))
    mask = trainable_mask("resnet18_cifar", variables["params"], "head")
    assert set(k[0] for k, m in traverse_util.flatten_dict(mask).items() if m) == {"fc"}
    state = replicate(mesh, create_train_state(config, model, variables, 8, jax.random.PRNGKey(1)))
    head_size = sum(x.size for x in jax.tree.leaves(variables["params"]["fc"]))
    assert _opt_state_size(state) == 2 * head_size  # Adam's mu and nu for the head only

    step = make_train_step(model, mesh, num_classes=4, mask=mask, frozen_backbone=True)
    for _, b in zip(range(2), data.train_batches(0)):
        state, _ = step(state, shard_batch(mesh, b))
    before = traverse_util.flatten_dict(jax.device_get(variables))
    after = traverse_util.flatten_dict(jax.device_get(
        {"params": state.params, "batch_stats": state.batch_stats}))
    for key, value in before.items():
        if key[:2] == ("params", "fc"):
            assert not np.array_equal(after[key], value), key
        else:
            assert np.array_equal(after[key], value), key  # bit-identical


def test_init_from_torchvision_pth_with_new_num_classes(tmp_path, capsys):
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    path = str(tmp_path / "resnet18.pth")
    torch.save(net.state_dict(), path)
    config = tiny_config(model="resnet18", init_from=path, image_size=32)
    model = create_model("resnet18", num_classes=5, bn_axis_name=AXIS)
    variables = initial_variables(config, model, 5, jax.random.PRNGKey(0), path)
    assert "fc.weight" in capsys.readouterr().out  # the report: fc.weight/fc.bias missing
    assert variables["params"]["fc"]["kernel"].shape == (512, 5)
    np.testing.assert_array_equal(variables["params"]["conv1"]["kernel"],
                                  net.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(variables["batch_stats"]["layer4_1"]["bn2"]["var"],
                                  net.layer4[1].bn2.running_var.numpy())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        initial_variables(config, model, 5, jax.random.PRNGKey(0), str(tmp_path / "nope.pth"))


def test_two_devices_give_the_same_step_as_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "train_helpers.py"),
                          "two_devices_vs_one"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["param_change"] > 1e-3 and result["batch_stats_change"] > 1e-3  # it trained
    assert result["max_param_diff"] < 1e-5, result
    assert result["max_batch_stats_diff"] < 1e-5, result
    assert result["loss_diff"] < 1e-5, result
    assert result["max_grad"] > 1e-2 and result["max_grad_diff"] < 1e-6, result  # not 2x the mean


@pytest.mark.parametrize("name,remat", [("resnet18_cifar", "blocks"),
                                        ("resnet18_cifar", "blocks_full")])
def test_remat_recomputes_blocks_with_the_same_gradients(name, remat):
    from jaxzoo.models.registry import init_variables

    kwargs, size = {}, 16
    plain = create_model(name, num_classes=5, **kwargs)
    rematerialized = create_model(name, num_classes=5, remat=remat, **kwargs)
    variables = init_variables(plain, size, jax.random.PRNGKey(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, size, size, 3)), jnp.float32)

    def grads(model):
        def loss(params):
            logits, _ = model.apply({**variables, "params": params}, x, train=True,
                                    mutable=["batch_stats"])
            return jnp.mean(jax.nn.log_softmax(logits)[:, 0])
        return jax.jit(jax.grad(loss))(variables["params"])

    jaxpr = str(jax.make_jaxpr(lambda v: rematerialized.apply(v, x, train=True,
                                                             mutable=["batch_stats"]))(variables))
    assert "checkpoint" in jaxpr or "remat" in jaxpr
    expected, got = grads(plain), grads(rematerialized)
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(expected))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_remat_of_a_model_without_it_is_a_clear_error():
    from jaxzoo.train.recipe import remat_kwargs

    assert remat_kwargs(tiny_config(model="resnet50", remat="blocks")) == {"remat": "blocks"}
    assert remat_kwargs(tiny_config(model="vgg11")) == {}
    with pytest.raises(ValueError, match="vgg11 does not rematerialize its blocks"):
        remat_kwargs(tiny_config(model="vgg11", remat="blocks"))


def test_head_only_googlenet_ignores_the_aux_loss_weights_of_its_config():
    """trainable="head" runs the backbone in inference mode: GoogLeNet then returns no auxiliary
    outputs, and its config's (0.3, 0.3) must not make the step fail. Its auxiliary classifiers,
    which get no gradient there, stay as they were, weight decay or not (torch's AdamW skips
    parameters without a gradient)."""
    from jaxzoo.models.registry import init_variables
    from jaxzoo.train import make_train_step_for_config

    config = tiny_config(model="googlenet", trainable="head", aux_loss_weights=(0.3, 0.3),
                         weight_decay=0.1, warmup_epochs=0.0)
    model = create_model("googlenet", num_classes=5, bn_axis_name=AXIS, lowering="xla")
    variables = init_variables(model, 32, jax.random.PRNGKey(0))
    mesh = make_mesh(jax.devices()[:1])
    state = replicate(mesh, create_train_state(config, model, variables, 10,
                                               jax.random.PRNGKey(1)))
    step = make_train_step_for_config(
        config, model, mesh, num_classes=5,
        mask=trainable_mask("googlenet", variables["params"], "head"))
    mask = trainable_mask("googlenet", variables["params"], "head")
    assert [k for k, m in traverse_util.flatten_dict(mask).items() if m] == [
        ("fc", "bias"), ("fc", "kernel")]
    batch = {"image": np.zeros((2, 32, 32, 3), np.float32), "label": np.zeros(2, np.int32)}
    new_state, metrics = step(state, shard_batch(mesh, batch))
    assert float(metrics["loss"]) == pytest.approx(float(metrics["main_loss"]))
    before, after = variables["params"], jax.device_get(new_state.params)
    for aux in ("aux1", "aux2"):
        np.testing.assert_array_equal(after[aux]["fc2"]["kernel"], before[aux]["fc2"]["kernel"])
    assert not np.array_equal(after["fc"]["kernel"], before["fc"]["kernel"])
