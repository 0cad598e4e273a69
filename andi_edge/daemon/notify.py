"""sd_notify: tell systemd we are ready, alive (watchdog), what we are doing, and that we are stopping.

A no-op unless ``NOTIFY_SOCKET`` is set (i.e. not under systemd ``Type=notify``). Written here rather than
pulled in: it is one datagram per message.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from andi_edge.sinks.names import display_text

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | None = None
        if address.startswith("@"):
            self._address = "\0" + address[1:]  # abstract namespace socket
        elif address.startswith("/"):
            self._address = address
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval_s: float | None = None
        if watchdog_usec.isdigit() and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            self.watchdog_interval_s = int(watchdog_usec) / 1e6 / 2  # ping twice per timeout, as systemd advises
        self._last_ping = 0.0
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, message: str) -> None:
        if self._socket is None or self._address is None:
            return
        try:
            self._socket.sendto(message.encode("utf-8", "backslashreplace"), self._address)
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={_one_line(status)}")

    def heartbeat(self) -> None:
        """Feed the watchdog; call from the main loop only while it makes progress."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self.send("WATCHDOG=1")
            self._last_ping = now

    def stopping(self, status: str) -> None:
        self.send(f"STOPPING=1\nSTATUS={_one_line(status)}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _one_line(status: str) -> str:
    """A status that may hold a card's path: bytes that are not UTF-8 shown as ``\\xe9``, and no line break
    (a folder named ``x\\nREADY=1`` must not add a message of its own)."""
    return "".join(c if c.isprintable() else "?" for c in display_text(status))
