"""The converted-weights cache records the file each conversion came from and converts again
when that file changes; an entry whose file is gone is used only when its hash was torchvision's
published one (issue 24, case 3). torch's cache is faked with random mobilenet_v3_small weights,
as tests/test_pretrained.py does with resnet18; nothing is downloaded."""
import copy
import hashlib
import io
import json
import os

import numpy as np
import pytest
import torch
import torchvision

import jaxzoo
from jaxzoo.convert import catalog, hub, loader

MODEL = "mobilenet_v3_small"


def _random_file(seed: int) -> tuple[bytes, np.ndarray]:
    """torch.save bytes of a random mobilenet_v3_small, and its classifier's last weight."""
    torch.manual_seed(seed)
    state = torchvision.models.mobilenet_v3_small().state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), state["classifier.3.weight"].numpy()


def _head(variables) -> np.ndarray:
    """The classifier's last weight of ``variables``, in torch's (out, in) layout."""
    return np.asarray(variables["params"]["classifier_3"]["kernel"]).T


@pytest.fixture
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("JAXZOO_WEIGHTS_CACHE", str(tmp_path / "converted"))

    def offline(url, *args, **kwargs):
        raise hub.WeightsUnavailable(f"offline: would download {url}")

    monkeypatch.setattr(hub, "download", offline)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


def _name_file(monkeypatch, file_name: str):
    """The table's DEFAULT entry of MODEL under ``file_name`` (its hash prefix in the name)."""
    info = copy.deepcopy(catalog.MODELS[MODEL])
    info["weights"][info["default"]].update(file_name=file_name,
                                            sha256_prefix=hub.hash_prefix(file_name))
    monkeypatch.setitem(catalog.MODELS, MODEL, info)


def test_a_changed_source_file_is_converted_again_and_a_gone_unverified_one_is_not_served(
        caches, capfd):
    entry = catalog.weights_entry(MODEL, "DEFAULT")
    path = caches / entry.file_name  # torchvision's name, another file's bytes
    first, first_head = _random_file(0)
    path.write_bytes(first)
    _, variables = jaxzoo.pretrained(MODEL)
    np.testing.assert_array_equal(_head(variables), first_head)
    first_err = capfd.readouterr().err

    fixed, fixed_head = _random_file(1)  # the file is replaced: the conversion follows it
    path.write_bytes(fixed)
    _, variables = jaxzoo.pretrained(MODEL)
    np.testing.assert_array_equal(_head(variables), fixed_head)
    assert "is not the file the converted weights in" in capfd.readouterr().err
    assert f"note: {path} is not the file torchvision publishes for " in first_err
    record = json.loads((caches.parent.parent.parent / "converted" / entry.file_name[:-4]
                         / "source.json").read_text())
    assert record["sha256"] == hashlib.sha256(fixed).hexdigest() and not record["verified"]
    assert record["size"] == len(fixed) and record["path"] == str(path)

    os.remove(path)  # gone, and never verified: not served from the cache
    with pytest.raises(hub.WeightsUnavailable, match="offline: would download"):
        jaxzoo.pretrained(MODEL)


def test_a_verified_conversion_is_served_after_its_file_is_gone(caches, monkeypatch, capfd):
    data, head = _random_file(2)
    file_name = f"{MODEL}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    _name_file(monkeypatch, file_name)
    (caches / file_name).write_bytes(data)
    jaxzoo.pretrained(MODEL)
    assert "is not the file torchvision publishes" not in capfd.readouterr().err
    os.remove(caches / file_name)
    monkeypatch.setattr(loader, "load_state_dict", lambda *a: pytest.fail("read a .pth"))
    _, variables = jaxzoo.pretrained(MODEL)  # from the cache: no file, no download
    np.testing.assert_array_equal(_head(variables), head)


def test_random_bytes_in_torch_cache_give_our_message_not_torchs_advice(caches):
    entry = catalog.weights_entry(MODEL, "DEFAULT")
    (caches / entry.file_name).write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError) as e:
        jaxzoo.pretrained(MODEL)
    message = str(e.value)
    assert f"could not read {caches / entry.file_name} as a PyTorch state dict" in message
    assert "weights_only" not in message and "\n" not in message
