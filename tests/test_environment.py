"""Environment variables are read when they are used (set after import, they take effect), each
through ``jaxzoo.environment``; the small shared facts come from ``jaxzoo.imagenet``."""
from pathlib import Path

import jax
import pytest

from jaxzoo import environment, host_memory, imagenet, runtime
from jaxzoo.convert import loader
from jaxzoo.data import manifest, tfds_source


def test_cache_folders_follow_variables_set_after_import(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXZOO_WEIGHTS_CACHE", raising=False)
    monkeypatch.delenv("JAXZOO_FOLDER_CACHE", raising=False)
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert loader.weights_cache_dir() == str(tmp_path / "xdg" / "jaxzoo" / "weights")
    assert manifest.cache_root() == tmp_path / "xdg" / "jaxzoo" / "folders"
    assert environment.torch_home() == str(tmp_path / "xdg" / "torch")  # torch's own rule
    monkeypatch.setenv("JAXZOO_WEIGHTS_CACHE", str(tmp_path / "weights"))
    monkeypatch.setenv("JAXZOO_FOLDER_CACHE", str(tmp_path / "folders"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert loader.weights_cache_dir() == str(tmp_path / "weights")
    assert manifest.cache_root() == Path(tmp_path / "folders")
    from jaxzoo.convert import hub

    assert hub.checkpoints_dir() == str(tmp_path / "torch" / "hub" / "checkpoints")


def test_torch_home_is_torchs(monkeypatch, tmp_path):
    torch_hub = pytest.importorskip("torch.hub")
    for env in ({"TORCH_HOME": str(tmp_path / "t")}, {"XDG_CACHE_HOME": str(tmp_path / "x")}, {}):
        for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert environment.torch_home() == torch_hub._get_torch_home()


def test_compilation_cache_setting_then_variable_then_default(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXZOO_COMPILATION_CACHE", raising=False)
    assert environment.compilation_cache() == str(Path.home() / ".cache" / "jaxzoo" / "xla")
    monkeypatch.setenv("JAXZOO_COMPILATION_CACHE", str(tmp_path))
    assert environment.compilation_cache() == str(tmp_path)
    assert environment.compilation_cache("elsewhere") == "elsewhere"
    monkeypatch.setenv("JAXZOO_COMPILATION_CACHE", "off")
    assert environment.compilation_cache() is None
    assert environment.compilation_cache("none") is None


def test_lowering_override_is_read_when_the_model_is_built(monkeypatch):
    monkeypatch.delenv("JAXZOO_LOWERING", raising=False)
    cpus = jax.devices("cpu")
    assert runtime.lowering_for(cpus) == "cpu"
    monkeypatch.setenv("JAXZOO_LOWERING", "xla")
    assert runtime.lowering_for(cpus) == "xla"
    assert runtime.lowering_for(cpus, "cpu") == "cpu"  # an explicit choice wins
    monkeypatch.setenv("JAXZOO_LOWERING", "gpu")
    with pytest.raises(ValueError, match="gpu"):
        runtime.lowering_for(cpus)


def test_malloc_setting_is_read_at_the_call(monkeypatch):
    monkeypatch.setenv("JAXZOO_MALLOC", "plenty")
    with pytest.raises(ValueError, match="JAXZOO_MALLOC must be one of system, reuse, got 'plenty'"):
        host_memory.keep_freed_memory()
    monkeypatch.setenv("JAXZOO_MALLOC", "system")
    assert host_memory.keep_freed_memory() is False  # glibc's own settings: nothing changed


def test_connect_timeout_is_read_at_the_call(monkeypatch):
    monkeypatch.delenv("JAXZOO_CONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("JAXZOO_READ_TIMEOUT", raising=False)
    assert (environment.connect_timeout(), environment.read_timeout()) == (10.0, 60.0)
    monkeypatch.setenv("JAXZOO_CONNECT_TIMEOUT", "ten")
    with pytest.raises(ValueError, match="JAXZOO_CONNECT_TIMEOUT must be a number of seconds, "
                                         "got 'ten'"):
        environment.connect_timeout()
    # The dataset hosts' reachability check and the weights download take it at each call.
    monkeypatch.setenv("JAXZOO_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setattr("urllib.request.getproxies", dict)
    seen = []
    monkeypatch.setattr(tfds_source, "_connect",
                        lambda host, port, timeout: seen.append((host, port, timeout)) or "refused")
    reason = tfds_source.unreachable_download_hosts(["https://data.example.org/set.zip"])
    assert reason == "data.example.org: refused" and seen == [("data.example.org", 443, 0.5)]


def test_coordinator_variables(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert environment.coordinator() == (None, None, None)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "host0:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "0")
    assert environment.coordinator() == ("host0:1234", 2, 0)
    monkeypatch.setenv("JAX_PROCESS_ID", "first")
    with pytest.raises(ValueError, match="JAX_PROCESS_ID must be an integer, got 'first'"):
        environment.coordinator()


def test_evaluation_transform_facts():
    assert imagenet.eval_resize_size(224) == 256 and imagenet.eval_resize_size(299) == 341
    assert imagenet.eval_resize_size(224, 232) == 232
    assert imagenet.check_interpolation("bicubic") == "bicubic"
    with pytest.raises(ValueError, match="interpolation must be one of bilinear, bicubic, nearest"):
        imagenet.check_interpolation("lanczos")
