"""A finished (or running) run, read back for reports, exports and status: from a watch run's journal, or from a
MegaDetector batch results file (ours from `detect`/`batch`/`watch`, or any producer's: MegaDetector, AddaxAI)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from andi_edge.errors import OutputError, UsageError
from andi_edge.results.labels import LabelSpace
from andi_edge.results.records import PhotoRecord, record_from_entry, record_from_row
from andi_edge.results.review import Review, build_review
from andi_edge.settings import EventSettings, RepeatSettings
from andi_edge.state.journal import PhotoRow, find_state_dir, open_existing


@dataclass(frozen=True)
class RunFacts:
    """What the daemon recorded about itself at start (journal meta ``run``)."""

    model_name: str
    model_file: str
    model_sha256: str
    andi_edge_version: str
    class_names: tuple[str, ...]
    typical_threshold: float
    watch_root: Path
    output_dir: Path
    started_at: str
    events: EventSettings
    repeats: RepeatSettings
    #: the classifier's labels and the confidence at which they name a box (none: no classifier ran)
    species_names: tuple[str, ...] = ()
    species_threshold: float = 0.5
    #: the classifier as the run recorded it (name, file, sha256, card), when one ran
    classifier: dict[str, Any] | None = None
    #: below the typical threshold, boxes at or above this are worth a reviewer's look (MegaDetector's "to review")
    conservative_threshold: float = 0.1
    #: the confidence the daemon cut crops at (None: no crops, or not a watch run)
    crop_threshold: float | None = None

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> RunFacts:
        def section(kind: type[Any], raw: Any) -> Any:
            known = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in (raw or {}).items() if k in known})

        return cls(
            model_name=str(meta.get("model_name", "")),
            model_file=str(meta.get("model_file", "")),
            model_sha256=str(meta.get("model_sha256", "")),
            andi_edge_version=str(meta.get("andi_edge_version", "")),
            class_names=tuple(meta.get("class_names", ())),
            typical_threshold=float(meta.get("typical_threshold", 0.25)),
            watch_root=Path(meta.get("watch_root", ".")),
            output_dir=Path(meta.get("output_dir", ".")),
            started_at=str(meta.get("started_at", "")),
            events=section(EventSettings, meta.get("events")),
            repeats=section(RepeatSettings, meta.get("repeats")),
            species_names=tuple(meta.get("species_names", ())),
            species_threshold=float(meta.get("species_threshold", 0.5)),
            classifier=meta.get("classifier") or None,
            conservative_threshold=float(meta.get("conservative_threshold", 0.1)),
            crop_threshold=None if meta.get("crop_threshold") is None else float(meta["crop_threshold"]),
        )

    @property
    def labels(self) -> LabelSpace:
        return LabelSpace(self.class_names, self.species_names, self.species_threshold)

    @property
    def classified_by(self) -> str:
        model = f"{self.model_name} ({self.model_file}, sha256 {self.model_sha256[:12]})"
        classifier = self.classifier
        if classifier:
            model += (
                f" + classifier {classifier.get('name')} ({classifier.get('model_file')}, "
                f"sha256 {str(classifier.get('model_sha256', ''))[:12]})"
            )
        return f"{model} via andi-edge {self.andi_edge_version}"


@dataclass(frozen=True)
class RunResults:
    facts: RunFacts
    records: list[PhotoRecord]
    rows: dict[tuple[str, str], PhotoRow]
    review: Review
    counts: dict[str, int]
    #: where each card was last watched (older journals: the run's watch root)
    card_roots: dict[str, Path]
    #: "journal" or "results file"
    source_kind: str = "journal"

    def photo_path(self, record: PhotoRecord) -> Path | None:
        """The photo itself, if it is readable here: the watch folder holds it, with the size and time the daemon
        saw. Another card in the slot may hold a different photo at the same path; that one is not it. (A results
        file records no size or time: there, the file at the path is taken.)"""
        row = self.rows.get(record.key)
        path = self.card_roots.get(record.card_id, self.facts.watch_root) / record.rel_path
        try:
            stat = path.stat()
        except OSError:
            return None
        if row is None:
            return path if self.source_kind == "results file" and path.is_file() else None
        if stat.st_size != row.size_bytes or stat.st_mtime_ns != row.mtime_ns:
            return None
        return path


def load_run(state_dir: Path) -> RunResults:
    """Every finished photo of every card, with events and repeat flags derived as the daemon derives them."""
    journal = open_existing(state_dir)
    try:
        meta = journal.get_meta("run")
        if meta is None:
            raise OutputError(
                f"the journal in {state_dir} does not say which model and settings produced it",
                hint="it was written by an older andi-edge: run `andi-edge watch --once` on it again (nothing is "
                "processed twice) to record them",
            )
        facts = RunFacts.from_meta(meta)
        rows = [row for card in journal.cards() for row in journal.latest_finished(card)]
        kept = journal.kept_patterns()
        counts = journal.counts()
        card_roots = {card: Path(root) for card, root in journal.card_roots().items()}
    finally:
        journal.close()
    records = [record_from_row(r) for r in rows]
    review = build_review(records, facts.labels, facts.events, facts.repeats, facts.typical_threshold, kept)
    return RunResults(facts, records, {(r.card_id, r.rel_path): r for r in rows}, review, counts, card_roots)


def load_results(source: Path, images: Path | None = None) -> RunResults:
    """Results from any source a user has: a MegaDetector batch file (``images``: the folder its paths are relative
    to, when the file does not say), a watch output folder (its ``.andi-edge-state``) or a state folder."""
    try:
        if source.is_file():
            return load_results_file(source, images)
        state = find_state_dir(source)
    except PermissionError:
        return load_run(source)  # a folder this user may not look into: open_existing says so
    if state is not None:
        return load_run(state)
    if source.is_dir():
        raise UsageError(
            f"{source} holds no andi-edge journal",
            hint="give a watch output or state folder, or a results file (detect's -o, a MegaDetector or AddaxAI "
            "results .json)",
        )
    raise UsageError(f"{source}: no such results file or folder")


def load_results_file(path: Path, images: Path | None = None) -> RunResults:
    """A MegaDetector batch results file (format 1.0-1.6, from any producer) as a run: its photos, boxes and
    classifications; events and repeat flags derived with the default settings."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise UsageError(f"{path}: not a MegaDetector results file (no 'images' list)")
    info = _mapping(document.get("info"))
    ours = _mapping(info.get("andi_edge"))
    categories = _categories(document.get("detection_categories"), path, "detection_categories")
    species = _categories(document.get("classification_categories") or {}, path, "classification_categories")
    detector_meta = _mapping(info.get("detector_metadata"))
    typical = detector_meta.get("typical_detection_threshold", ours.get("typical_threshold", 0.2))
    root = images or (Path(ours["image_root"]) if isinstance(ours.get("image_root"), str) else path.parent)
    card_id = str(ours.get("card_id") or "local")
    # some producers (AddaxAI) write absolute paths of the machine they ran on: relative to their common folder
    files = [str(e.get("file", "")) if isinstance(e, dict) else "" for e in document["images"]]
    absolute = bool(files) and all(PurePosixPath(f).is_absolute() for f in files)
    common = PurePosixPath(os.path.commonpath(files)) if absolute else None
    if common is not None and len(files) == 1:
        common = common.parent
    if common is not None and images is None:
        root = Path(common)
    records: list[PhotoRecord] = []
    for number, entry in enumerate(document["images"]):
        try:
            rel_path = str(entry["file"])
            if common is not None:
                rel_path = PurePosixPath(rel_path).relative_to(common).as_posix()
            parts = PurePosixPath(rel_path).parts
            if not parts or PurePosixPath(rel_path).is_absolute() or ".." in parts:
                raise ValueError(f"its file {rel_path!r} leads outside the folder of the photos")
            stat_ns = _mtime_ns(root / rel_path)
            records.append(record_from_entry(card_id, rel_path, None, stat_ns, entry))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise UsageError(
                f"{path}: images[{number}] is not a MegaDetector image entry ({type(exc).__name__}: {exc})"
            ) from exc
    facts = RunFacts(
        model_name=str(ours.get("model_name") or info.get("detector") or "unknown detector"),
        model_file=str(ours.get("model_file") or info.get("detector") or path.name),
        model_sha256=str(ours.get("model_sha256") or ""),
        andi_edge_version=str(ours.get("andi_edge_version") or f"(results file {path.name})"),
        class_names=categories,
        typical_threshold=float(typical),
        watch_root=root,
        output_dir=path.parent,
        started_at=_with_offset(info.get("detection_completion_time")),
        events=EventSettings(),
        repeats=RepeatSettings(),
        species_names=species,
        species_threshold=float(ours.get("species_threshold", 0.5)),
        conservative_threshold=float(detector_meta.get("conservative_detection_threshold", min(0.1, float(typical)))),
    )
    review = build_review(records, facts.labels, facts.events, facts.repeats, facts.typical_threshold)
    failed = sum(1 for r in records if r.failure is not None)
    counts = {"done": len(records) - failed, "failed": failed}
    return RunResults(facts, records, {}, review, counts, {card_id: root}, source_kind="results file")


def _categories(raw: Any, path: Path, key: str) -> tuple[str, ...]:
    """MegaDetector's ``{"1": "animal", ...}`` as names by index (id 1 is index 0); gaps get their id as name."""
    if not isinstance(raw, dict) or not all(str(k).isdigit() for k in raw):
        raise UsageError(f"{path}: '{key}' is not a map of numbered categories")
    if not raw:
        return ()
    top = max(int(k) for k in raw)
    return tuple(str(raw.get(str(i), i)) for i in range(1, top + 1))


def _with_offset(value: Any) -> str:
    """A results file's completion time, ISO 8601 with an offset (one without is this machine's local time, as
    MegaDetector and `detect` write it); empty where it is missing or unreadable."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return ""
    return (moment if moment.tzinfo is not None else moment.astimezone()).isoformat(timespec="seconds")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
