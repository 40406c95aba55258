"""Every config file loads, with and without its presets, and names a model whose train step
traces at the config's image size; bad config names and fields are one-line errors."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxzoo import create_model, get_spec
from jaxzoo.models.registry import variable_shapes
from jaxzoo.train import configs, create_train_state, make_mesh, make_train_step_for_config
from jaxzoo.train.state import trainable_mask
from jaxzoo.train.step import AXIS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = configs.available_configs()
PRESETS = [None, "shapes"]


def test_every_model_has_a_config():
    from jaxzoo import list_models

    assert set(list_models()) <= set(CONFIGS)


def _family(name):
    return get_spec(configs.load_config(name).model).builder.__module__


# Tracing a train step takes seconds per model on XLA:CPU: every config is loaded and its model
# built, and one step is traced for the smallest config of each model family.
# The smallest of each family where it has several sizes (the trace time grows with the depth).
SMALLEST = ["resnet18", "convnext_tiny", "regnet_x_400mf", "mobilenet_v3_small", "vgg11",
            "densenet121", "efficientnet_b0", "resnet18_v2"]
_first_of_family = {}
for _name in [n for n in SMALLEST if n in CONFIGS] + CONFIGS:
    _first_of_family.setdefault(_family(_name), _name)
FAMILIES = sorted(_first_of_family.values())
# The preset changes the model only where a model has auxiliary heads: both presets for those,
# the main job's (shapes) for the others.
TRACED = [(name, "shapes") for name in FAMILIES] + [
    (name, None) for name in ("googlenet", "inception_v3")]


@pytest.mark.parametrize("preset", PRESETS, ids=["default", "shapes"])
@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_and_fits_its_model(name, preset):
    config = configs.load_config(name, preset)
    spec = get_spec(config.model)
    assert config.image_size >= spec.min_size, "the model cannot take the config's images"
    if preset == "shapes":
        assert config.dataset == "shapes/large"
    create_model(config.model, num_classes=5, **config.model_kwargs)  # options it accepts


@pytest.mark.slow
@pytest.mark.parametrize("name,preset", TRACED, ids=[f"{n}-{p or 'default'}" for n, p in TRACED])
def test_train_step_of_config_traces(name, preset):
    config = configs.load_config(name, preset)
    num_classes = 5
    model = create_model(config.model, num_classes=num_classes, bn_axis_name=AXIS,
                         lowering="cpu", **config.model_kwargs)
    mesh = make_mesh(jax.devices()[:1])
    size = config.image_size
    split = NamedSharding(mesh, P(AXIS))
    channels = model.in_channels
    batch = {"image": jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32,
                                           sharding=split),
             "label": jax.ShapeDtypeStruct((2,), jnp.int32, sharding=split)}

    def one_step(variables, batch):
        state = create_train_state(config, model, variables, 10, jax.random.PRNGKey(0))
        mask = trainable_mask(config.model, variables["params"], config.trainable)
        step = make_train_step_for_config(config, model, mesh, num_classes=num_classes,
                                          mask=mask)
        return step(state, batch)

    # Traced, not compiled: shapes and the aux-loss weights against the model's outputs.
    state, metrics = jax.eval_shape(one_step, variable_shapes(model, size), batch)
    assert metrics["loss"].shape == () and state.step.shape == ()


def _run_train_py(*args, cwd=ROOT):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                          capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=120)


@pytest.mark.parametrize("override,message", [
    ("--config.learning_rat=1", r"the config has no field 'learning_rat' \(from "
                                r"--config.learning_rat\)\. Did you mean --config.learning_rate"),
    ("--config.model_kwargs.in_chanels=1", r"resnet18_cifar has no setting 'in_chanels' \(from "
     r"--config.model_kwargs.in_chanels\)\. Did you mean --config.model_kwargs.in_channels\?"),
    ("--config.model_kwargs.num_classes=3", r"resnet18_cifar has no setting 'num_classes'"),
    ("--config.num_epochs=x", r"--config.num_epochs=x: .*int"),
])
def test_unknown_config_field_names_the_closest(override, message):
    out = _run_train_py("--config=resnet18_cifar:shapes", override)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert __import__("re").search(message, out.stderr), out.stderr[-2000:]


def test_a_model_option_the_config_does_not_list_is_added_from_the_command_line():
    """``--config.model_kwargs.KEY=VALUE`` sets any option of the model (ml_collections alone
    cannot add a field to a config), parsed as a Python literal; ``check --set`` parses with the
    same function and gets the same config."""
    import train as train_py

    from jaxzoo.train import parity

    argv, spec, overrides = train_py.split_config_args([
        "train.py", f"--config={ROOT}/configs/googlenet.py", "--config.model_kwargs.in_channels=1",
        "--config.model_kwargs.transform_input=True", "--config.num_epochs", "2", "--workdir=x"])
    assert argv == ["train.py", "--workdir=x"] and spec == f"{ROOT}/configs/googlenet.py"
    config = train_py.load_config(spec, overrides)
    assert dict(config.model_kwargs) == {"in_channels": 1, "transform_input": True}
    assert config.num_epochs == 2 and config.aux_loss_weights == (0.3, 0.3)
    checked = parity.load_config("googlenet", None, overrides)
    assert checked.to_dict() == config.to_dict()


def test_parsing_a_config_starts_no_jax_backend():
    """train.py parses --config and its overrides before jax.distributed.initialize(), which
    fails once a backend has started: loading a config, checking a model option and reading a
    model's options must not query devices (create_model's "auto" lowering would)."""
    code = ("import train\n"
            "from jax._src import xla_bridge\n"
            "config = train.load_config('regnet_y_400mf:shapes', ['model_kwargs.in_channels=1', "
            "'num_epochs=2'])\n"
            "assert config.model_kwargs.in_channels == 1\n"
            "assert not xla_bridge.backends_are_initialized()\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_values_are_parsed_by_the_fields_type():
    config = configs.apply_overrides(configs.load_config("resnet18"), [
        "learning_rate=1", "tensorboard=false", "crop_scale=(0.5, 1.0)", "dataset=folder:/x/1",
        "seed=3"])
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.tensorboard is False and config.crop_scale == (0.5, 1.0)
    assert config.dataset == "folder:/x/1" and config.seed == 3
    with pytest.raises(ValueError, match=r"--set num_epochs=many: .*int"):
        configs.apply_overrides(config, ["num_epochs=many"], flag="--set ")
    with pytest.raises(ValueError, match=r"--set tensorboard=maybe: expected true or false"):
        configs.apply_overrides(config, ["tensorboard=maybe"], flag="--set ")


def test_configs_derive_from_the_registry():
    """A model without a config file trains from the defaults at its design size; files exist
    only where they say more than that."""
    assert not os.path.exists(os.path.join(ROOT, "configs", "regnet_y_400mf.py"))
    assert configs.load_config("regnet_y_400mf").image_size == 224
    assert configs.load_config("efficientnet_b3").image_size == 300 == \
        get_spec("efficientnet_b3").default_size
    assert configs.load_config("inception_v3").image_size == 299
    assert configs.load_config("resnet18_cifar").dataset == "cifar10"  # its family, 32 px
    assert configs.load_config("regnet_y_400mf:shapes").dataset == "shapes/large"
    for name in configs.config_files():  # each file changes something the defaults would not
        from jaxzoo.configs.default import get_config_for

        assert configs.load_config(name).to_dict() != get_config_for(name, None).to_dict() or \
            configs.load_config(name, "shapes").to_dict() != \
            get_config_for(name, "shapes").to_dict(), name


def test_a_preset_in_another_case_is_suggested_not_taken():
    with pytest.raises(ValueError, match=r"unknown preset 'SHAPES' for config resnet18\. Did you "
                                         r"mean resnet18:shapes\?"):
        configs.load_config("resnet18:SHAPES")
    with pytest.raises(ValueError,
                       match=r"unknown config 'resnet5'\. Available configs: .*Did you mean resnet50"):
        configs.load_config("resnet5")


def test_the_configs_install_with_the_package(tmp_path):
    """A wheel (what `pip install .` installs) carries the config files as jaxzoo.configs, so a
    non-editable install finds them; no sys.path edit is involved."""
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy: building writes build/ and egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    for name in ("jaxzoo", "configs"):
        shutil.copytree(os.path.join(ROOT, name), source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel, = tmp_path.glob("jaxzoo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"jaxzoo/configs/{name}.py" for name in configs.config_files()}
    assert expected | {"jaxzoo/configs/default.py", "jaxzoo/configs/__init__.py"} <= names
    assert not any(n.startswith("configs/") for n in names)


def test_torchvision_weights_build_torchvisions_network_unless_the_config_says_otherwise():
    """init_from=torchvision for googlenet builds it with transform_input=True, as
    torchvision.models.googlenet(weights=...) does, and config.json records it."""
    from jaxzoo.train.state import with_pretrained_network

    config = configs.load_config("googlenet")
    config.init_from = "torchvision"
    built = with_pretrained_network(config, log=lambda *a: None)
    assert dict(built.model_kwargs) == {"transform_input": True}
    assert "transform_input" not in config.model_kwargs  # the caller's config is left as it was
    config.model_kwargs.transform_input = False  # the config's own choice stands
    assert with_pretrained_network(config).model_kwargs.transform_input is False
    resnet = configs.load_config("resnet34")
    resnet.init_from = "torchvision"
    assert with_pretrained_network(resnet) is resnet  # nothing to add
