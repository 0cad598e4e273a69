"""Find pretrained weights by name or path, offline, and check them against the known-models registry."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from andi_edge.errors import ConfigError, ModelError, ModelNotFoundError
from andi_edge.runtime.model_meta import file_sha256

REGISTRY_PATH = Path(__file__).resolve().parents[1] / "assets" / "registry.yaml"
MODELS_DIR_ENV = "ANDI_EDGE_MODELS_DIR"


@dataclass(frozen=True)
class KnownWeights:
    name: str
    file: str
    url: str
    sha256: str | None
    licence: str | None
    training_data: str | None
    #: the publisher's own md5 (MegaDetector lists one per release), checked when no sha256 is known
    md5: str | None = None
    architecture: str | None = None
    #: the input size the publisher recommends (MegaDetector v5: 1280), the export default
    imgsz: int | None = None
    #: review thresholds the publisher recommends (MegaDetector v5: 0.2 and 0.05), written into the card
    typical: float | None = None
    conservative: float | None = None
    #: the first hex digits of the sha256, where that is all the publisher gives (torchvision's file names)
    sha256_prefix: str | None = None
    #: the publisher's own inference runs rectangular (MegaDetector v5: classic YOLOv5's letterbox, stride 64):
    #: the export default, so that the exported model sees what the publisher's pipeline feeds it
    rect: bool = False
    #: the publisher's decode ("full": MegaDetector v5), written into the card
    decode: str | None = None


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    sha256: str
    known: KnownWeights | None


def load_registry(path: Path = REGISTRY_PATH) -> dict[str, KnownWeights]:
    if not path.is_file():
        return {}
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of model names")
    try:
        return {
            name: KnownWeights(
                name=name,
                file=str(entry["file"]),
                url=str(entry["url"]),
                sha256=entry.get("sha256"),
                licence=entry.get("licence"),
                training_data=entry.get("training_data"),
                md5=entry.get("md5"),
                architecture=entry.get("architecture"),
                imgsz=entry.get("imgsz"),
                typical=entry.get("typical"),
                conservative=entry.get("conservative"),
                sha256_prefix=entry.get("sha256_prefix"),
                rect=bool(entry.get("rect", False)),
                decode=entry.get("decode"),
            )
            for name, entry in raw.items()
        }
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: an entry lacks a field or is not a mapping ({exc})") from exc


def _name_key(name: str) -> str:
    """Registry names compare without case, dashes or underscores: md-v5a = md_v5a = MDV5A, MDV6-yolov10-c."""
    return re.sub(r"[-_\s]", "", name.lower())


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def models_dirs() -> list[Path]:
    """Where weights are looked for, in order: $ANDI_EDGE_MODELS_DIR, ./models, ../shared/models (beside a
    checkout), the user's own folder, and the models/ folder of the checkout andi-edge runs from (wherever the
    command is run from)."""
    dirs = [Path(p) for p in os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep) if p]
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    checkout = Path(__file__).resolve().parents[2]
    return [*dirs, Path("models"), Path("..") / "shared" / "models", data_home / "andi-edge" / "models",
            checkout / "models", checkout.parent / "shared" / "models"]  # fmt: skip


def resolve_weights(name_or_path: str) -> ResolvedWeights:
    """A weights file given by path, or by registry name (``yolov5n``), verified when its sha256 is known."""
    registry = load_registry()
    candidate = Path(name_or_path)
    known_by_file = {k.file: k for k in registry.values()}
    by_name = {_name_key(k): v for k, v in registry.items()}
    if candidate.is_file():
        path = candidate
        known = known_by_file.get(candidate.name)
    elif _name_key(name_or_path) in by_name:
        known = by_name[_name_key(name_or_path)]
        found = [d / known.file for d in models_dirs() if (d / known.file).is_file()]
        if not found:
            searched = ", ".join(str(d) for d in models_dirs())
            raise ModelNotFoundError(
                f"weights {known.file} for '{name_or_path}' are not on this machine (looked in: {searched})",
                hint=f"download {known.url} into one of those folders, or set {MODELS_DIR_ENV}",
            )
        path = found[0]
    else:
        raise ModelNotFoundError(
            f"no weights file or known model called '{name_or_path}'",
            hint=f"give a path to a .pt file, or one of: {', '.join(sorted(registry)) or '(registry empty)'}",
        )
    digest = file_sha256(path)
    mismatch = None
    if known is not None and known.sha256 and digest != known.sha256:
        mismatch = f"sha256 {digest[:12]}... does not match the official {known.name} ({known.sha256[:12]}...)"
    elif known is not None and not known.sha256 and known.md5 and (md5 := _file_md5(path)) != known.md5:
        mismatch = f"md5 {md5} does not match the official {known.name}'s ({known.md5})"
    elif known is not None and not known.sha256 and known.sha256_prefix and not digest.startswith(known.sha256_prefix):
        mismatch = f"sha256 {digest[:12]}... does not start with the official {known.name}'s {known.sha256_prefix}"
    if mismatch and known is not None:
        # Same file name as a known model, different bytes: a fine-tuned model or a damaged download.
        if not candidate.is_file():
            raise ModelError(
                f"{path}: {mismatch}",
                hint=f"the file is damaged or not the official release; download it again from {known.url}",
            )
        known = None
    return ResolvedWeights(path=path, sha256=digest, known=known)
