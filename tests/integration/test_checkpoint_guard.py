"""Checkpoints from strangers never run code: export, train, prune and classifier export refuse a pickle that
names anything beyond layers, tensors and plain values, before it is called (issue: checkpoint security).

Each malicious checkpoint tries to create a marker file; the test fails if the marker appears."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from andi_edge.errors import ModelError
from andi_edge.toolchain.checkpoints import CheckpointRefusedError
from tests.integration.cli_runner import run_cli


class _RunsCommand:
    """Pickles as a call of ``os.system`` (the plain ``__reduce__`` attack)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (self.command,)


def _zip_checkpoint(path: Path, data_pkl: bytes) -> Path:
    """A zip-format torch checkpoint whose data.pkl is ``data_pkl``."""
    torch.save({"placeholder": 1}, path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            dst.writestr(item, data_pkl if item.filename.endswith("/data.pkl") else src.read(item))
    path.write_bytes(buffer.getvalue())
    return path


def _dotted(marker: Path) -> bytes:
    """Protocol 4 resolves ``os.system`` inside ``pathlib``: a module prefix allow-list lets it through."""
    return b"\x80\x04cpathlib\nos.system\n(X" + _len(f"touch {marker}") + b"tR."


def _len(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(4, "little") + raw


def _reduce(marker: Path) -> bytes:
    return pickle.dumps({"model": _RunsCommand(f"touch {marker}")}, protocol=2)


ATTACKS = {
    "dotted-name": lambda tmp, marker: _zip_checkpoint(tmp / "evil.pt", _dotted(marker)),
    "reduce": lambda tmp, marker: _zip_checkpoint(tmp / "evil.pt", _reduce(marker)),
    # the legacy (non-zip) format reads a header pickle first: that one must be guarded too
    "legacy-header": lambda tmp, marker: _write(tmp / "evil.pt", _reduce(marker)),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(params=sorted(ATTACKS))
def evil(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    return ATTACKS[request.param](tmp_path, marker), marker


def test_classic_loader_refuses_without_running_code(evil: tuple[Path, Path]) -> None:
    from andi_edge.toolchain.yolov5_classic import is_ultralytics_checkpoint, load_classic

    path, marker = evil
    for load in (load_classic, is_ultralytics_checkpoint):  # export, train and prune go through these
        with pytest.raises(ModelError):
            load(path)
    assert not marker.exists()


def test_classifier_checkpoint_refused_without_running_code(evil: tuple[Path, Path]) -> None:
    from andi_edge.toolchain.classifier.train import load_checkpoint

    path, marker = evil
    with pytest.raises(ModelError):
        load_checkpoint(path)
    assert not marker.exists()


def test_prune_refuses_before_ultralytics_sees_it(evil: tuple[Path, Path]) -> None:
    from andi_edge.toolchain.prune import _load

    path, marker = evil
    with pytest.raises(ModelError):
        _load(path)
    assert not marker.exists()


def test_export_cli_refuses_with_a_clear_error(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _zip_checkpoint(tmp_path / "evil.pt", _dotted(marker))
    done = run_cli("export", path, "-o", tmp_path / "out.onnx")
    assert done.returncode != 0
    assert "refusing to load this checkpoint" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()
    assert not (tmp_path / "out.onnx").exists()


def test_a_malicious_ultralytics_checkpoint_is_refused(tmp_path: Path) -> None:
    """An Ultralytics class first, then the attack: the kind check must not stop at the first class."""
    from ultralytics.nn.modules import Conv

    marker = tmp_path / "pwned"
    layer = Conv(3, 8)  # type: ignore[no-untyped-call]
    attack = {"model": layer, "x": _RunsCommand(f"touch {marker}")}
    path = _zip_checkpoint(tmp_path / "evil.pt", pickle.dumps(attack, protocol=2))
    with pytest.raises(CheckpointRefusedError):
        from andi_edge.toolchain.yolov5_classic import is_ultralytics_checkpoint

        is_ultralytics_checkpoint(path)
    assert not marker.exists()


def test_genuine_checkpoints_still_load(weights_path: Path, tmp_path: Path) -> None:
    """The guard lets through what real checkpoints hold: the official yolov5n.pt, a classifier checkpoint."""
    from andi_edge.toolchain.yolov5_classic import is_ultralytics_checkpoint, load_classic

    model, _ = load_classic(weights_path)
    assert len(model.names) == 80
    assert not is_ultralytics_checkpoint(weights_path)
    state = tmp_path / "state.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, state)
    from andi_edge.toolchain.checkpoints import load_plain

    assert torch.equal(load_plain(state)["state_dict"]["w"], torch.zeros(2))
