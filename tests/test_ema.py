"""The weights' moving average (jaxzoo.train.ema) against torchvision's reference
``utils.ExponentialMovingAverage``, updated as the reference's ``train_one_epoch`` does."""
import functools

import jax
import ml_collections
import numpy as np
import pytest
import torch

from jaxzoo.train import ema


# torchvision's references/classification/utils.py (the references are not installed).
class ExponentialMovingAverage(torch.optim.swa_utils.AveragedModel):
    """Maintains moving averages of model parameters using an exponential decay.
    ``ema_avg = decay * avg_model_param + (1 - decay) * model_param``
    `torch.optim.swa_utils.AveragedModel <https://pytorch.org/docs/stable/optim.html#custom-averaging-strategies>`_
    is used to compute the EMA.
    """

    def __init__(self, model, decay, device="cpu"):
        def ema_avg(avg_model_param, model_param, num_averaged):
            return decay * avg_model_param + (1 - decay) * model_param

        super().__init__(model, device, ema_avg, use_buffers=True)


def _config(**fields):
    config = ml_collections.ConfigDict({"batch_size": 4, "model_ema_steps": 2, "num_epochs": 3,
                                            "model_ema_decay": 0.99, "warmup_epochs": 1})
    config.update(fields)
    return config


def test_adjusted_decay_is_the_references():
    # adjust = world_size * batch_size * model_ema_steps / epochs; alpha = min(1, alpha * adjust)
    config = _config(batch_size=1024, model_ema_steps=32, num_epochs=600, model_ema_decay=0.99998)
    alpha = min(1.0, (1 - 0.99998) * (8 * 128 * 32 / 600))
    assert ema.adjusted_decay(config) == 1.0 - alpha
    assert ema.adjusted_decay(_config(model_ema_decay=0.5)) == 0.0  # alpha clipped to 1


def _split(model):
    """(params, buffers) of a torch model as numpy dicts (num_batches_tracked aside)."""
    params = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    buffers = {k: v.detach().numpy().copy() for k, v in model.named_buffers()
               if not k.endswith("num_batches_tracked")}
    return params, buffers


def test_params_and_batchnorm_statistics_follow_the_reference_over_epochs():
    """Three epochs of five steps, an update every two steps of each epoch (indices 0, 2, 4),
    one warmup epoch: after every step the average equals the reference's within 1e-6."""
    config = _config()
    decay = ema.adjusted_decay(config)
    steps_per_epoch, every = 5, config.model_ema_steps
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    reference = ExponentialMovingAverage(model, decay=decay)

    ours = ema.init(*_split(model))
    update = jax.jit(functools.partial(ema.update, steps_per_epoch=steps_per_epoch, every=every,
                                       decay=decay, warmup_epochs=config.warmup_epochs))
    rng = np.random.default_rng(0)
    step = 0
    for epoch in range(config.num_epochs):
        for i in range(steps_per_epoch):  # the reference's train_one_epoch
            images = torch.from_numpy(rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
            labels = torch.from_numpy(rng.integers(0, 3, 4))
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if i % every == 0:
                reference.update_parameters(model)
                if epoch < config.warmup_epochs:
                    reference.n_averaged.fill_(0)

            ours = update(ours, *_split(model), step)
            step += 1
            assert int(ours["n_averaged"]) == int(reference.n_averaged), (epoch, i)
            expected_params, expected_stats = _split(reference.module)
            for key, value in expected_params.items():
                np.testing.assert_allclose(ours["params"][key], value, atol=1e-6, rtol=0,
                                           err_msg=f"{key} after epoch {epoch} step {i}")
            for key, value in expected_stats.items():
                np.testing.assert_allclose(ours["batch_stats"][key], value, atol=1e-6, rtol=0,
                                           err_msg=f"{key} after epoch {epoch} step {i}")
    # After the warmup the average lags the weights: it is not a copy.
    params, stats = _split(model)
    assert max(np.abs(ours["params"][k] - v).max() for k, v in params.items()) > 1e-3
    assert max(np.abs(ours["batch_stats"][k] - v).max() for k, v in stats.items()) > 1e-4


@pytest.mark.slow  # about 30 s: a model init and a checkpoint
def test_a_workdir_with_an_average_gives_the_average_to_predict_and_export(tmp_path):
    """workdir.load_run (what predict, evaluate and export read) returns the checkpoint's EMA
    params and statistics when the run kept one, not the raw weights."""
    from test_predict import write_run
    from train_helpers import tiny_config

    from jaxzoo import create_model
    from jaxzoo.models.registry import init_variables
    from jaxzoo.train import workdir
    from jaxzoo.train.state import create_train_state

    config = tiny_config(model_ema=True)
    classes = ["a", "b", "c", "d"]
    model = create_model(config.model, num_classes=len(classes))
    variables = init_variables(model, config.image_size, jax.random.PRNGKey(0))
    state = create_train_state(config, model, variables, 8, jax.random.PRNGKey(1))
    average = jax.tree.map(lambda x: x * 0.5 + 1.0, {"params": state.params,
                                                     "batch_stats": state.batch_stats})
    state = state.replace(ema={**state.ema, **average})
    write_run(tmp_path / "run", config, classes, [(1, 0.5, state)])

    run = workdir.load_run(str(tmp_path / "run"))
    for part in ("params", "batch_stats"):
        for got, expected in zip(jax.tree.leaves(run.variables[part]),
                                 jax.tree.leaves(average[part])):
            np.testing.assert_array_equal(got, expected)
