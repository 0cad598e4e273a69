"""One self-contained HTML page to review a run: counts per class and per camera (each saying the confidence that
made it), a "to review" list (photos whose best box lies between the conservative and the typical threshold,
which the counts call empty), a timeline of events, repeat patterns, thumbnails with their boxes drawn for a
sample of detections and of empty photos, and every photo reachable by its label. Thumbnails and names open the
photo itself where it is readable here.

Self-contained means no network at all: styles inline, charts as inline SVG, thumbnails as data: URIs. It opens
from a USB stick on a laptop in the field.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from andi_edge import __version__
from andi_edge.config import DEFAULT_MAX_IMAGE_PIXELS
from andi_edge.errors import AndiEdgeError
from andi_edge.results.clock import clock_issues
from andi_edge.results.events import Event
from andi_edge.results.records import PhotoRecord
from andi_edge.results.run import RunResults
from andi_edge.runtime.decode import decode_photo
from andi_edge.runtime.video import poster_frame_rgb
from andi_edge.sinks.atomic import write_bytes_atomic
from andi_edge.sinks.names import display_text

log = logging.getLogger(__name__)

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#800000", "#000075")
EMPTY_COLOUR = "#9e9e9e"


@dataclass(frozen=True)
class ReportOptions:
    #: boxes at or above this confidence are drawn and counted
    threshold: float
    detection_samples: int = 24
    empty_samples: int = 12
    #: thumbnails shown of the photos to review (all of them are listed)
    review_samples: int = 24
    thumbnail_width_px: int = 360
    thumbnail_quality: int = 70
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class ReportSummary:
    path: Path
    thumbnails: int = 0
    missing_photos: int = 0


def _e(value: object) -> str:
    return html.escape(display_text(str(value)), quote=True)


class _Page:
    def __init__(self, results: RunResults, options: ReportOptions) -> None:
        self.results = results
        self.review = results.review
        self.options = options
        self.records = results.records
        self.record_of = {r.key: r for r in results.records}
        self.ok = [r for r in self.records if r.failure is None]
        names = self.review.label_names
        self.colour = {i: PALETTE[i % len(PALETTE)] for i in range(len(names))}
        self.thumbnails = 0
        self.missing = 0
        self._paths: dict[tuple[str, str], Path | None] = {}
        #: (box index, label index) of each photo's boxes that count: at or above threshold, not suppressed; the
        #: label is the box's species when the classifier named it, else its category
        self._kept = {
            r.key: [
                (i, self.review.box_label(b))
                for i, b in enumerate(r.boxes)
                if b.conf >= options.threshold and not self.review.suppressed((r.key, i))
            ]
            for r in self.records
        }
        self.with_boxes = [r for r in self.ok if self._kept[r.key]]
        self.empties = [r for r in self.ok if not self._kept[r.key]]
        conservative = min(results.facts.conservative_threshold, options.threshold)
        #: the empties whose best box is at or above the conservative threshold: most confident first
        self.to_review = sorted(
            (r for r in self.empties if _best_conf(r) >= conservative), key=lambda r: (-_best_conf(r), r.rel_path)
        )
        self.conservative = conservative

    def kept_boxes(self, record: PhotoRecord) -> list[tuple[int, int]]:
        return self._kept[record.key]

    # -- sections ---------------------------------------------------------------------------------------------

    def render(self) -> str:
        facts = self.results.facts
        counts = self.results.counts
        events = self.review.events
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            # no network, and no script but our own: every fetch forbidden except data: images; the one inline
            # script allowed by its hash, so markup smuggled in through a card (a file name) cannot run
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            f"style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'\">",
            f"<title>andi-edge report: {_e(facts.model_name)}</title>",
            f"<style>{_CSS}</style></head><body>",
            "<h1>Camera-trap run report</h1>",
            '<p class="meta">',
            f"Model <b>{_e(facts.classified_by)}</b>; run started {_e(facts.started_at)}; detections counted at "
            f"confidence &ge; {self.options.threshold:g}; events split at gaps over {facts.events.gap_s:g} s. "
            f"Report made {_e(self.options.now.isoformat(timespec='seconds'))} by andi-edge {_e(__version__)}."
            + self._crops_note()
            + "</p>",
            '<section id="totals"><h2>Totals</h2><table class="totals">',
            *(f'<tr><th>{_e(k)}</th><td data-key="{_e(k)}">{v}</td></tr>' for k, v in self._totals(counts, events)),
            "</table></section>",
            self._review_list(),
            self._classes(),
            self._cameras(),
            self._timeline(),
            self._repeats(),
            self._samples(),
            self._every_photo(),
            self._failures(),
            f"<script>{_SCRIPT}</script>",
            "</body></html>",
        ]
        return "\n".join(parts)

    def _crops_note(self) -> str:
        """The crops folder counts at its own threshold: say so where it differs from the report's."""
        crops = self.results.facts.crop_threshold
        if crops is None or abs(crops - self.options.threshold) < 1e-9:
            return ""
        return (
            f' <span class="crops-note">The daemon cut crops (crops/) at confidence &ge; {crops:g}, so they count '
            f"{'more' if crops < self.options.threshold else 'fewer'} boxes than this report.</span>"
        )

    def _totals(self, counts: dict[str, int], events: list[Event]) -> list[tuple[str, int]]:
        clips = sum(1 for r in self.records if r.is_clip)
        return [
            ("photos", len(self.records) - clips),
            ("video clips (each counted as a photo below, by its poster frame)", clips),
            ("photos analysed", len(self.ok)),
            ("photos that failed", len(self.records) - len(self.ok)),
            ("photos still pending", counts.get("pending", 0) + counts.get("claimed", 0)),
            (f"photos with detections (confidence \u2265 {self.options.threshold:g})", len(self.with_boxes)),
            (f"empty photos (no box \u2265 {self.options.threshold:g})", len(self.empties)),
            (f"to review (best box {self.conservative:g} to {self.options.threshold:g})", len(self.to_review)),
            ("events", len(events)),
            ("cameras", len({(r.card_id, r.camera_key) for r in self.records})),
            ("repeat patterns", len(self.review.patterns)),
        ]

    def _classes(self) -> str:
        boxes: Counter[int] = Counter()
        photos: Counter[int] = Counter()
        for record in self.ok:
            kept = self.kept_boxes(record)
            boxes.update(c for _, c in kept)
            photos.update({c for _, c in kept})
        event_labels: Counter[int | None] = Counter(e.label_index for e in self.review.events)
        classes = sorted(set(boxes) | {c for c in event_labels if c is not None}, key=lambda c: -photos[c])
        rows = [
            f'<tr data-class="{_e(self.review.label_name(c))}"><td><span class="swatch" style="background:'
            f'{self.colour[c]}"></span>{_e(self.review.label_name(c))}</td><td class="n-events">{event_labels[c]}'
            f'</td><td class="n-photos">{photos[c]}</td><td class="n-boxes">{boxes[c]}</td></tr>'
            for c in classes
        ]
        rows.append(
            f'<tr data-class="empty"><td><span class="swatch" style="background:{EMPTY_COLOUR}"></span>empty</td>'
            f'<td class="n-events">{event_labels[None]}</td>'
            f'<td class="n-photos">{len(self.empties)}</td><td class="n-boxes">0</td>'
            "</tr>"
        )
        chart = self._bars([(self.review.label_name(c), event_labels[c], self.colour[c]) for c in classes])
        return (
            f'<section id="classes"><h2>Per species or class (confidence &ge; {self.options.threshold:g})</h2>'
            '<div class="row"><table class="classes"><thead><tr><th>species or class</th>'
            "<th>events</th><th>photos</th><th>boxes</th></tr></thead><tbody>"
            + "".join(rows)
            + f"</tbody></table>{chart}</div></section>"
        )

    @staticmethod
    def _bars(values: list[tuple[str, int, str]]) -> str:
        if not values:
            return ""
        top = max(v for _, v, _ in values) or 1
        row_h, label_w, bar_w = 22, 130, 320
        height = row_h * len(values) + 4
        bars = []
        for i, (name, value, colour) in enumerate(values):
            y = 2 + i * row_h
            width = max(1.0, bar_w * value / top)
            bars.append(
                f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_e(name)}</text>'
                f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" '
                f'fill="{colour}"><title>{_e(name)}: {value} events</title></rect>'
                f'<text x="{label_w + width + 4:.1f}" y="{y + 15}">{value}</text>'
            )
        return (
            f'<svg class="chart" role="img" aria-label="events per class" width="{label_w + bar_w + 50}" '
            f'height="{height}" viewBox="0 0 {label_w + bar_w + 50} {height}">{"".join(bars)}</svg>'
        )

    def _cameras(self) -> str:
        by_camera: dict[tuple[str, str], list[PhotoRecord]] = defaultdict(list)
        for record in self.records:
            by_camera[(record.card_id, record.camera_key)].append(record)
        events_of: Counter[tuple[str, str]] = Counter((e.card_id, e.camera_key) for e in self.review.events)
        empty_events_of: Counter[tuple[str, str]] = Counter(
            (e.card_id, e.camera_key) for e in self.review.events if e.label_index is None
        )
        patterns_of: Counter[tuple[str, str]] = Counter((p.card_id, p.camera_key) for p in self.review.patterns)
        rows = []
        for (card, camera), records in sorted(by_camera.items()):
            times = sorted(r.capture_time for r in records if r.capture_time is not None)
            issues = clock_issues(records, self.options.now)
            rows.append(
                f'<tr data-camera="{_e(card)}/{_e(camera)}"><td>{_e(card)}</td><td>{_e(camera)}</td>'
                f'<td class="n-photos">{len(records)}</td><td class="n-events">{events_of[(card, camera)]}</td>'
                f"<td>{empty_events_of[(card, camera)]}</td>"
                f"<td>{_e(times[0].isoformat(sep=' ')) if times else '-'}</td>"
                f"<td>{_e(times[-1].isoformat(sep=' ')) if times else '-'}</td>"
                f"<td>{patterns_of[(card, camera)]}</td>"
                f'<td class="clock">{"<br>".join(_e(i) for i in issues) or "ok"}</td></tr>'
            )
        return (
            '<section id="cameras"><h2>Per camera</h2><table class="cameras"><thead><tr><th>card</th><th>camera</th>'
            "<th>photos</th><th>events</th><th>empty events</th><th>first photo</th><th>last photo</th>"
            "<th>repeat patterns</th><th>clock</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
        )

    def _timeline(self) -> str:
        timed = [(e, e.start) for e in self.review.events if e.start is not None]
        if not timed:
            return '<section id="timeline"><h2>Timeline</h2><p>No photo has a capture time.</p></section>'
        labels = sorted({e.label_index for e, _ in timed}, key=lambda c: (c is None, self.review.label_name(c)))
        first = min(start for _, start in timed)
        last = max(e.end or start for e, start in timed)
        span_s = max((last - first).total_seconds(), 1.0)
        left, width, row_h = 140, 760, 26
        height = row_h * len(labels) + 40
        row_of = {label: i for i, label in enumerate(labels)}
        shapes = []
        for i, label in enumerate(labels):
            y = 20 + i * row_h
            shapes.append(
                f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{_e(self.review.label_name(label))}</text>'
            )
            shapes.append(f'<line x1="{left}" x2="{left + width}" y1="{y}" y2="{y}" class="grid"/>')
        for event, start in timed:
            x = left + width * (start - first).total_seconds() / span_s
            y = 20 + row_of[event.label_index] * row_h
            colour = EMPTY_COLOUR if event.label_index is None else self.colour[event.label_index]
            radius = min(3 + len(event.photos), 10)
            shapes.append(
                f'<circle class="event" data-event="{_e(event.event_id)}" cx="{x:.1f}" cy="{y}" r="{radius}" '
                f'fill="{colour}" fill-opacity="0.7"><title>{_e(self.review.label_name(event.label_index))}, '
                f"{len(event.photos)} photo(s), {_e(start.isoformat(sep=' '))}</title></circle>"
            )
        y_axis = 20 + len(labels) * row_h
        shapes.append(f'<text x="{left}" y="{y_axis}">{_e(first.date().isoformat())}</text>')
        shapes.append(f'<text x="{left + width}" y="{y_axis}" text-anchor="end">{_e(last.date().isoformat())}</text>')
        return (
            '<section id="timeline"><h2>Timeline of events</h2><p class="note">One dot per event (camera-local '
            "time), larger for more photos; hover for details.</p>"
            f'<svg class="timeline" role="img" aria-label="timeline of events" width="{left + width + 20}" '
            f'height="{height}" viewBox="0 0 {left + width + 20} {height}">{"".join(shapes)}</svg></section>'
        )

    def _repeats(self) -> str:
        patterns = self.review.patterns
        if not patterns:
            return '<section id="repeats"><h2>Repeat detections</h2><p>None found.</p></section>'
        status = "suppressed" if self.review.suppress else "flagged"
        items = []
        for pattern in patterns:
            record = self.record_of[pattern.photos[0]]
            box_index = next(i for key, i in pattern.detections if key == record.key)
            items.append(
                f'<div class="pattern" data-pattern="{_e(pattern.pattern_id)}">'
                + self._figure(record, only_box=box_index)
                + f"<p><code>{_e(pattern.pattern_id)}</code>: {len(pattern.photos)} photos of {_e(pattern.camera_key)}"
                f" &mdash; {'kept as real' if pattern.kept else status}</p></div>"
            )
        return (
            '<section id="repeats"><h2>Repeat detections</h2><p class="note">Boxes at the same place in many photos '
            "of one camera: usually a rock or a branch. If one is a real animal, keep it: <code>andi-edge repeats "
            "--state STATE --keep ID</code>.</p>" + '<div class="grid">' + "".join(items) + "</div></section>"
        )

    def _samples(self) -> str:
        with_boxes, empties = self.with_boxes, self.empties
        detections = _spread(with_boxes, self.options.detection_samples, key=self._top_class)
        empty_sample = _evenly(empties, self.options.empty_samples)
        return (
            f'<section id="detections"><h2>Detections: {len(detections)} of {len(with_boxes)} photos</h2>'
            '<div class="grid">' + "".join(self._figure(r) for r in detections) + "</div></section>"
            f'<section id="empties"><h2>Empty photos: {len(empty_sample)} of {len(empties)}</h2>'
            '<div class="grid">' + "".join(self._figure(r) for r in empty_sample) + "</div></section>"
        )

    def _review_list(self) -> str:
        """The photos the counts call empty whose best box is still worth a look, most confident first: a few as
        thumbnails, every one listed."""
        shown = self.to_review[: self.options.review_samples]
        low, high = self.conservative, self.options.threshold
        items = "".join(f"<li>{self._link(r)} &middot; best box {_best_conf(r):.2f}</li>" for r in self.to_review)
        return (
            f'<section id="review"><h2>To review: {_plural(len(self.to_review), "photo")} with a box between '
            f"{low:g} and {high:g}</h2><p class=\"note\">Counted as empty at {high:g}, but the detector saw "
            f"something at or above {low:g} (MegaDetector's conservative threshold): an animal at the edge, at "
            "night, or far away is often here. Most confident first.</p>"
            '<div class="grid">' + "".join(self._figure(r, every_box=True) for r in shown) + "</div>"
            + (f'<details><summary>all {len(self.to_review)}</summary><ol class="files">{items}</ol></details>'
               if self.to_review else "")
            + "</section>"
        )  # fmt: skip

    def _every_photo(self) -> str:
        """Every photo, by its label at the threshold (collapsed lists: a card of 100,000 photos stays readable)."""
        by_label: dict[str, list[PhotoRecord]] = defaultdict(list)
        for record in self.records:
            if record.failure is not None:
                by_label["failed"].append(record)
            elif not self.kept_boxes(record):
                by_label["empty"].append(record)
            else:
                for name in sorted({self.review.label_name(c) for _, c in self.kept_boxes(record)}):
                    by_label[name].append(record)
        blocks = "".join(
            f'<details data-label="{_e(name)}"><summary>{_e(name)}: {_plural(len(records), "photo")}</summary>'
            f'<ol class="files">{"".join(f"<li>{self._link(r)}</li>" for r in records)}</ol></details>'
            for name, records in sorted(by_label.items(), key=lambda kv: (kv[0] in ("empty", "failed"), kv[0]))
        )
        return (
            f'<section id="all"><h2>Every photo, by label (confidence &ge; {self.options.threshold:g})</h2>'
            f'<p class="note">Names open the photo where it is readable from here.</p>{blocks}</section>'
        )

    def _photo_path(self, record: PhotoRecord) -> Path | None:
        """The photo, where readable here; looked up once per photo (it is linked from several sections)."""
        if record.key not in self._paths:
            self._paths[record.key] = self.results.photo_path(record)
        return self._paths[record.key]

    def _frame_open(self, record: PhotoRecord) -> str:
        """The thumbnail's frame: a link that opens the photo (a thumbnail exists only where the photo is read)."""
        path = self._photo_path(record)
        href = f' href="{_e(path.absolute().as_uri())}"' if path is not None else ""
        return f'<a class="frame"{href} title="open the photo">'

    def _link(self, record: PhotoRecord) -> str:
        name = _e(f"{record.card_id}/{record.rel_path}")
        path = self._photo_path(record)
        return f'<a href="{_e(path.absolute().as_uri())}">{name}</a>' if path is not None else name

    def _top_class(self, record: PhotoRecord) -> int:
        kept = self.kept_boxes(record)
        return max(kept, key=lambda ic: record.boxes[ic[0]].conf)[1]

    def _failures(self) -> str:
        failed = [r for r in self.records if r.failure is not None]
        if not failed:
            return ""
        rows = "".join(f"<tr><td>{_e(r.card_id)}/{_e(r.rel_path)}</td><td>{_e(r.failure)}</td></tr>" for r in failed)
        return f'<section id="failures"><h2>Failed photos</h2><table>{rows}</table></section>'

    # -- thumbnails ---------------------------------------------------------------------------------------------

    def _figure(self, record: PhotoRecord, only_box: int | None = None, every_box: bool = False) -> str:
        """``every_box``: draw the boxes below the threshold too (the photos to review have none above it)."""
        caption = self._link(record)
        event = self.review.event_of(record.key)
        if event is not None:
            caption += (
                f" &middot; event {_e(self.review.label_name(event.label_index))} "
                f"({_plural(len(event.photos), 'photo')})"
            )
        thumbnail = self._thumbnail(record)
        if thumbnail is None:
            return (
                f'<figure class="thumb missing" data-file="{_e(record.rel_path)}"><div class="placeholder">photo not '
                f"available here (card not mounted?)</div><figcaption>{caption}</figcaption></figure>"
            )
        data, width, height = thumbnail
        if only_box is not None:
            indices = [only_box]
        elif every_box:
            indices = [i for i, b in enumerate(record.boxes) if b.conf >= self.conservative]
        else:
            indices = [i for i, _ in self.kept_boxes(record)]
        rects = []
        for i in indices:
            box = record.boxes[i]
            x, y, w, h = box.xywh_norm
            label = self.review.box_label(box)
            name = self.review.label_name(label)
            colour = self.colour.get(label, EMPTY_COLOUR)
            flagged = self.review.flagged((record.key, i)) is not None
            rects.append(
                f'<rect class="box{" repeat" if flagged else ""}" data-class="{_e(name)}" x="{x * width:.1f}" '
                f'y="{y * height:.1f}" width="{w * width:.1f}" height="{h * height:.1f}" stroke="{colour}"/>'
                f'<text class="label" x="{x * width + 3:.1f}" y="{max(y * height - 3, 10):.1f}" fill="{colour}">'
                f"{_e(name)} {box.conf:.2f}</text>"
            )
        return (
            f'<figure class="thumb" data-file="{_e(record.rel_path)}">{self._frame_open(record)}'
            f'<img alt="{_e(record.rel_path)}" width="{width}" height="{height}" src="data:image/jpeg;base64,{data}">'
            f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}">{"".join(rects)}</svg></a>'
            f"<figcaption>{caption}</figcaption></figure>"
        )

    def _thumbnail(self, record: PhotoRecord) -> tuple[str, int, int] | None:
        path = self._photo_path(record)
        if path is None:
            self.missing += 1
            return None
        try:
            if record.poster_frame is not None:  # a clip: its poster frame, decoded again (in a child process)
                rgb = poster_frame_rgb(path, record.poster_frame, self.options.thumbnail_width_px)
            else:
                rgb = decode_photo(
                    path.read_bytes(),
                    target_long_side_px=self.options.thumbnail_width_px,
                    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
                    name=record.rel_path,
                ).rgb
        except (OSError, AndiEdgeError) as exc:
            log.info("no thumbnail for %s: %s", path, exc)
            self.missing += 1
            return None
        image = Image.fromarray(rgb)
        width = self.options.thumbnail_width_px
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=self.options.thumbnail_quality)
        self.thumbnails += 1
        return base64.b64encode(buffer.getvalue()).decode("ascii"), width, height


