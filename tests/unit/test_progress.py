"""The daemon's progress: when a line is due, what it says, and the bar a person at a terminal sees."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

from andi_edge.daemon.progress import DAEMON_FILE, Progress, duration_text


def test_a_line_while_work_is_queued_when_the_queue_empties_and_at_the_end(tmp_path: Path) -> None:
    progress = Progress(tmp_path, interval_s=0.0)
    assert progress.tick({"pending": 0}, 0, 0) is None, "nothing queued, nothing done: silence"
    line = progress.tick({"pending": 90, "claimed": 4, "done": 6}, 6, 0)
    assert line is not None and line.startswith("progress: 6 of 100 photos done") and "none failed" in line
    line = progress.tick({"done": 99, "failed": 1}, 100, 1)  # the queue emptied: said once more
    assert line is not None and "100 of 100 photos done" in line and "1 failed this run" in line
    assert Progress(tmp_path).tick({"done": 3}, 3, 0, final=True) is not None, "a run that did work ends on a line"
    assert Progress(tmp_path).tick({"done": 3}, 0, 0, final=True) is None, "one that did none stays quiet"
    assert duration_text(30) == "30 s" and duration_text(600) == "10 min" and duration_text(7200) == "2.0 h"


def test_the_bar_shows_done_of_total(tmp_path: Path) -> None:
    stream = io.StringIO()
    progress = Progress(tmp_path)
    with contextlib.redirect_stderr(stream):
        progress.show_bar({"pending": 30, "done": 16})
        progress.show_bar({"done": 46})
        progress.close_bar()
    assert "16/46" in stream.getvalue() and "46/46" in stream.getvalue()


def test_the_rate_counts_from_the_first_photo_finished_not_from_the_first_look(tmp_path: Path) -> None:
    """The progress check looks at most once a second: a run of three 1280 px photos in half a second, first
    seen finished at that one look, said 189 photos/s. The rate is the photos after the first over the time since
    the first finished, whenever the line is said."""
    progress = Progress(tmp_path, interval_s=0.0)
    first = time.monotonic() - 4.0
    line = progress.tick({"done": 21}, 21, 0, final=True, first_finished_at=first)
    assert line is not None and "21 of 21 photos done, 5.0 photos/s" in line, line
    line = progress.tick({"pending": 20, "done": 1}, 1, 0, first_finished_at=first)
    assert line is not None and "0.0 photos/s" in line, "one photo is no rate yet"
    progress.write_facts({"pending": 40, "done": 21}, 21, "working", first_finished_at=first)
    facts = json.loads((tmp_path / DAEMON_FILE).read_text())
    assert facts["photos_per_s"] == 5.0 and facts["queued"] == 40
