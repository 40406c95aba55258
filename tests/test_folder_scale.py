"""A folder of 100,000 images starts in seconds once checked (benchmarks/folder_startup.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import folder_startup


@pytest.mark.slow
def test_a_100k_file_folder_starts_in_seconds_after_its_first_check(tmp_path, capsys):
    first, second = folder_startup.main(["--files", "100000", "--classes", "500",
                                         "--root", str(tmp_path / "tree"), "--starts", "2"])
    with capsys.disabled():  # the figures, for the record
        print("\n" + capsys.readouterr().out)
    (first,), (second,) = first, second
    assert first["checked"] == 100_000 and second["checked"] == 0
    assert (first["num_train"], first["num_val"]) == (second["num_train"], second["num_val"]) == (
        90_000, 10_000)
    assert second["seconds"] < 3.0, second
    assert second["seconds"] < first["seconds"] / 5, (first, second)
    # The listing and the manifest of 100k files add little to a process that holds TensorFlow.
    assert second["peak_rss_mb"] - second["rss_before_mb"] < 500, second
