"""A workdir guards the run it holds: a later run of another model, dataset or class list is
refused before it writes anything, ``--restart`` moves the old run aside, readers (predict,
evaluate, export) check the files against the checkpoint, and a damaged checkpoint is moved
aside and training goes on from the one before (issue 24, cases 1 and 4), with a small fault
campaign over workdir states. TinyNet on QuadrantData, in this process (tests/train_helpers.py);
``python train.py`` itself at the end (slow)."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from train_helpers import QuadrantData, TinyNet, tiny_config

from jaxzoo.train import workdir as run_workdir
from jaxzoo.train import report, train_and_evaluate
from jaxzoo.train.step import AXIS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = QuadrantData().steps_per_epoch  # 8


class RenamedData(QuadrantData):
    """QuadrantData whose classes have other names (another dataset with as many classes)."""

    def __init__(self, names=("cat", "dog", "bird", "fish"), **kwargs):
        super().__init__(**kwargs)
        self.class_names = list(names)


def _train(workdir, data=None, **fields):
    fields = {"num_epochs": 2, "checkpoint_every_steps": 4, "checkpoints_to_keep": 10, **fields}
    return train_and_evaluate(tiny_config(**fields), str(workdir),
                              data=data if data is not None else QuadrantData(),
                              model=TinyNet(bn_axis_name=AXIS, dropout=0.0))


def _steps(workdir):
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def _snapshot(workdir):
    """{relative path: (size, mtime_ns)} of every file: what a refused run must leave alone."""
    out = {}
    for directory, _, names in os.walk(workdir):
        for name in names:
            path = os.path.join(directory, name)
            out[os.path.relpath(path, workdir)] = (os.path.getsize(path),
                                                   os.stat(path).st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run: 2 epochs of 8 steps, checkpoints at steps 4, 8, 12, 16."""
    report_plot = report.plot_curves
    report.plot_curves = lambda workdir, records: None  # matplotlib: seconds, not tested here
    try:
        workdir = tmp_path_factory.mktemp("finished") / "run"
        records = _train(workdir)
    finally:
        report.plot_curves = report_plot
    assert _steps(workdir) == [4, 8, 12, 16]
    return workdir, records


@pytest.fixture
def copy_of(finished, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "plot_curves", lambda workdir, records: None)

    def copy(until=None):
        workdir = tmp_path / "run"
        shutil.copytree(finished[0], workdir)
        for step in [s for s in _steps(workdir) if until is not None and s > until]:
            shutil.rmtree(workdir / "checkpoints" / str(step))
        return workdir
    return copy


def _truncate_state(workdir, step):
    """Cut one data file of the checkpoint of ``step`` in half (a disk or copy gone wrong)."""
    data = workdir / "checkpoints" / str(step) / "state" / "d"
    (path,) = list(data.iterdir())
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return path


# ------------------------------------------------------------------ case 1: another run

def test_another_dataset_in_a_finished_workdir_is_refused_before_anything_is_written(
        copy_of, capsys):
    workdir = copy_of()
    before = _snapshot(workdir)
    with pytest.raises(run_workdir.WorkdirMismatch) as e:
        _train(workdir, data=RenamedData(), dataset="folder:/photos/pets")
    message = str(e.value)
    assert "dataset: cifar10 -> folder:/photos/pets" in message
    assert "class_names: 0: top_left -> cat, 1: top_right -> dog" in message
    assert "another --workdir" in message and "--restart" in message
    assert _snapshot(workdir) == before  # config.json and class_names.json untouched
    assert "already trained" not in capsys.readouterr().out


def test_another_class_count_or_model_is_refused_naming_the_field(copy_of):
    workdir = copy_of()
    six = RenamedData(names=[f"c{i}" for i in range(6)])
    with pytest.raises(run_workdir.WorkdirMismatch, match=r"num_classes: 4 -> 6"):
        _train(workdir, data=six)
    with pytest.raises(run_workdir.WorkdirMismatch, match=r"model: resnet18_cifar -> "
                                                          r"inception10.*image_size: 16 -> 32"):
        _train(workdir, model="inception10", image_size=32)
    assert json.loads((workdir / "config.json").read_text())["model"] == "resnet18_cifar"


def test_settings_that_may_change_resume_and_restart_moves_the_old_run_aside(copy_of, capsys):
    workdir = copy_of()
    records = _train(workdir, num_epochs=3, learning_rate=1e-2, checkpoint_every_steps=0)
    assert "resuming from" in capsys.readouterr().out
    assert [r["epoch"] for r in records] == [1, 2, 3] and _steps(workdir)[-1] == 3 * STEPS

    old = run_workdir.move_aside(str(workdir))  # what train.py --restart does first
    assert re.fullmatch(re.escape(str(workdir)) + r"\.old-\d{8}-\d{6}", old)
    assert _steps(old)[-1] == 3 * STEPS  # kept, not deleted
    assert not workdir.exists()  # the other run may start here now (train.py: the slow test)
    run_workdir.check_identity(str(workdir), tiny_config(), RenamedData().class_names)


