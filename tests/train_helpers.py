"""A tiny in-memory dataset with jaxzoo.data's interface, so the train step and loop are tested
without TensorFlow, and the 1-vs-2-device check that runs in a subprocess."""
from __future__ import annotations

import numpy as np


class QuadrantData:
    """Class k = a bright square in quadrant k of a noisy image (4 classes, chance 0.25)."""

    def __init__(self, num_train=128, num_val=37, image_size=16, global_batch_size=16,
                 eval_batch_size=None, seed=0, process_index=0, process_count=1):
        self.class_names = ["top_left", "top_right", "bottom_left", "bottom_right"]
        self.batch_size, self.seed = global_batch_size, seed
        self.eval_batch_size = eval_batch_size or global_batch_size
        self.process_index, self.process_count = process_index, process_count
        self.train = self._make(num_train, image_size, seed)
        self.val = self._make(num_val, image_size, seed + 1000)
        self.num_train, self.num_val = num_train, num_val
        self.steps_per_epoch = num_train // global_batch_size
        self.skipped = {}

    @staticmethod
    def _make(n, size, seed):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 4, n).astype(np.int32)
        images = rng.normal(0, 0.5, (n, size, size, 3)).astype(np.float32)
        half = size // 2
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 2)
            images[i, r * half + 1:(r + 1) * half - 1, c * half + 1:(c + 1) * half - 1] += 2.0
        return images, labels

    def _local(self, start, size):
        per = size // self.process_count
        return slice(start + self.process_index * per, start + (self.process_index + 1) * per)

    def train_indices(self, epoch, step):
        """The training examples of this process's batch at ``step`` (0-based) of ``epoch``."""
        order = np.random.default_rng((self.seed, epoch)).permutation(self.num_train)
        return order[step * self.batch_size:(step + 1) * self.batch_size][
            self._local(0, self.batch_size)]

    def train_batches(self, epoch, start_step=0):
        for step in range(start_step, self.steps_per_epoch):
            idx = self.train_indices(epoch, step)
            yield {"image": self.train[0][idx], "label": self.train[1][idx]}

    def val_batches(self):
        images, labels = self.val
        b = self.eval_batch_size
        for start in range(0, self.num_val, b):
            n = min(b, self.num_val - start)
            pad = b - n
            batch = {"image": np.concatenate([images[start:start + n],
                                              np.zeros((pad,) + images.shape[1:], np.float32)]),
                     "label": np.concatenate([labels[start:start + n], np.zeros(pad, np.int32)]),
                     "mask": np.arange(b) < n}
            yield {k: v[self._local(0, b)] for k, v in batch.items()}


import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402


class TinyNet(nn.Module):
    """conv -> BatchNorm -> relu -> 2x2 pool -> dense, with the zoo's interface (``train``,
    ``bn_axis_name``); ``num_aux`` extra heads make it return ``(logits, aux...)`` in train mode,
    as GoogLeNet and Inception v3 do."""

    num_classes: int = 4
    num_aux: int = 0
    dropout: float = 0.0
    bn_axis_name: str | None = None
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3), strides=2, use_bias=False, dtype=self.dtype, name="conv")(x.astype(self.dtype))
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name,
                         dtype=self.dtype, name="bn")(x)
        x = nn.avg_pool(nn.relu(x), (4, 4), (4, 4))  # 16 px -> 2x2: where the square is
        x = x.reshape(x.shape[0], -1)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
        aux = [nn.Dense(self.num_classes, name=f"aux{i}")(x) for i in range(self.num_aux)]
        return (logits, *aux) if train and aux else logits


def tiny_config(**fields):
    from jaxzoo.configs.default import get_default_config

    config = get_default_config("resnet18_cifar", "cifar")
    # No TensorBoard files: importing TensorFlow adds seconds to each of the many short training
    # processes of the tests (tests/test_train.py checks them).
    config.update(dict(image_size=16, batch_size=16, num_epochs=2, learning_rate=3e-2,
                       warmup_epochs=0.25, checkpoints_to_keep=1, tensorboard=False))
    config.update(fields)
    return config


def two_devices_vs_one() -> dict:
    """Two train steps of TinyNet (BatchNorm synced over devices) on a 1-device and a 2-device
    mesh, same global batch; the largest differences of the resulting params and batch_stats,
    and of the gradient of one step (measured with SGD at learning rate 1: Adam would hide a
    gradient scaled by the device count)."""
    import jax
    import optax

    from jaxzoo.train import create_train_state, make_mesh, make_train_step, shard_batch
    from jaxzoo.train.state import TrainState
    from jaxzoo.train.step import AXIS, replicate

    assert jax.device_count() == 2, jax.devices()
    data = QuadrantData(global_batch_size=8)
    batch = next(data.train_batches(0))
    model = TinyNet(bn_axis_name=AXIS, dropout=0.0)
    variables = model.init(jax.random.PRNGKey(0), batch["image"][:1])
    config = tiny_config(warmup_epochs=0.0)
    sgd = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=optax.sgd(1.0),
                            batch_stats=variables["batch_stats"], rng=jax.random.PRNGKey(1))
    results, grads = [], []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = make_mesh(devices)
        state = create_train_state(config, model, variables, data.steps_per_epoch,
                                   jax.random.PRNGKey(1))
        step = make_train_step(model, mesh, num_classes=4)
        state, metrics = step(replicate(mesh, state), shard_batch(mesh, batch))
        state, metrics = step(state, shard_batch(mesh, batch))
        results.append(jax.device_get((state.params, state.batch_stats, metrics)))
        moved = step(replicate(mesh, sgd), shard_batch(mesh, batch))[0].params
        grads.append(jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b),
                                  variables["params"], jax.device_get(moved)))

    def max_diff(a, b):
        return max(jax.tree.leaves(jax.tree.map(
            lambda x, y: float(np.abs(np.asarray(x) - np.asarray(y)).max()), a, b)))

    return {"max_param_diff": max_diff(results[0][0], results[1][0]),
            "max_batch_stats_diff": max_diff(results[0][1], results[1][1]),
            "loss_diff": abs(float(results[0][2]["loss"]) - float(results[1][2]["loss"])),
            "max_grad_diff": max_diff(grads[0], grads[1]),
            "max_grad": max(float(np.abs(g).max()) for g in jax.tree.leaves(grads[0])),
            "param_change": max_diff(results[0][0], variables["params"]),
            "batch_stats_change": max_diff(results[0][1], variables["batch_stats"])}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps({"two_devices_vs_one": two_devices_vs_one}[sys.argv[1]]()))
