"""``python -m jaxzoo bench`` writes a markdown table and a CSV whose numbers hang together.
(Speed itself is the benchmark's business, not the tests'.)"""
import csv

import pytest

from jaxzoo import bench
from jaxzoo.__main__ import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.md"
    code = main(["bench", "--models", "resnet18", "resnet18_cifar", "--mode", "train", "--size", "32",
                 "--batch", "2", "--repeats", "1", "--steps", "1", "--threads", "2",
                 "--out", str(out)])
    assert code == 0
    return out


def test_markdown_table_has_a_row_per_model_and_mode(tiny_run):
    lines = tiny_run.read_text().strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["model", "mode", "batch"] and "ratio" in header
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [(r[0], r[1]) for r in body] == [("resnet18", "train"), ("resnet18_cifar", "train")]
    assert all(len(r) == len(header) for r in body)


def test_csv_numbers_are_positive_and_ratio_is_jaxzoo_over_torch(tiny_run):
    with open(tiny_run.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == bench.COLUMNS
    assert len(rows) == 2
    for row in rows:
        assert int(row["batch"]) == 2 and int(row["size"]) == 32 and int(row["threads"]) == 2
        assert float(row["jaxzoo_img_s"]) > 0
        assert float(row["compile_s"]) > 0
        assert float(row["peak_rss_mib"]) > 0
        if row["model"] == "resnet18":  # has a torchvision counterpart
            jz, tv = float(row["jaxzoo_img_s"]), float(row["torch_img_s"])
            assert tv > 0
            assert float(row["ratio"]) == pytest.approx(jz / tv, rel=1e-9)
        else:  # jaxzoo-only row
            assert row["torch_img_s"] == "" and row["ratio"] == ""


def test_input_benchmark_reads_every_image_both_ways(tmp_path):
    from jaxzoo import bench_input

    folder = bench_input.make_folder(str(tmp_path / "jpegs"), per_class=6, width=64, height=48)
    rows = bench_input.run(folder, size=32, batch=4, threads=1, repeats=1, compare="torch",
                           log=lambda *a: None)
    assert [r.pipeline for r in rows] == ["train", "eval"]
    train, evaluate = rows
    assert train.images == 12 and evaluate.images == 12  # 3 full batches; every val image
    for row in rows:
        assert row.jaxzoo_img_s > 0 and row.torch_img_s > 0
        assert row.ratio == pytest.approx(row.jaxzoo_img_s / row.torch_img_s)
    table = bench_input.markdown(rows).splitlines()
    assert len(table) == 4 and table[2].startswith("| train | 12 | 32 | 4 | 1 |")
