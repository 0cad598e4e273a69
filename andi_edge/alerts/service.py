"""`andi-edge alerts`: follow the journal, evaluate the rules, queue, deliver; publish a retained status.

One loop, one thread (the MQTT client's network thread aside): look at the journal (``follow``), evaluate what was
finished since the position in commit order (``rules``), queue the messages with the new position and the rule
state in one transaction (``outbox``), then hand each transport what it has not acknowledged (``transports``). A
transport that is down waits with a backoff; the others go on. Nothing here writes to the journal's folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from andi_edge import __version__
from andi_edge.alerts.config import AlertSettings
from andi_edge.alerts.follow import Activity, JournalFollower, Snapshot
from andi_edge.alerts.outbox import NewMessage, Outbox
from andi_edge.alerts.payload import alert_payload, local_iso
from andi_edge.alerts.rules import Decision, Evaluator, Finished, RuleState, unknown_labels
from andi_edge.alerts.thumbnail import crop_for_label, thumbnail_jpeg
from andi_edge.alerts.transports import Transport, TransportDownError
from andi_edge.daemon.notify import Notifier
from andi_edge.errors import OutputError
from andi_edge.results.records import record_from_row
from andi_edge.results.run import RunFacts
from andi_edge.sinks.atomic import write_bytes_atomic
from andi_edge.state.journal import PhotoRow

log = logging.getLogger(__name__)

#: journal rows evaluated per look (the rest at the next, right after delivery)
ROWS_PER_LOOK = 200
#: messages handed to a transport at once
BATCH = 50
STATUS_FILE = "status.json"
#: a camera whose clock says a year before this was reset (a flat battery: cameras fall back to 2000 or 1970;
#: camera traps wrote EXIF dates from the mid-2000s)
CLOCK_RESET_BEFORE_YEAR = 2005
#: or a date this far ahead of the device's own clock
CLOCK_AHEAD_S = 2 * 86400.0


def default_delivery_dir(journal_dir: Path) -> Path:
    """Beside the journal's folder, never inside it (the alerts unit may not write there): ``STATE-alerts``."""
    return journal_dir.with_name(journal_dir.name + "-alerts")


def delivery_dir(settings: AlertSettings, journal_dir: Path) -> Path:
    """Where the alerts keep their queue and position: ``alerts.state``, else beside the journal's folder."""
    return Path(settings.state) if settings.state else default_delivery_dir(journal_dir)


def device_name(settings: AlertSettings) -> str:
    return settings.device or socket.gethostname()


