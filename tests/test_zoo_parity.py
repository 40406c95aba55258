"""Every registered model against its torchvision counterpart: parameter counts, logits and pooled
features in eval mode on random weights with randomized BatchNorm statistics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity

from conftest import assert_parity, compiled_apply, photo_batch

# The first families, every size; the families added after them are checked, at the sizes their
# compile time allows, in their own test files.
FAMILIES = ("resnet", "googlenet", "inception", "mobilenet")
WITH_TORCHVISION = [n for n in jaxzoo.list_models() if jaxzoo.get_spec(n).torchvision
                    and jaxzoo.get_spec(n).builder.__module__.rpartition(".")[2] in FAMILIES]
# Input side per model: small where the architecture allows.
PARITY_SIZE = {"inception_v3": 96}


def _param_count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _zoo_params(name, **kwargs):
    spec = jaxzoo.get_spec(name)
    model = jaxzoo.create_model(name, **kwargs)
    x = jnp.zeros((1, max(spec.min_size, 32), max(spec.min_size, 32), 3))
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
    return _param_count(shapes["params"])


@pytest.mark.parametrize("name", WITH_TORCHVISION)
def test_parameter_count_equals_torchvision(name):
    torch_model = parity.torchvision_model(name)
    expected = sum(p.numel() for p in torch_model.parameters())
    assert _zoo_params(name) == expected


# The deepest and widest take the longest to compile.
LARGEST = {"resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
           "wide_resnet101_2"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGEST else n
                                  for n in WITH_TORCHVISION])
def test_logits_and_features_match_torchvision(name):
    spec = jaxzoo.get_spec(name)
    torch_model = parity.torchvision_model(name)
    parity.randomize_(torch_model, seed=1)
    variables = convert.from_torch(name, torch_model.state_dict())
    model = jaxzoo.create_model(name)

    images = photo_batch(PARITY_SIZE.get(name, 64))
    captured = {}
    hook_module = torch_model.get_submodule(spec.features_at or spec.head[0])
    hook = hook_module.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    theirs = parity.torch_forward(torch_model, images)
    hook.remove()

    ours = compiled_apply(model)(variables, images)
    assert ours.shape == (len(images), 1000)
    # The check is only as good as the signal: the logits must depend on the input.
    spread = np.abs(theirs - theirs.mean(0)).max() / np.abs(theirs).max()
    assert spread > 1e-2, f"logits hardly vary across inputs (spread {spread:.1e})"
    assert_parity(ours, theirs, "logits")
    features = compiled_apply(model, "features")(variables, images)
    assert_parity(features, captured["x"].numpy(), "pooled features")
