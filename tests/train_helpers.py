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

    def train_batches(self, epoch, start_step=0):
        order = np.random.default_rng((self.seed, epoch)).permutation(self.num_train)
        for step in range(start_step, self.steps_per_epoch):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size][
                self._local(0, self.batch_size)]
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