def test_a_setting_that_reshapes_the_train_state_is_named_not_taken_for_damage(copy_of):
    from jaxzoo.train.checkpoint import StateMismatch

    workdir = copy_of()
    with pytest.raises(StateMismatch, match=r"the checkpoint of step 16 in .* holds another train "
                                            r"state than this run builds \(opt_state/"):
        _train(workdir, num_epochs=3, grad_clip_norm=1.0)  # optax.chain(clip, adam): 2 states
    assert _steps(workdir) == [4, 8, 12, 16]
    assert not (workdir / "damaged_checkpoints").exists()


def test_readers_refuse_class_names_that_do_not_match_the_checkpoint(copy_of):
    workdir = copy_of()
    (workdir / "class_names.json").write_text(json.dumps({str(i): f"c{i}" for i in range(6)}))
    with pytest.raises(run_workdir.WorkdirMismatch, match=r"num_classes: 4 -> 6"):
        run_workdir.load_run(str(workdir))
    os.remove(workdir / "identity.json")  # a workdir from before identity.json: the head counts
    with pytest.raises(run_workdir.WorkdirMismatch, match=r"has 4 outputs, but "
                                                          r"class_names.json names 6 classes"):
        run_workdir.load_run(str(workdir))
    (workdir / "config.json").write_text('{"model": "resnet18_ci')
    with pytest.raises(ValueError, match=re.escape(str(workdir / "config.json"))
                       + r" is damaged \(the run's config; not valid JSON"):
        run_workdir.read_config(str(workdir))


# ------------------------------------------------------------------ the fault campaign

@pytest.mark.parametrize("state", ["finished", "mid_epoch", "damaged_newest", "damaged_all"])
def test_fault_campaign_over_workdir_states(copy_of, finished, capsys, state):
    """The same command again on a workdir in each state: what it resumes from, what is kept.
    ``damaged_newest`` is issue 24's case 4: a damaged newest checkpoint is reported (step,
    file, what failed), moved aside, and training goes on from the one before."""
    workdir = copy_of(until=12 if state == "mid_epoch" else None)
    before = _snapshot(workdir)
    if state == "damaged_newest":
        damaged = _truncate_state(workdir, 16)
    if state == "damaged_all":
        for step in _steps(workdir):
            _truncate_state(workdir, step)
    records = _train(workdir)
    out = capsys.readouterr().out
    moved = sorted(int(s) for s in os.listdir(workdir / "damaged_checkpoints")) if (
        workdir / "damaged_checkpoints").exists() else []
    if state == "finished":
        assert "already trained for 2 epoch(s)" in out
        assert _snapshot(workdir) == before  # nothing rewritten
        assert records == finished[1]
    elif state == "mid_epoch":
        assert " at step 12 (epoch 2, step 4 of 8;" in out and not moved
        assert [r["epoch"] for r in records] == [1, 2]
        assert records[0] == finished[1][0]  # epoch 1 kept from the checkpoint
    elif state == "damaged_newest":
        assert re.search(r"warning: the checkpoint of step 16 cannot be restored \(.*"
                         + re.escape(damaged.name) + r".*\); moved it to "
                         + re.escape(str(workdir / "damaged_checkpoints" / "16")), out), out
        assert moved == [16] and " at step 12 (epoch 2, step 4 of 8;" in out
        assert (workdir / "damaged_checkpoints" / "16" / "state" / "d" / damaged.name).exists()
        assert records[0] == finished[1][0]
    else:
        assert moved == [4, 8, 12, 16] and "resuming" not in out  # from the start
        assert out.count("warning: the checkpoint of step") == 4
    assert _steps(workdir)[-1] == 16 and [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["val_accuracy"] >= 0.8  # it learned (chance 0.25)


# ------------------------------------------------------------------ train.py

def _run_train_py(*args, timeout=420):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          check=False)


@pytest.mark.slow
def test_train_py_refuses_another_run_and_restart_moves_it_aside(tmp_path):
    workdir = tmp_path / "run"
    common = ["--config=inception10", f"--workdir={workdir}", "--config.image_size=8",
              f"--config.data_dir={tmp_path / 'tfds'}", "--config.batch_size=16",
              "--config.num_epochs=1", f"--config.compilation_cache_dir={tmp_path / 'xla'}",
              "--config.tensorboard=False"]
    first = _run_train_py(*common, "--config.dataset=shapes/tiny")
    assert first.returncode == 0, first.stderr[-3000:]
    before = _snapshot(workdir)
    other = _run_train_py(*common, "--config.dataset=shapes/tiny", "--config.image_size=16")
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert re.search(r"error: .* holds another run \(image_size: 8 -> 16\)\. Train this one in "
                     r"another --workdir, or start over in this one with --restart",
                     other.stderr), other.stderr[-2000:]
    assert _snapshot(workdir) == before
    again = _run_train_py(*common, "--config.dataset=shapes/tiny", "--config.image_size=16",
                          "--restart")
    assert again.returncode == 0, again.stderr[-3000:]
    (old,) = [p for p in os.listdir(tmp_path) if p.startswith("run.old-")]
    assert f"moved the previous run in {workdir} to {tmp_path / old}" in again.stdout
    assert _snapshot(tmp_path / old) == before
    assert json.loads((workdir / "config.json").read_text())["image_size"] == 16
