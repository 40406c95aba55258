"""torchvision's pretrained weights by name: the table against the installed torchvision, the
download (a local HTTP server stands in for download.pytorch.org), torch's cache, the converted
cache, the errors, one loader and one head rule for every source, parity through
``jaxzoo.pretrained`` against torchvision's own builder loading the same file, the CLI."""
import copy
import hashlib
import http.server
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
import torch
import torchvision

import jaxzoo
from jaxzoo import convert
from jaxzoo.__main__ import main
from jaxzoo.convert import catalog, hub, loader, parity
from jaxzoo.convert._make_catalog import builder_differences, table_from_torchvision
from jaxzoo.weights import save_weights

from conftest import assert_parity, photo_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ a local download server

class Server:
    """An HTTP server on 127.0.0.1 serving ``files[path] = (bytes, mode)``; mode "full",
    "truncate" (announces the whole length, closes after half) or "slow" (a chunk every 50 ms).
    ``requests`` counts the requests per path."""

    def __init__(self):
        self.files, self.requests = {}, {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests[self.path] = server.requests.get(self.path, 0) + 1
                if self.path not in server.files:
                    self.send_error(404)
                    return
                data, mode = server.files[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if mode == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                elif mode == "slow":
                    try:
                        for start in range(0, len(data), 64 * 1024):
                            self.wfile.write(data[start:start + 64 * 1024])
                            time.sleep(0.05)
                    except (BrokenPipeError, ConnectionResetError):  # the client was killed
                        self.close_connection = True
                else:
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


def _torch_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def resnet18_file():
    """A random resnet18 state dict (randomized BatchNorm statistics) as torch.save bytes, and
    its file name with its true sha256 prefix, as torchvision names its files."""
    model = parity.torchvision_model("resnet18")
    parity.randomize_(model, seed=5)
    state = model.state_dict()
    data = _torch_bytes(state)
    return state, data, f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """torch's cache and the converted-weights cache in tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("JAXZOO_WEIGHTS_CACHE", str(tmp_path / "converted"))
    return tmp_path / "torch" / "hub" / "checkpoints", tmp_path / "converted"


def _point_entry(monkeypatch, model: str, name: str, url: str, file_name: str):
    """Make the table's ``model`` ``name`` entry download ``file_name`` from ``url``."""
    info = copy.deepcopy(catalog.MODELS[model])
    info["weights"][name].update(url=url, file_name=file_name,
                                 sha256_prefix=hub.hash_prefix(file_name))
    monkeypatch.setitem(catalog.MODELS, model, info)


def _assert_same_variables(ours, state):
    expected = convert.from_torch("resnet18", state)
    for (a_path, a), (b_path, b) in zip(jax.tree_util.tree_leaves_with_path(ours),
                                        jax.tree_util.tree_leaves_with_path(expected)):
        assert a_path == b_path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(a_path))


# ------------------------------------------------------------------ download and caches

def test_download_progress_then_cache_hits(server, resnet18_file, caches, monkeypatch, capfd):
    state, data, file_name = resnet18_file
    path = "/models/" + file_name
    server.files[path] = (data, "full")
    server.requests.pop(path, None)
    _point_entry(monkeypatch, "resnet18", "IMAGENET1K_V1", server.url(path), file_name)
    checkpoints, converted = caches

    model, variables = jaxzoo.pretrained("resnet18")
    err = capfd.readouterr().err
    assert server.requests[path] == 1
    assert f'Downloading: "{server.url(path)}" to {checkpoints / file_name}' in err
    assert file_name in err and "100%" in err  # tqdm's bar, named after the file
    assert (checkpoints / file_name).read_bytes() == data
    assert sorted(os.listdir(checkpoints)) == [file_name]  # no temporary file left
    assert f"cached the converted resnet18 weights (IMAGENET1K_V1) in {converted}" in err
    assert model.num_classes == 1000
    _assert_same_variables(variables, state)

    # Second load: the converted cache, without a request and without reading the .pth.
    def no_torch(*args, **kwargs):
        raise AssertionError("the .pth was read again")

    monkeypatch.setattr(loader, "load_state_dict", no_torch)
    _, again = jaxzoo.pretrained("resnet18")
    assert server.requests[path] == 1
    _assert_same_variables(again, state)
    monkeypatch.undo()

    # Without the converted cache: torch's cache, still without a request.
    _point_entry(monkeypatch, "resnet18", "IMAGENET1K_V1", server.url(path), file_name)
    monkeypatch.setenv("TORCH_HOME", str(checkpoints.parent.parent))
    monkeypatch.setenv("JAXZOO_WEIGHTS_CACHE", str(converted.parent / "elsewhere"))
    _, third = jaxzoo.pretrained("resnet18")
    assert server.requests[path] == 1
    _assert_same_variables(third, state)


def test_a_file_in_torch_cache_is_used_without_any_request(server, resnet18_file, caches,
                                                            monkeypatch):
    state, data, file_name = resnet18_file
    checkpoints, _ = caches
    checkpoints.mkdir(parents=True)
    (checkpoints / file_name).write_bytes(data)
    path = "/never/" + file_name
    _point_entry(monkeypatch, "resnet18", "IMAGENET1K_V1", server.url(path), file_name)
    loaded = convert.load("resnet18", "torchvision:IMAGENET1K_V1")
    assert path not in server.requests
    assert loaded.path == str(checkpoints / file_name)
    assert loaded.class_names == jaxzoo.predict.imagenet_class_names()
    _assert_same_variables(loaded.variables, state)


def test_hash_mismatch_is_an_error_and_leaves_no_file(server, resnet18_file, caches,
                                                       monkeypatch):
    _, data, _ = resnet18_file
    file_name = "resnet18-0123abcd.pth"  # not its hash
    path = "/bad/" + file_name
    server.files[path] = (data, "full")
    _point_entry(monkeypatch, "resnet18", "IMAGENET1K_V1", server.url(path), file_name)
    with pytest.raises(convert.WeightsHashMismatch) as e:
        jaxzoo.pretrained("resnet18", progress=False)
    message = str(e.value)
    checkpoints, _ = caches
    assert server.url(path) in message and str(checkpoints / file_name) in message
    assert hashlib.sha256(data).hexdigest() in message and "0123abcd" in message
    assert "--config.init_from=FILE" in message and "nothing was saved" in message
    assert os.listdir(checkpoints) == []


def test_truncated_download_leaves_no_file(server, resnet18_file, caches, monkeypatch):
    _, data, file_name = resnet18_file
    path = "/truncated/" + file_name
    server.files[path] = (data, "truncate")
    _point_entry(monkeypatch, "resnet18", "IMAGENET1K_V1", server.url(path), file_name)
    with pytest.raises(convert.WeightsUnavailable, match="nothing was saved") as e:
        jaxzoo.pretrained("resnet18", progress=False)
    assert server.url(path) in str(e.value) and "--config.init_from=FILE" in str(e.value)
    checkpoints, _ = caches
    assert os.listdir(checkpoints) == []


def test_killed_download_never_leaves_a_finished_looking_file(server, caches, tmp_path):
    data = np.random.default_rng(0).bytes(3 * 1024 * 1024)
    file_name = f"blob-{hashlib.sha256(data).hexdigest()[:8]}.bin"
    path = "/slow/" + file_name
    server.files[path] = (data, "slow")  # about 2.4 s to send
    checkpoints, _ = caches
    # hub.py loaded on its own in a child, killed in the middle of the download.
    script = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location("
              f"'hub', {hub.__file__!r}); hub = importlib.util.module_from_spec(spec); "
              f"spec.loader.exec_module(hub); hub.fetch({server.url(path)!r}, {file_name!r})")
    child = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (checkpoints.exists() and os.listdir(checkpoints)):
        time.sleep(0.05)
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = os.listdir(checkpoints)
    assert file_name not in left
    assert len(left) == 1 and left[0].startswith(file_name + ".") and left[0].endswith(".partial")
    # The next fetch downloads it again and checks it.
    server.files[path] = (data, "full")
    assert open(hub.fetch(server.url(path), file_name, progress=False), "rb").read() == data


def test_offline_fails_in_seconds_naming_url_path_and_alternative(caches, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = f"http://127.0.0.1:{closed}/models/resnet18-f37072fd.pth"
    _point_entry(monkeypatch, "resnet18", "IMAGENET1K_V1", url, "resnet18-f37072fd.pth")
    start = time.time()
    with pytest.raises(convert.WeightsUnavailable) as e:
        jaxzoo.pretrained("resnet18", progress=False)
    assert time.time() - start < 5
    checkpoints, _ = caches
    message = str(e.value)
    assert url in message and str(checkpoints / "resnet18-f37072fd.pth") in message
    assert "--config.init_from=FILE" in message and "offline" in message
    assert os.listdir(checkpoints) == []

    # A host that accepts the connection and never answers: the connect deadline, not minutes.
    monkeypatch.setenv("JAXZOO_CONNECT_TIMEOUT", "1.5")  # read at the call, after import
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/models/resnet18-f37072fd.pth"
        _point_entry(monkeypatch, "resnet18", "IMAGENET1K_V1", url, "resnet18-f37072fd.pth")
        start = time.time()
        with pytest.raises(convert.WeightsUnavailable, match="no answer within 1.5 s"):
            jaxzoo.pretrained("resnet18", progress=False)
        assert time.time() - start < 5


def test_unregistered_model_fails_before_any_download(caches, monkeypatch):
    model = next(m for m in catalog.models_with_weights() if m not in jaxzoo.list_models())
    monkeypatch.setattr(hub, "download", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(ValueError, match=f"unknown model '{model}'.*Available models"):
        jaxzoo.pretrained(model)
    with pytest.raises(ValueError, match="no pretrained weights for 'resnet19'.*resnet18"):
        jaxzoo.pretrained("resnet19")
    with pytest.raises(ValueError, match="IMAGENET1K_V1, IMAGENET1K_V2 and DEFAULT"):
        convert.weights_entry("resnet50", "IMAGENET1K_V3")


# ------------------------------------------------------------------ the table

def test_table_matches_installed_torchvision():
    assert table_from_torchvision() == catalog.MODELS
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    assert jaxzoo.predict.imagenet_class_names() == list(_IMAGENET_CATEGORIES)
    e = convert.weights_entry("resnet50")
    assert (e.name, e.file_name, e.sha256_prefix) == ("IMAGENET1K_V2", "resnet50-11ad3fa6.pth",
                                                      "11ad3fa6")
    assert (e.transform.resize_size, e.transform.crop_size, e.acc1) == (232, 224, 80.858)
    e = convert.weights_entry("inception_v3", "torchvision")
    assert (e.transform.resize_size, e.transform.crop_size) == (342, 299)
    assert e.model_kwargs() == {"transform_input": True, "aux_logits": True}
    assert convert.weights_entry("googlenet").model_kwargs() == {"transform_input": True,
                                                                 "aux_logits": False}
    # The builder arguments, checked against what torchvision's builders build, one of each kind.
    for model, name in [("googlenet", "IMAGENET1K_V1"), ("inception_v3", "IMAGENET1K_V1"),
                        ("vgg11", "IMAGENET1K_V1"), ("densenet121", "IMAGENET1K_V1"),
                        ("resnet50", "IMAGENET1K_V2"), ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1")]:
        entry = catalog.MODELS[model]["weights"][name]
        assert builder_differences(model, name, entry) == [], (model, name)
    for spelling in ("ResNet50_Weights.IMAGENET1K_V1", "torchvision:imagenet1k_v1",
                     "IMAGENET1K_V1"):
        assert convert.weights_entry("resnet50", spelling).name == "IMAGENET1K_V1"
    assert convert.weights_entry("resnet50", "torchvision").name == "IMAGENET1K_V2"
    # A model built elsewhere (a training config) without torchvision's transform_input: said.
    notes = loader._differences(jaxzoo.create_model("googlenet"),
                                convert.weights_entry("googlenet").model_kwargs(),
                                convert.weights_entry("googlenet"))
    assert len(notes) == 1 and "transform_input=True" in notes[0]
    wrong = copy.deepcopy(catalog.MODELS["googlenet"]["weights"]["IMAGENET1K_V1"])
    wrong["torch_kwargs"]["transform_input"] = False
    assert any("transform_input" in d for d in builder_differences("googlenet", "IMAGENET1K_V1",
                                                                   wrong))


def test_weights_command_lists_the_table_with_cache_state(caches, capsys):
    checkpoints, _ = caches
    assert main(["weights", "resnet50"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("resnet50 ")]
    assert rows == [["resnet50", "IMAGENET1K_V1", "76.130", "92.862", "97.8", "MB", "256/224",
                     "bilinear", "no"],
                    ["resnet50", "IMAGENET1K_V2", "(DEFAULT)", "80.858", "95.434", "97.8", "MB",
                     "232/224", "bilinear", "no"]]
    assert str(checkpoints) in out
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet50-11ad3fa6.pth").write_bytes(b"")
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.split()[:1] in
                [[m] for m in catalog.MODELS]]) == sum(
        len(m["weights"]) for m in catalog.MODELS.values())
    assert any(line.startswith("resnet50 ") and "IMAGENET1K_V2" in line and line.endswith("file")
               for line in out.splitlines())
    assert "inception_v3        IMAGENET1K_V1 (DEFAULT)" in out and "342/299 bilinear" in out


# ------------------------------------------------------------------ one loader, one head rule

def test_every_source_gets_the_same_new_head(resnet18_file, caches, tmp_path):
    """init_from a .pth, a converted directory and torchvision's weights by name: one rule."""
    from jaxzoo.configs.default import get_default_config
    from jaxzoo.train.state import initial_variables

    state, data, _ = resnet18_file
    checkpoints, _ = caches
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(data)  # as torchvision's file
    pth = tmp_path / "mine.pth"
    pth.write_bytes(data)
    directory = save_weights(str(tmp_path / "converted_dir"), "resnet18",
                             convert.from_torch("resnet18", state), num_classes=1000)
    config = get_default_config("resnet18")
    config.image_size = 32
    model = jaxzoo.create_model("resnet18", num_classes=5)
    rng = jax.random.PRNGKey(7)
    logs = []
    heads = {}
    for source in (str(pth), directory, "torchvision", "torchvision:IMAGENET1K_V1"):
        variables = initial_variables(config, model, 5, rng, source, log=logs.append)
        heads[source] = variables["params"]["fc"]
        np.testing.assert_array_equal(variables["params"]["layer3_1"]["conv2"]["kernel"],
                                      state["layer3.1.conv2.weight"].numpy().transpose(2, 3, 1, 0))
    for source, head in heads.items():
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(head[leaf], heads[str(pth)][leaf], err_msg=source)
    kernel = np.asarray(heads[str(pth)]["kernel"])
    bound = 1 / np.sqrt(512)  # torch's nn.Linear(512, 5)
    assert kernel.shape == (512, 5) and np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.9 * bound
    assert abs(kernel.std() - bound / np.sqrt(3)) < 0.1 * bound  # uniform, not normal
    assert all("missing_keys=['fc.bias', 'fc.weight']" in line for line in logs)
    other = initial_variables(config, model, 5, jax.random.PRNGKey(8), str(pth), log=logs.append)
    assert not np.array_equal(other["params"]["fc"]["kernel"], kernel)  # it is the rng's
    with pytest.raises(FileNotFoundError, match="does not exist.*'torchvision:IMAGENET1K_V1'"):
        initial_variables(config, model, 5, rng, str(tmp_path / "nope.pth"))


def test_input_conv_adapted_as_timm_does(resnet18_file):
    state, _, _ = resnet18_file
    weight = state["conv1.weight"]  # (64, 3, 7, 7)

    def timm_formula(in_chans, w):  # timm.models.adapt_input_conv for a 3-channel kernel
        if in_chans == 1:
            return w.sum(dim=1, keepdim=True)
        repeat = -(-in_chans // 3)
        return w.repeat(1, repeat, 1, 1)[:, :in_chans] * (3 / float(in_chans))

    try:
        from timm.models import adapt_input_conv as timm_adapt
    except ImportError:
        timm_adapt = None
    for in_channels in (1, 2, 5):
        variables, report = convert.load_torch("resnet18", state, in_channels=in_channels)
        ours = np.asarray(variables["params"]["conv1"]["kernel"]).transpose(3, 2, 0, 1)
        np.testing.assert_allclose(ours, timm_formula(in_channels, weight).numpy(), rtol=1e-6,
                                   atol=1e-7)
        if timm_adapt is not None:
            np.testing.assert_allclose(ours, timm_adapt(in_channels, weight.clone()).numpy(),
                                       rtol=1e-6, atol=1e-7)
        assert report.adapted_keys == ("conv1.weight",)
        assert f"conv1.weight adapted from 3 to {in_channels} input channels" in str(report)
    _, report = convert.load_torch("resnet18", state)
    assert report.adapted_keys == () and str(report) == "<All keys matched successfully>"


# ------------------------------------------------------------------ parity through pretrained

def _families() -> list[tuple[str, int]]:
    """(model, input size): googlenet, inception_v3, resnet18 and mobilenet_v3_small, and the
    smallest registered model of each other family that has torchvision weights."""
    chosen = [("googlenet", 64), ("inception_v3", 75), ("resnet18", 64),
              ("mobilenet_v3_small", 64)]
    registered = set(jaxzoo.list_models())
    for candidates in (["alexnet"], ["squeezenet1_1"], ["densenet121"], ["shufflenet_v2_x0_5"],
                       ["mnasnet0_5"], ["efficientnet_b0"], ["regnet_x_400mf"],
                       ["convnext_tiny"], ["vgg11"]):
        found = [m for m in candidates if m in registered]
        if found:
            chosen.append((found[0], 64))
    return chosen


def _write_torchvision_file(model: str, checkpoints) -> torch.nn.Module:
    """Random weights (randomized BatchNorm statistics) for the network torchvision builds for
    ``model``'s DEFAULT weights, saved in torch's cache under the published file name."""
    entry = convert.weights_entry(model)
    net = torchvision.models.get_model(model, weights=None, num_classes=entry.num_classes,
                                       **entry.torch_kwargs)
    parity.randomize_(net, seed=11)
    state = net.state_dict()
    if entry.key_rewrites:  # densenet's files have the old key names; the builder renames them
        old = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.")
        state = {old.sub(r"\1.\2.", k): v for k, v in state.items()
                 if not ("denselayer" in k and k.endswith("num_batches_tracked"))}
        assert any(".norm.1." in k for k in state)
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save(state, checkpoints / entry.file_name)
    return net


@pytest.mark.parametrize("model,size", _families())
def test_pretrained_parity_with_torchvision_builder(model, size, caches):
    checkpoints, _ = caches
    _write_torchvision_file(model, checkpoints)
    # torchvision's own builder for the weights, reading the same file from torch's cache.
    theirs = torchvision.models.get_model(model, weights="DEFAULT").eval()
    jax_model, variables = jaxzoo.pretrained(model)
    entry = convert.weights_entry(model)
    if model in ("googlenet", "inception_v3"):
        assert jax_model.transform_input and theirs.transform_input
        aux = set(entry.aux_modules)
        assert bool(aux & set(variables["params"])) == entry.keeps_aux  # as torchvision
        assert all((getattr(theirs, m) is not None) == entry.keeps_aux for m in aux)
    images = photo_batch(size)
    with jax.default_matmul_precision("highest"):
        ours = jax.jit(lambda v, x: jax_model.apply(v, x, train=False))(variables, images)
    assert_parity(ours, parity.torch_forward(theirs, images), f"{model} logits")
    if model == "inception_v3":  # its auxiliary head dropped on request, as torchvision does
        jax_model, variables = jaxzoo.pretrained(model, aux_logits=False, num_classes=7)
        assert not jax_model.aux_logits and "AuxLogits" not in variables["params"]
        assert variables["params"]["fc"]["kernel"].shape == (2048, 7)
        # torchvision's builder refuses aux_logits=False with weights; its googlenet code path
        # deletes the heads after loading, which this does for inception_v3.
        theirs = parity.torchvision_pretrained_model(model, aux_logits=False)
        assert theirs.AuxLogits is None and theirs.transform_input




# ------------------------------------------------------------------ predictor and CLI

def test_predict_cli_with_pretrained_weights_and_their_transform(resnet18_file, caches,
                                                                  monkeypatch, tmp_path, capsys):
    from PIL import Image
    from skimage import data as skdata
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    from jaxzoo.predict import Predictor

    state, data, _ = resnet18_file
    checkpoints, _ = caches
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(data)
    info = copy.deepcopy(catalog.MODELS["resnet18"])
    # Another transform than evaluation's size / 0.875 bilinear (and small, to compile fast).
    info["weights"]["IMAGENET1K_V1"]["transform"].update(resize_size=80, crop_size=64,
                                                         interpolation="bicubic")
    monkeypatch.setitem(catalog.MODELS, "resnet18", info)
    photo = tmp_path / "cat.png"
    Image.fromarray(skdata.chelsea()).save(photo)

    predictor = Predictor.from_pretrained("resnet18", "IMAGENET1K_V1")
    assert (predictor.image_size, predictor.resize_size, predictor.interpolation) == (
        64, 80, "bicubic")
    theirs = ImageClassification(crop_size=64, resize_size=80,
                                 interpolation=InterpolationMode.BICUBIC)(
        torch.from_numpy(skdata.chelsea()).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    ours = predictor.preprocess(str(photo))
    assert ours.shape == theirs.shape == (64, 64, 3)
    assert np.abs(ours - theirs).mean() < 0.03  # normalized units; the resize kernels differ a bit
    default = Predictor(predictor.model_name, predictor.variables, predictor.class_names, 64)
    assert np.abs(default.preprocess(str(photo)) - theirs).mean() > 0.1  # Resize(73) is not it

    torch_model = torchvision.models.resnet18().eval()
    torch_model.load_state_dict(state)
    best = int(parity.torch_forward(torch_model, ours[None]).argmax())
    for argv in (["--pretrained", str(photo)], ["--pretrained", "IMAGENET1K_V1", str(photo)],
                 ["--pretrained", "DEFAULT", str(photo), "--json"]):
        assert main(["predict", "--model", "resnet18", *argv]) == 0
        out = capsys.readouterr().out
        assert jaxzoo.predict.imagenet_class_names()[best] in out, (argv, out)
    assert main(["predict", "--model", "resnet18", "--pretrained", "IMAGENET1K_V9",
                 str(photo)]) == 1  # a user error; 2 is argparse's, for usage
    assert "has no weights named 'IMAGENET1K_V9'" in capsys.readouterr().err


def test_check_cli_with_pretrained(resnet18_file, caches, capsys):
    _, data, _ = resnet18_file
    checkpoints, _ = caches
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(data)
    assert main(["check", "resnet18", "--pretrained", "--size", "64", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "torchvision's DEFAULT weights" in out and out.strip().endswith("PASS")
    with pytest.raises(SystemExit) as both:  # argparse: the two are mutually exclusive
        main(["check", "resnet18", "--pretrained", "--weights", "x.pth"])
    assert both.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["evaluate", "--model", "resnet18", "--pretrained"]) == 1  # a user error
    assert "say which dataset" in capsys.readouterr().err


# ------------------------------------------------------------------ datasets offline

def test_tfds_dataset_offline_fails_in_seconds():
    from jaxzoo.data import DatasetUnavailable, tfds_source

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]

    class Builder:  # what prepare() reads of a TFDS builder
        data_dir = "/tmp/tfds/flowers"
        url_infos = {f"http://127.0.0.1:{closed}/example_images/flower_photos.tgz": None}

        def is_prepared(self):
            return False

        def download_and_prepare(self):
            pytest.fail("TFDS was asked to download from an unreachable host")

    start = time.time()
    with pytest.raises(DatasetUnavailable) as e:
        tfds_source.prepare(Builder(), "tf_flowers")
    assert time.time() - start < 5
    message = str(e.value)
    assert "cannot reach the download host: 127.0.0.1" in message
    assert "folder:PATH" in message and "'shapes'" in message and "--config.data_dir" in message
