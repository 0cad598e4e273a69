"""A finished (or running) watch run, read back from its journal for reports and exports."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from andi_edge.errors import OutputError
from andi_edge.results.labels import LabelSpace
from andi_edge.results.records import PhotoRecord, record_from_row
from andi_edge.results.review import Review, build_review
from andi_edge.settings import EventSettings, RepeatSettings
from andi_edge.state.journal import PhotoRow, open_existing


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

    def photo_path(self, record: PhotoRecord) -> Path | None:
        """The photo itself, if it is readable here: the watch folder holds it, with the size and time the daemon
        saw. Another card in the slot may hold a different photo at the same path; that one is not it."""
        row = self.rows.get(record.key)
        path = self.card_roots.get(record.card_id, self.facts.watch_root) / record.rel_path
        try:
            stat = path.stat()
        except OSError:
            return None
        if row is None or stat.st_size != row.size_bytes or stat.st_mtime_ns != row.mtime_ns:
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
