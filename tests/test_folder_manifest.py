"""The folder check remembers its verdicts: a later start checks only new or changed files, the
cache can be found and deleted, processes split the check, and a file that goes bad after its
check is replaced at read time without changing the number of steps."""
import json
import os
import subprocess
import sys
import time
import warnings

import pytest
from PIL import Image

from jaxzoo.data import folder, get_datasets, manifest


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXZOO_FOLDER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tree(root, per_class=6):
    """red/ and blue/ of small JPEGs and PNGs, plus one empty file."""
    for label, name in enumerate(["blue", "red"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (16, 12), (200 * label, 10 * i, 200 * (1 - label))).save(
                root / name / f"{i}.{'jpg' if i % 2 else 'png'}")
    (root / "red" / "empty.jpg").write_bytes(b"")
    return root


def _load(root, **kwargs):
    kwargs = {"image_size": 8, "global_batch_size": 2, "eval_batch_size": 2, "process_index": 0,
              "process_count": 1, "augment": False, "val_fraction": 0.25, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_datasets(f"folder:{root}", **kwargs)


def _paths(data, split="train"):
    ds = data._source.train(0) if split == "train" else data._source.val()
    return sorted(e["path"].decode() for e in ds.as_numpy_iterator())


def test_a_second_start_checks_only_new_and_changed_files(tmp_path, cache):
    root = _tree(tmp_path / "photos")
    first = _load(root)
    assert (folder.last_check.listed, folder.last_check.checked) == (13, 13)
    assert first.skipped == {"empty": 1}
    stored = manifest.cache_dir(root) / manifest.MANIFEST
    assert stored.is_file() and stored.parent.parent == cache
    assert (stored.parent / "root.txt").read_text().strip() == str(root)
    assert not [p for p in stored.parent.iterdir() if p.name.endswith(".tmp")]

    second = _load(root)
    assert (folder.last_check.cached, folder.last_check.checked) == (13, 0)
    assert (second.class_names, second.num_train, second.num_val, second.skipped) == (
        first.class_names, first.num_train, first.num_val, first.skipped)
    assert _paths(second) == _paths(first) and _paths(second, "val") == _paths(first, "val")

    # A changed file (new size), a new file and a removed one: two checks.
    Image.new("RGB", (20, 20), (1, 2, 3)).save(root / "blue" / "0.png")
    Image.new("RGB", (16, 12), (9, 9, 9)).save(root / "blue" / "new.png")
    os.remove(root / "red" / "1.jpg")
    third = _load(root)
    assert (folder.last_check.listed, folder.last_check.checked) == (13, 2)
    assert third.num_train + third.num_val == 12
    # The same bytes again under a new mtime: checked again, not trusted.
    os.utime(root / "blue" / "new.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    _load(root)
    assert folder.last_check.checked == 1

    # Deleting the cache folder costs one full check, nothing else.
    import shutil

    shutil.rmtree(cache)
    _load(root)
    assert folder.last_check.checked == 13 and stored.is_file()


def test_the_cache_follows_the_environment_at_call_time_and_survives_damage(
        tmp_path, monkeypatch):
    root = _tree(tmp_path / "photos")
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("JAXZOO_FOLDER_CACHE", str(elsewhere))
    _load(root)
    stored = elsewhere / manifest.cache_dir(root).name / manifest.MANIFEST
    assert stored.is_file()
    stored.write_bytes(stored.read_bytes()[:100])  # a damaged manifest: a warning, a full check
    with pytest.warns(UserWarning, match="ignoring the folder check's manifest"):
        data = get_datasets(f"folder:{root}", image_size=8, global_batch_size=2,
                            process_index=0, process_count=1, val_fraction=0.25)
    assert folder.last_check.checked == 13 and data.num_train + data.num_val == 12
    _load(root)
    assert folder.last_check.checked == 0  # rewritten whole

    (tmp_path / "a_file").write_text("not a folder")  # unwritable, even for root
    monkeypatch.setenv("JAXZOO_FOLDER_CACHE", str(tmp_path / "a_file" / "cache"))
    with pytest.warns(UserWarning, match="could not write the folder check's manifest"):
        get_datasets(f"folder:{root}", image_size=8, global_batch_size=2, process_index=0,
                     process_count=1, val_fraction=0.25)


def test_max_image_pixels_changes_need_no_new_check_of_good_files(tmp_path):
    root = _tree(tmp_path / "photos")
    Image.new("RGB", (40, 40)).save(root / "red" / "big.png")
    assert _load(root).skipped == {"empty": 1}
    assert folder.last_check.checked == 14
    small = _load(root, max_image_pixels=1000)  # big.png (1600 px) now too large: no check
    assert small.skipped == {"empty": 1, "too_large": 1} and folder.last_check.checked == 0
    _load(root)  # and back: the manifest kept big.png's verdict
    assert folder.last_check.checked == 0

    root2 = _tree(tmp_path / "photos2")
    Image.new("RGB", (40, 40)).save(root2 / "red" / "big.png")
    assert _load(root2, max_image_pixels=1000).skipped == {"empty": 1, "too_large": 1}
    assert folder.last_check.checked == 14
    assert _load(root2).skipped == {"empty": 1}  # only checked while too large: checked now
    assert folder.last_check.checked == 1


_PROCESS = """
import json, sys, warnings
warnings.simplefilter("ignore")
from jaxzoo.data import folder, get_datasets
index, count = int(sys.argv[2]), int(sys.argv[3])
data = get_datasets("folder:" + sys.argv[1], image_size=8, global_batch_size=2,
                    eval_batch_size=2, process_index=index, process_count=count,
                    augment=False, val_fraction=0.25)
source = data._source
print(json.dumps({
    "classes": data.class_names, "num_train": data.num_train, "num_val": data.num_val,
    "skipped": data.skipped, "stats": folder.last_check.__dict__,
    "train": [[e["path"].decode(), int(e["label"])] for e in source.train(0).as_numpy_iterator()],
    "val": [[e["path"].decode(), int(e["label"])] for e in source.val().as_numpy_iterator()]}))
"""


def _two_processes(root, env):
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, str(root), str(i), "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


@pytest.mark.slow
def test_two_processes_split_the_check_and_agree_on_files_labels_and_order(tmp_path, cache):
    root = _tree(tmp_path / "photos", per_class=20)
    env = {**os.environ, "JAXZOO_FOLDER_CACHE": str(cache)}
    outs = _two_processes(root, env)
    for out in outs:  # each read and decoded its half of the 41 files, received the other half
        assert out["stats"]["checked"] in (20, 21) and out["stats"]["exchange"] == "files"
        assert out["stats"]["checked"] + out["stats"]["received"] == 41
    assert sum(out["stats"]["checked"] for out in outs) == 41
    for key in ("classes", "num_train", "num_val", "skipped"):
        assert outs[0][key] == outs[1][key], key
    assert outs[0]["skipped"] == {"empty": 1}
    # The processes' shares are disjoint and together the single process's data, same labels.
    single = _load(root)
    assert folder.last_check.checked == 0  # the two processes' manifest serves it
    for split in ("train", "val"):
        together = sorted(tuple(x) for out in outs for x in out[split])
        ds = single._source.train(0) if split == "train" else single._source.val()
        alone = sorted((e["path"].decode(), int(e["label"])) for e in ds.as_numpy_iterator())
        assert together == alone, split
    # A second start of both: nothing to check, nothing exchanged, the same shares in order.
    again = _two_processes(root, env)
    for out, before in zip(again, outs):
        assert out["stats"]["checked"] == 0 and out["stats"]["exchange"] == ""
        assert out["train"] == before["train"] and out["val"] == before["val"]


def test_a_process_whose_partner_never_checks_gets_a_clear_error(tmp_path, cache):
    root = _tree(tmp_path / "photos")
    files = sorted(root.rglob("*.*"))
    paths = [str(p) for p in files]
    sizes, mtimes = [p.stat().st_size for p in files], [p.stat().st_mtime_ns for p in files]
    with pytest.raises(TimeoutError, match=r"process 0 of 2 waited 1 s .*process\(es\) \[1\].*"
                                           r"JAXZOO_FOLDER_CACHE"):
        manifest.check_folder(str(root), paths, sizes, mtimes,
                              lambda paths: [(None, True, 1)] * len(paths),
                              checker="test", max_pixels=10**6, process_index=0,
                              process_count=2, timeout=1)


def test_a_file_that_goes_bad_after_the_check_is_replaced_and_the_epoch_keeps_its_steps(tmp_path):
    root = _tree(tmp_path / "photos", per_class=12)
    data = _load(root, global_batch_size=4, eval_batch_size=4, augment=True)
    steps, val_steps = data.steps_per_epoch, data.val_steps
    clean = [b["label"] for b in data.train_batches(0)]
    assert len(clean) == steps == 4
    train_paths, val_paths = _paths(data), _paths(data, "val")
    with open(train_paths[0], "r+b") as f:  # overwritten in place: garbage after the header
        f.seek(30)
        f.write(b"\0garbage" * 40)
    os.remove(train_paths[1])
    os.remove(val_paths[0])
    def epoch():
        return list(data.train_batches(0)), list(data.val_batches())

    with pytest.warns(UserWarning, match="could not be read .*takes its place") as caught:
        damaged, val = epoch()
    assert len(damaged) == steps  # no exception, no step lost
    assert all(b["image"].shape == (4, 8, 8, 3) for b in damaged)
    replaced = [str(w.message) for w in caught if "could not be read" in str(w.message)]
    assert len([m for m in replaced if "first example" in m]) == 2, replaced
    assert len([m for m in replaced if "padding" in m]) == 1, replaced
    assert len(val) == val_steps and sum(int(b["mask"].sum()) for b in val) == data.num_val - 1
    # The run goes on from a later step as well.
    assert len(list(data.train_batches(0, start_step=1))) == steps - 1


_DISTRIBUTED = """
import json, os, sys, warnings
warnings.simplefilter("ignore")
import jax
jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=2,
                           process_id=int(sys.argv[3]))
from jaxzoo.data import folder, get_datasets

def start():
    data = get_datasets("folder:" + sys.argv[1], image_size=8, global_batch_size=2,
                        val_fraction=0.25)  # process index and count from jax
    paths = [e["path"].decode() for e in data._source.train(0).as_numpy_iterator()]
    return {"stats": folder.last_check.__dict__, "num_train": data.num_train, "train": paths}

shared = start()
os.environ["JAXZOO_FOLDER_CACHE"] += "-" + sys.argv[3]  # one cache per process from now on
os.makedirs(os.environ["JAXZOO_FOLDER_CACHE"])
if sys.argv[3] == "0":  # process 0's own cache starts complete, process 1's empty
    import shutil
    shutil.rmtree(os.environ["JAXZOO_FOLDER_CACHE"])
    shutil.copytree(sys.argv[4], os.environ["JAXZOO_FOLDER_CACHE"])
print(json.dumps({"shared": shared, "separate": start()}))
"""


@pytest.mark.slow
def test_under_jax_distributed_processes_exchange_verdicts_without_a_shared_cache(tmp_path,
                                                                                  cache):
    import socket

    root = _tree(tmp_path / "photos", per_class=20)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    env = {**os.environ, "JAXZOO_FOLDER_CACHE": str(cache), "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", _DISTRIBUTED, str(root), address, str(i),
                               str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    shared = [out["shared"] for out in outs]
    for out in shared:  # split over process_allgather: each checked about half
        assert out["stats"]["exchange"] == "allgather" and out["stats"]["checked"] in (20, 21)
    assert sum(out["stats"]["checked"] for out in shared) == 41
    assert not set(shared[0]["train"]) & set(shared[1]["train"])
    # Caches that differ (process 0's complete, process 1's empty): no split, process 1 checks
    # all it lacks, and both still agree on the data.
    separate = [out["separate"] for out in outs]
    assert [out["stats"]["checked"] for out in separate] == [0, 41]
    assert [out["stats"]["exchange"] for out in separate] == ["", ""]
    for before, after in zip(shared, separate):
        assert after["train"] == before["train"] and after["num_train"] == before["num_train"]
