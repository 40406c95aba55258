"""The torchvision converter: round trips, head swaps, every error it promises, and its CLIs."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import jaxzoo
from jaxzoo import convert
from jaxzoo.convert import parity
from jaxzoo.weights import load_weights

from conftest import assert_parity, compiled_apply, photo_batch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def resnet18_state():
    torch_model = parity.torchvision_model("resnet18")
    parity.randomize_(torch_model, seed=3)
    return torch_model.state_dict()


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"])
def test_round_trip_reproduces_the_state_dict(name):
    state = parity.torchvision_model(name).state_dict()
    back = convert.to_torch(name, convert.from_torch(name, state))
    assert set(back) == set(state)
    for key, value in state.items():
        assert back[key].shape == tuple(value.shape), key
        if key.endswith("num_batches_tracked"):
            assert back[key].dtype == np.int64
        else:
            np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)


def test_exported_state_dict_loads_strictly_into_torchvision(resnet18_state):
    variables = convert.from_torch("resnet18", resnet18_state)
    exported = {k: torch.from_numpy(v) for k, v in convert.to_torch("resnet18", variables).items()}
    fresh = parity.torchvision_model("resnet18")
    assert str(fresh.load_state_dict(exported, strict=True)) == "<All keys matched successfully>"
    images = photo_batch(64)
    assert_parity(parity.torch_forward(fresh, images),
                  compiled_apply(jaxzoo.create_model("resnet18"))(variables, images))


def test_new_num_classes_reinitializes_the_head_and_reports_it(resnet18_state):
    variables, report = convert.load_torch("resnet18", resnet18_state, num_classes=5)
    assert report.missing_keys == ["fc.bias", "fc.weight"]
    assert report.unexpected_keys == []
    assert "missing_keys=['fc.bias', 'fc.weight']" in str(report)
    assert variables["params"]["fc"]["kernel"].shape == (512, 5)
    bound = 1 / np.sqrt(512)  # torch's nn.Linear(512, 5) initialization
    assert 0 < np.abs(variables["params"]["fc"]["kernel"]).max() <= bound
    np.testing.assert_array_equal(variables["params"]["layer4_1"]["conv2"]["kernel"],
                                  resnet18_state["layer4.1.conv2.weight"].numpy().transpose(2, 3, 1, 0))
    full, report = convert.load_torch("resnet18", resnet18_state)
    assert str(report) == "<All keys matched successfully>"
    assert full["params"]["fc"]["kernel"].shape == (512, 1000)


def test_unknown_model_name(resnet18_state):
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*Available models: .*resnet18"):
        convert.from_torch("resnet19", resnet18_state)


def test_wrong_shaped_tensor_is_named(resnet18_state):
    state = dict(resnet18_state)
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    with pytest.raises(ValueError, match=r"shape mismatch:\s+layer2.0.conv1.weight: checkpoint "
                                         r"\(128, 64, 5, 5\), model expects \(128, 64, 3, 3\)"):
        convert.from_torch("resnet18", state)


def test_missing_and_unexpected_keys_are_all_listed(resnet18_state):
    state = dict(resnet18_state)
    del state["layer3.1.bn2.running_var"], state["bn1.weight"]
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError) as excinfo:
        convert.from_torch("resnet18", state)
    message = str(excinfo.value)
    assert "missing keys (2): bn1.weight, layer3.1.bn2.running_var" in message
    assert "unexpected keys (1): extra.weight" in message
    # Non-strict loads what matches and reports the rest, as torch does.
    variables, report = convert.load_torch("resnet18", state, strict=False)
    assert report.missing_keys == ["bn1.weight", "layer3.1.bn2.running_var"]
    assert report.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(variables["batch_stats"]["layer3_1"]["bn2"]["var"], np.ones(256))


def test_weights_from_a_different_model_are_rejected(resnet18_state):
    with pytest.raises(ValueError, match=r"(?s)does not fit resnet34.*missing keys \(80\)"):
        convert.from_torch("resnet34", resnet18_state)


def test_truncated_file_is_a_clear_error(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="could not read .*resnet18.pth.*truncated"):
        convert.from_torch("resnet18", str(path))


def test_a_file_that_is_not_a_state_dict_is_a_clear_error(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="expected a state dict.*got a Tensor"):
        convert.from_torch("resnet18", str(path))
    with pytest.raises(FileNotFoundError, match="not found"):
        convert.from_torch("resnet18", str(tmp_path / "nothing.pth"))


def test_wrapped_and_data_parallel_checkpoints_load(resnet18_state):
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in resnet18_state.items()}}
    variables = convert.from_torch("resnet18", wrapped)
    np.testing.assert_array_equal(variables["params"]["bn1"]["scale"],
                                  resnet18_state["bn1.weight"].numpy())


def _run_cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "jaxzoo", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


def test_convert_cli_writes_weights_that_load_back(tmp_path, resnet18_state):
    pth = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, pth)
    out = tmp_path / "converted"
    result = _run_cli("convert", "resnet18", str(pth), "--out", str(out), "--num-classes", "5")
    assert result.returncode == 0, result.stderr
    assert "missing_keys=['fc.bias', 'fc.weight']" in result.stdout
    variables, meta = load_weights(str(out))
    assert meta["model"] == "resnet18" and meta["num_classes"] == 5
    np.testing.assert_array_equal(variables["params"]["layer1_0"]["conv1"]["kernel"],
                                  resnet18_state["layer1.0.conv1.weight"].numpy().transpose(2, 3, 1, 0))
    # Refuses to overwrite.
    again = _run_cli("convert", "resnet18", str(pth), "--out", str(out))
    assert again.returncode == 1 and "already holds weights" in again.stderr


def test_check_cli_reports_parity(tmp_path, resnet18_state):
    pth = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, pth)
    result = _run_cli("check", "resnet18", "--weights", str(pth), "--size", "64", "--batch", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "top-1 agreement            100%" in result.stdout
    relative = float(result.stdout.split("relative difference")[1].split()[0])
    assert relative <= 1e-4
    assert result.stdout.strip().endswith("PASS")


def test_list_cli_shows_models_and_counts(monkeypatch, capsys):
    result = _run_cli("list", "resnet3*", "mobilenet_v3_*")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(lines) == {"resnet34", "resnet34_v2", "mobilenet_v3_large", "mobilenet_v3_small"}
    assert "21,797,672" in lines["resnet34"] and "torchvision.models.resnet34" in lines["resnet34"]
    assert "2,542,856" in lines["mobilenet_v3_small"]
    nothing = _run_cli("list", "resnet9*")
    assert nothing.returncode == 1 and "error: no model matches resnet9*" in nothing.stderr
    prefix = _run_cli("list", "wide_resnet")  # a plain word matches as a prefix
    assert [line.split()[0] for line in prefix.stdout.splitlines()[1:]] == [
        "wide_resnet101_2", "wide_resnet50_2"]
    # Without a pattern, every registered model (each family's tests check the counts; tracing
    # all of them here would take half a minute).
    from jaxzoo.__main__ import main
    from jaxzoo.models import registry

    monkeypatch.setattr(registry, "variable_shapes", lambda model, size: {"params": {}})
    assert main(["list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == jaxzoo.list_models()