class AlertService:
    def __init__(
        self,
        *,
        settings: AlertSettings,
        journal_dir: Path,
        delivery_dir: Path,
        transports: list[Transport],
        stop: threading.Event,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.device = device_name(settings)
        self.follower = JournalFollower(journal_dir)
        self.delivery_dir = delivery_dir
        self.transports = transports
        self.stop = stop
        self.notifier = notifier or Notifier()
        self._evaluator: Evaluator | None = None
        self._facts: RunFacts | None = None
        self._card_roots: dict[str, str] = {}
        self._retry_at: dict[str, float] = {}
        self._backoff_s: dict[str, float] = {}
        self._problems: dict[str, str] = {}
        self._next_status = 0.0
        self._activity: Activity | None = None
        self._more = True
        self._waiting_logged = False
        self._warnings: dict[str, str] = {}

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> int:
        outbox = Outbox(self.delivery_dir)
        try:
            for transport in self.transports:
                outbox.register(transport.name)
            self.notifier.ready(f"alerts: following {self.follower.path}")
            log.info(
                "alerts: following %s; %d rule(s); to %s",
                self.follower.path,
                len(self.settings.rules),
                ", ".join(t.name for t in self.transports),
            )
            while not self.stop.is_set():
                self._evaluate(outbox)
                self._deliver(outbox)
                if time.monotonic() >= self._next_status:
                    self._publish_status(outbox)
                self.notifier.heartbeat()
                if not self._more:
                    self.stop.wait(self.settings.poll_interval_s)
            self._deliver(outbox)  # what is ready goes before the goodbye
            self._publish_status(outbox)
        finally:
            self.notifier.stopping("alerts: stopping")
            for transport in self.transports:
                transport.close()
            outbox.close()
        return 0

    # -- evaluation -------------------------------------------------------------------------------------------

    def _evaluate(self, outbox: Outbox) -> None:
        if not self._more and not self.follower.changed():
            return
        position = outbox.position
        try:
            snapshot = self.follower.read(position or 0, ROWS_PER_LOOK)
        except OutputError as exc:
            if not self._waiting_logged:
                log.info("alerts: waiting for the journal (%s)", exc.message)
                self._waiting_logged = True
            self._more = False
            return
        self._waiting_logged = False
        self._card_roots = snapshot.card_roots
        if position is None and not self.settings.from_start:
            log.info("alerts: starting after the %d photo(s) the journal already holds", snapshot.last_seq)
            outbox.commit([], snapshot.last_seq, RuleState().to_json())
            self._more = True
            return
        position = position or 0
        if snapshot.last_seq < position:
            log.warning(
                "alerts: the journal holds fewer finished photos (%d) than were evaluated (%d): it was restored or "
                "started anew; evaluating it from the start (alerts already queued are not sent again)",
                snapshot.last_seq,
                position,
            )
            outbox.restart_from(0)
            self._more = True
            return
        self._more = len(snapshot.rows) >= ROWS_PER_LOOK
        if not snapshot.rows:
            return
        evaluator = self._evaluator_for(snapshot, outbox)
        if evaluator is None:
            self._more = False
            return
        finished = [f for f in (self._finished(row) for row in snapshot.rows) if f is not None]
        decisions = evaluator.evaluate(finished)
        messages = [self._message(d) for d in decisions]
        last = max(row.finished_seq or 0 for row in snapshot.rows)
        added = outbox.commit(messages, last, evaluator.state.to_json())
        if any(m.thumbnail for m in messages):  # only new thumbnails can push the queue past its bound
            dropped = outbox.bound_thumbnails(int(self.settings.backlog_thumbnails_mb * 1024 * 1024))
            if dropped:
                log.warning(
                    "alerts: the backlog outgrew alerts.backlog_thumbnails_mb: %d oldest thumbnail(s) dropped",
                    dropped,
                )
        for decision in decisions:
            if decision.kind == "alert":
                log.info(
                    "alert %s: %s %.2f x%d in %s (%s)",
                    decision.rule,
                    decision.sighting.label,
                    decision.sighting.conf,
                    decision.sighting.count,
                    decision.row.rel_path,
                    decision.id,
                )
        if added < len(messages):
            log.info(
                "alerts: %d message(s) were already queued (evaluated again after a restart)", len(messages) - added
            )
        self._camera_health(finished)

    def _evaluator_for(self, snapshot: Snapshot, outbox: Outbox) -> Evaluator | None:
        if snapshot.run_meta is None:
            return None  # the daemon has not said which model runs yet
        facts = RunFacts.from_meta(snapshot.run_meta)
        if self._evaluator is None or facts != self._facts:
            state = self._evaluator.state if self._evaluator is not None else RuleState.from_json(outbox.rule_state)
            self._evaluator = Evaluator(self.settings, facts.labels, facts.events.gap_s, state)
            self._facts = facts
            self._say_unknown_labels(facts)
        return self._evaluator

    def _say_unknown_labels(self, facts: RunFacts) -> None:
        for rule in self.settings.rules:
            unknown = unknown_labels(rule, facts.labels.names)
            if unknown:
                log.warning(
                    "alerts: rule %s names %s, which the running model does not know (it knows: %s)",
                    rule.title,
                    ", ".join(unknown),
                    ", ".join(facts.labels.names),
                )

    @staticmethod
    def _finished(row: PhotoRow) -> Finished | None:
        if row.state != "done" or row.record is None or row.finished_seq is None:
            return None
        review = record_from_row(row)
        return Finished(
            seq=row.finished_seq,
            card_id=row.card_id,
            rel_path=row.rel_path,
            size_bytes=row.size_bytes,
            mtime_ns=row.mtime_ns,
            generation=row.generation,
            finished_at=row.updated_at,
            camera_key=review.camera_key,
            capture_time=review.capture_time,
            result=row.record.result,
            crops=row.record.outputs.crops,
        )

    def _message(self, decision: Decision) -> NewMessage:
        thumbnail = self._thumbnail(decision) if decision.kind == "alert" else None
        return NewMessage(
            id=decision.id,
            kind=decision.kind,
            card_id=decision.row.card_id,
            label=decision.sighting.label,
            payload=alert_payload(decision, self.device),
            thumbnail=thumbnail,
            journal_seq=decision.row.seq,
        )

    def _thumbnail(self, decision: Decision) -> bytes | None:
        if not self.settings.thumbnail_max_kb or self._facts is None:
            return None
        row, sighting = decision.row, decision.sighting
        crop = crop_for_label(row.crops, sighting.label)
        card_out = self._facts.output_dir / row.card_id
        root = self._card_roots.get(row.card_id)
        photo = row.result.photo
        photo_file = Path(root) / row.rel_path if root and row.result.clip is None and photo is not None else None
        try:
            return thumbnail_jpeg(
                crop_file=card_out / crop if crop else None,
                photo_file=photo_file,
                photo_size_bytes=row.size_bytes,
                photo_mtime_ns=row.mtime_ns,
                box_xyxy_px=sighting.box_xyxy_px,
                photo_width_px=photo.width_px if photo is not None else 0,
                max_bytes=self.settings.thumbnail_max_kb * 1024,
            )
        except (OSError, ValueError, MemoryError) as exc:  # a thumbnail is never worth an alert
            log.warning("alerts: no thumbnail for %s: %s", row.rel_path, exc)
            return None

    def _camera_health(self, finished: list[Finished]) -> None:
        """Warnings a field team should hear of with the status: a camera whose clock was reset (a flat battery) or
        set ahead; the warning goes once a later photo of that camera is dated sensibly."""
        for row in finished:
            when = row.capture_time
            ahead = when is not None and when.timestamp() - row.finished_at > CLOCK_AHEAD_S
            if when is not None and (when.year < CLOCK_RESET_BEFORE_YEAR or ahead):
                key = f"{row.card_id}:{row.camera_key}"
                if key not in self._warnings:
                    log.warning(
                        "alerts: camera %s on card %s dates a photo %s: its clock looks wrong (reset, or not set)",
                        row.camera_key,
                        row.card_id,
                        when,
                    )
                self._warnings[key] = (
                    f"camera clock: camera {row.camera_key} on card {row.card_id} "
                    f"dates {row.rel_path} {when.isoformat()}"
                )
            elif when is not None:
                self._warnings.pop(f"{row.card_id}:{row.camera_key}", None)

    # -- delivery ---------------------------------------------------------------------------------------------

    def _deliver(self, outbox: Outbox) -> None:
        now = time.monotonic()
        for transport in self.transports:
            if now < self._retry_at.get(transport.name, 0.0):
                continue
            for _ in range(20):  # at most 20 batches a look: the journal is looked at in between
                batch = outbox.pending(transport.name, BATCH)
                if not batch:
                    break
                try:
                    acknowledged = transport.send(batch)
                except TransportDownError as exc:
                    self._failed(transport, exc.message)
                    break
                outbox.acknowledge(transport.name, acknowledged)
                self.notifier.heartbeat()
                if not acknowledged:
                    self._failed(transport, "no message was acknowledged in time")
                    break
                self._recovered(transport.name)
                if len(acknowledged) < len(batch):
                    break  # the rest at the next look

    def _failed(self, transport: Transport, problem: str) -> None:
        name = transport.name
        backoff = min(self._backoff_s.get(name, 0.5) * 2, self.settings.retry_max_s)
        if transport.reconnects:
            backoff = min(backoff, 1.0)  # the client reconnects by itself: look again soon
        self._backoff_s[name] = backoff
        self._retry_at[name] = time.monotonic() + backoff
        if self._problems.get(name) != problem:
            log.warning(
                "alerts: %s; the queue waits, trying again (backoff up to %.0f s)", problem, self.settings.retry_max_s
            )
        self._problems[name] = problem

    def _recovered(self, name: str) -> None:
        if name in self._problems:
            log.info("alerts: %s delivers again", name)
            del self._problems[name]
        self._backoff_s.pop(name, None)
        self._retry_at.pop(name, None)

    # -- status -----------------------------------------------------------------------------------------------

    def status(self, outbox: Outbox) -> dict[str, Any]:
        with contextlib.suppress(OutputError):  # the journal cannot be read now: what was read last stands
            self._activity = self.follower.activity(_day_start())
        activity = self._activity
        last = activity.last_finished if activity is not None else None
        state = self._evaluator.state if self._evaluator is not None else RuleState.from_json(outbox.rule_state)
        today = time.strftime("%Y-%m-%d")
        output_dir = self._facts.output_dir if self._facts is not None else None
        disk_free_mb = None
        if output_dir is not None:
            try:
                disk_free_mb = shutil.disk_usage(output_dir).free // (1024 * 1024)
            except OSError:
                disk_free_mb = None
        return {
            "state": "online",
            "device": self.device,
            "version": __version__,
            "time": local_iso(time.time()),
            "last_seen": None
            if last is None
            else {"file": last.rel_path, "card": last.card_id, "time": local_iso(last.updated_at)},
            "photos_today": activity.done_today if activity is not None else None,
            "alerts_today": state.daily.get(today, 0),
            "held_back_today": state.suppressed.get(today, {}),
            "backlog": outbox.backlog([t.name for t in self.transports]),
            "thumbnails_dropped": outbox.dropped_thumbnails(),
            "links": {t.name: self._problems.get(t.name, "ok") for t in self.transports},
            "disk_free_mb": disk_free_mb,
            "warnings": sorted(self._warnings.values()),
        }

    def _publish_status(self, outbox: Outbox) -> None:
        self._next_status = time.monotonic() + self.settings.status_interval_s
        status = self.status(outbox)
        for transport in self.transports:
            transport.publish_status(status)
        try:
            write_bytes_atomic(self.delivery_dir / STATUS_FILE, json.dumps(status, indent=1).encode("utf-8"))
        except OSError as exc:
            log.warning("alerts: cannot write %s: %s", self.delivery_dir / STATUS_FILE, exc)
        outbox.prune([t.name for t in self.transports])


def _day_start() -> float:
    now = datetime.now()
    return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