def _best_conf(record: PhotoRecord) -> float:
    return max((b.conf for b in record.boxes), default=0.0)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _evenly(items: list[PhotoRecord], n: int) -> list[PhotoRecord]:
    """n items spread evenly through the list (deterministic: the same run gives the same report)."""
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _spread(items: list[PhotoRecord], n: int, key: Callable[[PhotoRecord], int]) -> list[PhotoRecord]:
    """Round-robin over classes so a rare class is shown next to the common one."""
    by_class: dict[int, list[PhotoRecord]] = defaultdict(list)
    for item in items:
        by_class[key(item)].append(item)
    queues = [_evenly(v, n) for _, v in sorted(by_class.items())]
    picked: list[PhotoRecord] = []
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def write_report(results: RunResults, path: Path, options: ReportOptions) -> ReportSummary:
    page = _Page(results, options)
    text = page.render()
    write_bytes_atomic(path, text.encode("utf-8"))
    return ReportSummary(path=path, thumbnails=page.thumbnails, missing_photos=page.missing)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{max-width:100%}td,th{overflow-wrap:anywhere}svg.chart,svg.timeline{max-width:100%;height:auto}
details{margin:.3em 0}summary{cursor:pointer}ol.files{font-size:.85em;overflow-wrap:anywhere}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.meta,.note{color:#555;font-size:.9em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
.row{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.4em;border-radius:2px}
svg text{font-size:12px;font-family:system-ui,sans-serif}
.timeline .grid{stroke:#eee}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure.thumb{margin:0;width:360px}figure.thumb figcaption{font-size:.75em;color:#555;word-break:break-all}
.frame{display:block;position:relative;line-height:0}.frame img{display:block;max-width:100%;height:auto}
.frame svg{position:absolute;left:0;top:0;width:100%;height:100%}
rect.box{fill:none;stroke-width:3}rect.box.repeat{stroke-dasharray:6 4}
text.label{font-size:13px;font-weight:bold;paint-order:stroke;stroke:#fff;stroke-width:3px}
.placeholder{height:200px;background:#f3f3f3;display:flex;align-items:center;justify-content:center;color:#777}
.thumb.broken .frame::after{content:"thumbnail could not be shown";position:absolute;left:8px;top:8px;color:#c00}
"""

# Marks a thumbnail the browser could not decode, so a damaged report says so instead of showing a blank.
_SCRIPT = """
addEventListener('load',function(){document.querySelectorAll('figure.thumb img').forEach(function(i){
  var ok=i.complete&&i.naturalWidth>0;i.closest('figure').classList.toggle('broken',!ok);
  i.setAttribute('data-decoded',ok?'yes':'no');});var w=document.documentElement;
  document.body.setAttribute('data-overflow',w.scrollWidth>w.clientWidth?'yes':'no');
  document.body.setAttribute('data-ready','yes');});
"""

#: the Content-Security-Policy source that allows exactly ``_SCRIPT`` and nothing else
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
