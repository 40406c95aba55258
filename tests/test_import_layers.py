"""The package's layering (ARCHITECTURE.md, "Layers") holds: import-linter's contracts in
pyproject.toml pass on the package, and fail on a copy of it with one forbidden import added."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint(cwd, pythonpath=None):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_package_keeps_its_layers():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "0 broken" in out.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("models/layers.py", "from jaxzoo.train import step", "jaxzoo's layers"),
    ("convert/loader.py", "from jaxzoo import predict", "jaxzoo's layers"),
    ("models/resnet.py", "import torch", "the models import neither TensorFlow nor torch"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line, contract):
    shutil.copytree(os.path.join(ROOT, "jaxzoo"), tmp_path / "jaxzoo",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path / "pyproject.toml")
    with open(tmp_path / "jaxzoo" / module, "a") as f:
        f.write(f"\n\ndef _added():\n    {line}  # a lazy import counts too\n")
    out = _lint(tmp_path, pythonpath=str(tmp_path))
    assert out.returncode != 0, out.stdout[-3000:]
    assert f"{contract}" in out.stdout and "BROKEN" in out.stdout
