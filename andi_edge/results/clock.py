"""Camera clocks: turning camera-local EXIF times into timestamps with an offset, and spotting wrong clocks.

EXIF ``DateTimeOriginal`` has no timezone; the deployment's timezone (an IANA name such as
``Africa/Dar_es_Salaam``, which follows daylight saving, or a fixed offset such as ``+03:00``) comes from config.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from andi_edge.errors import ConfigError
from andi_edge.results.records import PhotoRecord

_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{1,2}):?(\d{2})$")
#: trail cameras whose clock was never set start in their firmware's year (often 2000-2012); before this: unset
EARLIEST_PLAUSIBLE = datetime(2000, 1, 2)
#: a clock running more than this far backwards between consecutive file numbers was reset
BACKWARD_JUMP = timedelta(hours=1)
#: a capture time this far past the export is in the future
FUTURE_SLACK = timedelta(days=1)


def parse_timezone(text: str, where: str) -> tzinfo:
    """``Europe/Brussels``, ``UTC``, ``+02:00`` or ``-0330``."""
    match = _OFFSET.match(text.strip())
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        if delta > timedelta(hours=14):
            raise ConfigError(f"{where}: timezone offset {text!r} is out of range (-14:00..+14:00)")
        return timezone(-delta if sign == "-" else delta)
    if text.strip().upper() in {"UTC", "Z"}:
        return UTC
    try:
        return ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: unknown timezone {text!r}",
            hint="use an IANA name such as Africa/Dar_es_Salaam or Europe/Brussels, or an offset such as +03:00",
        ) from None


def localize(record: PhotoRecord, zone: tzinfo) -> datetime:
    """The photo's capture time with the deployment's offset; the file time when EXIF has none."""
    if record.capture_time is not None:
        return record.capture_time.replace(tzinfo=zone)
    return record.file_mtime.astimezone(zone)


def clock_issues(records: Sequence[PhotoRecord], now: datetime) -> list[str]:
    """Why the timestamps of one camera's photos look wrong (empty when they look fine)."""
    issues: list[str] = []
    ok = [r for r in records if r.failure is None]
    untimed = [r for r in ok if r.capture_time is None]
    if untimed:
        issues.append(
            f"{len(untimed)} photo(s) have no EXIF capture time (e.g. {untimed[0].rel_path}); their timestamp is "
            "the file's modification time"
        )
    timed = sorted((r for r in ok if r.capture_time is not None), key=lambda r: r.rel_path)
    early = [r for r in timed if r.capture_time is not None and r.capture_time < EARLIEST_PLAUSIBLE]
    if early:
        issues.append(f"{len(early)} photo(s) dated before 2000 (e.g. {early[0].rel_path}): the clock was not set")
    horizon = now.replace(tzinfo=None) + FUTURE_SLACK
    future = [r for r in timed if r.capture_time is not None and r.capture_time > horizon]
    if future:
        issues.append(f"{len(future)} photo(s) dated in the future (e.g. {future[0].rel_path})")
    for previous, current in itertools.pairwise(timed):
        if (
            previous.capture_time
            and current.capture_time
            and previous.capture_time - current.capture_time > BACKWARD_JUMP
        ):
            issues.append(
                f"the clock runs backwards from {previous.rel_path} ({previous.capture_time.isoformat()}) to "
                f"{current.rel_path} ({current.capture_time.isoformat()}): was it reset?"
            )
            break
    return issues
