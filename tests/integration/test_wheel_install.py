"""The device path from a wheel, as docs/field/install.md documents it: `pip install .` (not editable), then
`service install`, `check` and `detect` run from another folder, with no checkout in reach. Everything they need
(unit templates, the card script, the example config and profiles, the weights registry) ships in the wheel.

The wheel is built from a copy of the tracked files (so no build leftovers land in the clone) and installed into a
new, bare venv with the dependencies its metadata declares (no torch, no toolchain): what a field device gets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False, env=env
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The andi-edge command of a venv that holds the wheel and nothing of the checkout."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", base / "dist",
                 source, cwd=base)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (base / "dist").glob("andi_edge-*.whl")
    venv = base / "venv"
    assert _run(sys.executable, "-m", "venv", venv, cwd=base).returncode == 0
    # the wheel's own dependencies, as pip resolves them from its metadata (pip's cache, else the package index):
    # a dependency the device needs but the wheel does not declare fails here
    done = _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin" / "andi-edge"


def test_the_installed_package_is_the_one_that_runs(installed: Path, tmp_path: Path) -> None:
    python = installed.with_name("python")
    where = _run(python, "-c", "import andi_edge; print(andi_edge.__file__)", cwd=tmp_path)
    assert where.returncode == 0 and str(installed.parents[1]) in where.stdout, where.stdout + where.stderr
    registry = _run(python, "-c", "from andi_edge.toolchain.weights import load_registry as r; print(len(r()))",
                    cwd=tmp_path)  # fmt: skip
    assert registry.returncode == 0 and int(registry.stdout) >= 5, registry.stderr
    assert _run(python, "-c", "import torch", cwd=tmp_path).returncode != 0, "a device install carries no torch"


def test_service_install_check_and_detect_from_a_wheel(
    installed: Path, tmp_path: Path, model_320: Path, photos_dir: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ANDI_EDGE_MODELS_DIR"}
    root = tmp_path / "root"
    done = _run(installed, "service", "install", "--root", root, "--watch", "/media/trap", "--model", model_320,
                "--profile", "raspberry-pi", cwd=elsewhere, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for staged in ("etc/systemd/system/andi-edge.service", "etc/systemd/system/andi-edge-card@.service",
                   "etc/udev/rules.d/99-andi-edge-card.rules", "usr/local/lib/andi-edge/andi-edge-card",
                   "etc/andi-edge/config.yaml", "var/lib/andi-edge/models/yolov5n-320.onnx"):  # fmt: skip
        assert (root / staged).is_file(), staged
    installed_config = yaml.safe_load((root / "etc/andi-edge/config.yaml").read_text())
    installed_config.update(
        model=str(root / "var/lib/andi-edge/models/yolov5n-320.onnx"),
        output=str(tmp_path / "out"),
        state=str(tmp_path / "state"),
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(installed_config))
    checked = _run(installed, "check", "--config", config, cwd=elsewhere, env=env)
    assert checked.returncode == 0 and "model ok" in checked.stdout, checked.stdout + checked.stderr
    results = tmp_path / "results.json"
    detected = _run(installed, "detect", photos_dir / "burrowing_owl", "--model", model_320, "-o", results,
                    cwd=elsewhere, env=env)  # fmt: skip
    assert detected.returncode == 0 and results.is_file(), detected.stderr
    assert not list(elsewhere.iterdir()), "nothing written into the working folder"
