"""The model contract's fields are declared once, in ``layers.ZooModel``, and the lists of fields
that are not a network's options (configs' ``model_kwargs``, converted weights) derive from it."""
import dataclasses

import jax
import jax.numpy as jnp
import pytest

import jaxzoo
from jaxzoo import convert
from jaxzoo.models import layers, registry, resnet
from jaxzoo.models.inception10 import Inception10
from jaxzoo.models.inception_mnist import InceptionMNIST
from jaxzoo.train import configs

FLAX_FIELDS = {"parent", "name"}


def _model_classes():
    return {type(registry.create_model(name)) for name in jaxzoo.list_models()}


def test_the_contract_is_the_base_class_fields_keyword_only_in_every_model():
    assert layers.CONTRACT_FIELDS == ("num_classes", "dtype", "bn_axis_name", "lowering",
                                      "in_channels")
    base = {f.name: f for f in dataclasses.fields(layers.ZooModel)}
    classes = _model_classes()
    assert len(classes) == 18
    for cls in classes:
        assert issubclass(cls, layers.ZooModel), cls
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in layers.CONTRACT_FIELDS:
            assert fields[name].kw_only, (cls.__name__, name)
        # A family restates a contract field only to change its default: no copies.
        for klass in cls.__mro__[:cls.__mro__.index(layers.ZooModel)]:
            for name in set(vars(klass).get("__annotations__", {})) & set(layers.CONTRACT_FIELDS):
                assert fields[name].default != base[name].default, (klass.__name__, name)


def test_families_keep_their_defaults_and_add_positional_fields_after_the_contract():
    assert (Inception10().num_classes, Inception10().in_channels) == (10, 3)
    assert (InceptionMNIST().num_classes, InceptionMNIST().in_channels) == (10, 1)
    model = resnet.ResNet(resnet.BasicBlock, (1, 1, 1, 1))  # required fields, given by position
    assert (model.num_classes, model.dtype, model.bn_axis_name, model.lowering,
            model.in_channels) == (1000, jnp.float32, None, "xla", 3)


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "inception10", "inception_mnist",
                                  "mobilenet_v3_small", "convnext_tiny"])
def test_the_non_option_list_is_the_contract_minus_the_network_options(name):
    assert set(layers.BUILD_FIELDS) == set(layers.CONTRACT_FIELDS) - set(layers.NETWORK_FIELDS)
    assert set(layers.BUILD_FIELDS) == {"num_classes", "dtype", "bn_axis_name", "lowering"}
    fields = {f.name for f in dataclasses.fields(type(registry.create_model(name)))}
    options = registry.model_options(name)
    assert options == sorted(fields - set(layers.BUILD_FIELDS) - FLAX_FIELDS)
    assert "in_channels" in options
    # configs' list is the same but remat, which config.remat sets.
    assert configs.model_kwargs_fields(name) == [f for f in options if f != "remat"]
    config = configs.load_config(name)
    with pytest.raises(ValueError, match="has no setting 'lowering'"):
        configs.model_kwargs_override(config, "lowering", "cpu")


def test_converted_weights_keep_the_network_options_not_how_the_model_ran():
    model = jaxzoo.create_model("inception10", num_blocks=1)
    variables = registry.init_variables(model, 32, jax.random.PRNGKey(0))
    loaded = convert.load("inception10", convert.to_torch("inception10", variables),
                          num_classes=10, num_blocks=1, in_channels=3, dtype=jnp.bfloat16,
                          lowering="cpu", bn_axis_name="data", progress=False)
    assert loaded.model.dtype == jnp.bfloat16 and loaded.model.bn_axis_name == "data"
    assert loaded.model_kwargs == {"num_blocks": 1, "in_channels": 3}
