"""jaxzoo.nnx: the zoo as flax.nnx Modules through flax's bridge. Pretrained weights give the
linen model's logits, and NNX training (nnx.Optimizer + nnx.jit) changes the weights and the
BatchNorm statistics as the linen trainer's step (jaxzoo.train.step.make_train_step) does."""
import jax
import numpy as np
import optax
from conftest import _load_photos, fake_pretrained_file
from flax import nnx
from PIL import Image

import jaxzoo
import jaxzoo.nnx
from jaxzoo import imagenet
from jaxzoo.train.state import TrainState
from jaxzoo.train.step import (
    AXIS,
    cross_entropy,
    make_mesh,
    make_train_step,
    replicate,
    shard_batch,
)


def uint8_images(size: int, count: int, seed: int = 0) -> np.ndarray:
    """The three real photos at ``size`` px, then uint8 noise up to ``count`` images."""
    photos = [np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR))
              for p in _load_photos()]
    noise = np.random.default_rng(seed).integers(0, 256, (count - len(photos), size, size, 3))
    return np.concatenate([np.stack(photos), noise.astype(np.uint8)])


def test_pretrained_gives_the_linen_models_logits(tmp_path, monkeypatch):
    """torchvision's resnet18 DEFAULT weights, faked offline: a randomized torchvision resnet18
    saved in torch's cache under the file name the catalog expects."""
    fake_pretrained_file(tmp_path, monkeypatch, "resnet18", seed=1)

    module = jaxzoo.nnx.pretrained("resnet18")
    linen_model, variables = jaxzoo.pretrained("resnet18")
    assert isinstance(module, nnx.Module) and isinstance(module.fc["kernel"], nnx.Param)
    assert isinstance(module.bn1["mean"], nnx.BatchStat)
    # The same arrays at the same paths, both ways.
    back = jaxzoo.nnx.to_linen_variables(module)
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    x = imagenet.normalize(uint8_images(64, 4))
    ours = nnx.jit(lambda m, x: m(x, train=False))(module, x)
    theirs = jax.jit(lambda v, x: linen_model.apply(v, x, train=False))(variables, x)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert np.ptp(np.asarray(theirs)) > 1.0  # the weights are not an identity's


def test_two_nnx_train_steps_change_weights_and_statistics_as_the_trainers_step():
    name, num_classes, lr = "resnet18_cifar", 10, 1e-3
    images = uint8_images(32, 8)
    labels = np.arange(8) % num_classes
    module = jaxzoo.nnx.create_model(name, num_classes=num_classes, rngs=nnx.Rngs(params=0,
                                                                                 dropout=1))
    start = jax.tree.map(np.asarray, jaxzoo.nnx.to_linen_variables(module))

    # NNX: nnx.Optimizer over the parameters; train mode updates the BatchNorm statistics.
    optimizer = nnx.Optimizer(module, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def nnx_step(model, optimizer, images, labels):
        def loss_fn(model):
            logits = model(imagenet.normalize(images), train=True)
            return cross_entropy(logits, labels, num_classes).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    nnx_losses = [float(nnx_step(module, optimizer, images, labels)) for _ in range(2)]
    ours = jaxzoo.nnx.to_linen_variables(module)

    # linen: the trainer's sharded step on a one-device mesh, the same start and optimizer.
    mesh = make_mesh(jax.devices()[:1])
    linen_model = jaxzoo.create_model(name, num_classes=num_classes, bn_axis_name=AXIS)
    state = replicate(mesh, TrainState.create(
        apply_fn=linen_model.apply, params=start["params"], tx=optax.adam(lr),
        batch_stats=start["batch_stats"], rng=jax.random.PRNGKey(0)))
    step = make_train_step(linen_model, mesh, num_classes=num_classes)
    batch = shard_batch(mesh, {"image": images, "label": labels})
    linen_losses = []
    for _ in range(2):
        state, metrics = step(state, batch)
        linen_losses.append(float(metrics["loss"]))

    np.testing.assert_allclose(nnx_losses, linen_losses, rtol=1e-5)
    for collection, theirs in (("params", state.params), ("batch_stats", state.batch_stats)):
        moved = max(float(np.abs(np.asarray(a) - b).max()) for a, b in zip(
            jax.tree.leaves(theirs), jax.tree.leaves(start[collection])))
        assert moved > 1e-3, f"{collection} did not change"
        assert jax.tree.structure(ours[collection]) == jax.tree.structure(theirs)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours[collection]),
                                jax.tree.leaves(theirs)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{collection} {jax.tree_util.keystr(path)}")
