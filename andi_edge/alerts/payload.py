"""The alert message: versioned JSON, the same for every transport (docs/formats/alerts.md).

Schema 1. ``type`` is ``alert`` (the first photo of an event, or every photo for a ``per: photo`` rule), ``update``
(a later photo of an event already alerted: same ``event``, its own ``id``) or ``test`` (`andi-edge alerts test`).
``id`` is stable: a message delivered twice (at least once means it can be) carries the same id both times.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from andi_edge.alerts.rules import Decision
from andi_edge.sinks.names import display_text

PAYLOAD_SCHEMA = 1
#: characters a topic level may not hold (MQTT wildcards, the level separator, NUL) or had better not (spaces)
_TOPIC_UNSAFE = re.compile(r"[+#/\x00\s]+")


def local_iso(epoch_s: float) -> str:
    """Device local time with its UTC offset."""
    return datetime.fromtimestamp(epoch_s).astimezone().isoformat(timespec="seconds")


def topic_level(text: str) -> str:
    """``text`` as one MQTT topic level: lower case, wildcards, slashes and spaces as ``_``."""
    return _TOPIC_UNSAFE.sub("_", text.strip().lower()) or "_"


def alert_payload(decision: Decision, device: str) -> dict[str, Any]:
    row, sighting = decision.row, decision.sighting
    result = row.result
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "type": decision.kind,
        "id": decision.id,
        "rule": decision.rule,
        "label": sighting.label,
        "category": sighting.category,
        "species": sighting.is_species,
        "conf": round(sighting.conf, 4),
        "label_conf": round(sighting.label_conf, 4),
        "count": sighting.count,
        "card": display_text(row.card_id),
        "file": display_text(row.rel_path),
        "media": "clip" if result.clip is not None or result.frames else "photo",
        "time": {
            # EXIF DateTimeOriginal: the camera's own clock as it was set, without an offset
            "camera": row.capture_time.isoformat() if row.capture_time is not None else None,
            "detected": local_iso(row.finished_at),
        },
        "device": device,
        "event": {
            "id": decision.event_id,
            "photos": decision.event_photos,
            "count": decision.event_count,
            "conf": round(decision.event_conf, 4),
        },
    }
    if sighting.frame_number is not None:
        payload["frame"] = sighting.frame_number
    return payload


def trial_payload(device: str, message_id: str) -> dict[str, Any]:
    """`andi-edge alerts test`: marked as a test in its type, rule and label, so no receiver takes it for real."""
    now = time.time()
    return {
        "schema": PAYLOAD_SCHEMA,
        "type": "test",
        "id": message_id,
        "rule": "test",
        "label": "test",
        "category": "test",
        "species": False,
        "conf": 1.0,
        "label_conf": 1.0,
        "count": 0,
        "card": None,
        "file": None,
        "media": None,
        "time": {"camera": None, "detected": local_iso(now)},
        "device": device,
        "event": None,
        "test": True,
    }
