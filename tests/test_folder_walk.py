"""Folder walks (training and evaluation folders, predict's folders) visit each real file once:
symlinks that lead back into the tree are not followed, are reported, and never hang a walk."""
import os
import subprocess
import sys
import warnings

import pytest
from PIL import Image


def _tree(root):
    """red/ and green/, five 8 px PNGs each, in a folder of class folders."""
    for name, colour in [("red", (255, 0, 0)), ("green", (0, 255, 0))]:
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (8, 8), colour).save(root / name / f"{i}.png")
    return root


def _load(root, **kwargs):
    from jaxzoo.data import get_datasets

    return get_datasets(f"folder:{root}", image_size=8, global_batch_size=2, eval_batch_size=2,
                        process_index=0, process_count=1, augment=False, val_fraction=0.2,
                        **kwargs)


def _labelled_colours(data):
    """(label, mean red, mean green) of every training and validation example."""
    out = []
    for batches in (data.eval_batches("train"), data.val_batches()):
        for batch in batches:
            for image, label, real in zip(batch["image"], batch["label"], batch["mask"]):
                if real:
                    out.append((int(label), image[..., 0].mean() > 0, image[..., 1].mean() > 0))
    return out


def test_a_symlink_to_the_root_does_not_multiply_files_or_mislabel_them(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXZOO_FOLDER_CACHE", str(tmp_path / "cache"))
    root = _tree(tmp_path / "photos")
    os.symlink("..", root / "red" / "loop")  # red/loop/green/... would be green images labelled red
    with pytest.warns(UserWarning, match=r"1 symlink_loop \(e\.g\. .*red/loop"):
        data = _load(root)
    assert data.class_names == ["green", "red"]
    assert data.num_train + data.num_val == 10
    assert data.skipped == {"symlink_loop": 1}
    colours = _labelled_colours(data)
    assert len(colours) == 10
    green, red = 0, 1
    assert all((label == red) == is_red and (label == green) == is_green
               for label, is_red, is_green in colours), colours


def test_two_loops_do_not_hang_the_walk(tmp_path):
    """Two links to ancestors made os.walk(followlinks=True) run for ever."""
    root = _tree(tmp_path / "photos")
    os.symlink("..", root / "red" / "up")
    os.symlink("../..", root / "green" / "upup")
    os.symlink(".", root / "green" / "here")
    script = ("import sys, warnings; warnings.simplefilter('ignore');"
              "from jaxzoo.walk import walk;"
              "listing = walk([sys.argv[1] + '/green', sys.argv[1] + '/red']);"
              "print(sum(len(files) for top in listing.files for _, files in top),"
              " len(listing.loops), len(listing.repeats))")
    out = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    # Without ancestors given, green/upup (the folder above the photos) is a new folder: walked
    # once, it reaches photos/ and its red/ and green/ again, which are not walked twice.
    assert out[0] == "10", out
    assert int(out[1]) + int(out[2]) == 2, out  # green/here and red/up


def test_a_symlink_to_a_separate_folder_is_followed_and_a_second_link_to_it_is_not(tmp_path):
    from jaxzoo.walk import walk

    root = _tree(tmp_path / "photos")
    elsewhere = tmp_path / "more_red"
    elsewhere.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (255, 0, 0)).save(elsewhere / f"extra{i}.png")
    os.symlink(elsewhere, root / "red" / "more")
    os.symlink(elsewhere, root / "red" / "more_again")
    os.symlink(root / "red", root / "green" / "reds")  # a class folder walked on its own already
    listing = walk([str(root / "green"), str(root / "red")], ancestors=[str(root)])
    green, red = ([path for _, files in top for path, *_ in files] for top in listing.files)
    assert len(green) == 5 and all("reds" not in path for path in green)
    assert sorted(os.path.basename(p) for p in red) == (
        [f"{i}.png" for i in range(5)] + [f"extra{i}.png" for i in range(3)])
    assert [p for p in red if "extra" in p] == [str(root / "red" / "more" / f"extra{i}.png")
                                                for i in range(3)]
    assert sorted(os.path.basename(p.split(" -> ")[0]) for p in listing.repeats) == [
        "more_again", "reds"]
    assert listing.loops == []


def test_hidden_files_and_folders_and_other_extensions_are_left_out(tmp_path):
    from jaxzoo.walk import walk

    (tmp_path / "a" / ".thumbnails").mkdir(parents=True)
    (tmp_path / "a" / "sub").mkdir()
    for path in ["a/x.JPG", "a/.hidden.jpg", "a/notes.txt", "a/.thumbnails/x.jpg", "a/sub/y.png"]:
        (tmp_path / path).write_bytes(b"1234")
    listing = walk([str(tmp_path / "a")], stat=True)
    (files,) = listing.files
    assert [(d, [(os.path.basename(p), size) for p, size, _ in f]) for d, f in files] == [
        (str(tmp_path / "a"), [("x.JPG", 4)]), (str(tmp_path / "a" / "sub"), [("y.png", 4)])]


def test_predict_walks_folders_without_loops_and_without_tensorflow(tmp_path):
    root = _tree(tmp_path / "photos")
    os.symlink("..", root / "red" / "loop")
    os.symlink("../..", root / "green" / "upup")
    script = ("import sys, warnings; from jaxzoo.predict import image_files;"
              "caught = warnings.catch_warnings(record=True); w = caught.__enter__();"
              "warnings.simplefilter('always'); files = image_files([sys.argv[1]]);"
              "print(len(files), 'tensorflow' in sys.modules); print(w[0].message)")
    out = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True,
                         text=True, timeout=60, check=True).stdout.splitlines()
    assert out[0] == "10 False", out
    assert "not followed" in out[1] and "loop" in out[1], out


def test_predict_lists_a_folder_as_before(tmp_path):
    from jaxzoo.predict import image_files

    for path in ["b/2.png", "a/1.jpg", "a/c/3.gif", "a/.x/4.jpg", "a/.5.jpg", "a/6.txt", "0.jpeg"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no loops here: no warning
        files = image_files([str(tmp_path), str(tmp_path / "b" / "2.png")])
    assert [os.path.relpath(p, tmp_path) for p in files] == [
        "0.jpeg", "a/1.jpg", "a/c/3.gif", "b/2.png", "b/2.png"]
