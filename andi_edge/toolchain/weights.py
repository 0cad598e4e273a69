"""Find pretrained weights by name or path, offline, and check them against the known-models registry."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from andi_edge.errors import ConfigError, ModelError, ModelNotFoundError
from andi_edge.runtime.model_meta import file_sha256

REGISTRY_PATH = Path(__file__).resolve().parents[2] / "models" / "registry.yaml"
MODELS_DIR_ENV = "ANDI_EDGE_MODELS_DIR"


@dataclass(frozen=True)
class KnownWeights:
    name: str
    file: str
    url: str
    sha256: str | None
    licence: str | None
    training_data: str | None


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
    return {
        name: KnownWeights(
            name=name,
            file=str(entry["file"]),
            url=str(entry["url"]),
            sha256=entry.get("sha256"),
            licence=entry.get("licence"),
            training_data=entry.get("training_data"),
        )
        for name, entry in raw.items()
    }


def models_dirs() -> list[Path]:
    """Where weights are looked for, in order."""
    dirs = [Path(p) for p in os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep) if p]
    return [*dirs, Path("models"), Path("..") / "shared" / "models"]


def resolve_weights(name_or_path: str) -> ResolvedWeights:
    """A weights file given by path, or by registry name (``yolov5n``), verified when its sha256 is known."""
    registry = load_registry()
    candidate = Path(name_or_path)
    known_by_file = {k.file: k for k in registry.values()}
    if candidate.is_file():
        path = candidate
        known = known_by_file.get(candidate.name)
    elif name_or_path in registry:
        known = registry[name_or_path]
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
    if known is not None and known.sha256 and digest != known.sha256:
        # Same file name as a known model, different bytes: a fine-tuned model or a damaged download.
        if not candidate.is_file():
            raise ModelError(
                f"{path}: sha256 {digest[:12]}... does not match the official {known.name} ({known.sha256[:12]}...)",
                hint=f"the file is damaged or not the official release; download it again from {known.url}",
            )
        known = None
    return ResolvedWeights(path=path, sha256=digest, known=known)
