"""Real receivers for the alerts' tests and benchmark: Debian's Mosquitto on a loopback port (plain, or TLS with a
password), a subscriber that records what arrives, a test CA made with openssl, and an HTTPS server that records
each POST. Nothing is mocked."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require(program: str) -> str:
    found = shutil.which(program) or next(
        (str(p) for p in (Path("/usr/sbin") / program, Path("/usr/bin") / program) if p.is_file()), None
    )
    if found is None:
        raise AssertionError(f"{program} is missing: `make test` installs it (apt-get install mosquitto openssl)")
    return found


@dataclass
class Certificates:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.folder / "server.crt"

    @property
    def key(self) -> Path:
        return self.folder / "server.key"


def make_ca(folder: Path) -> Certificates:
    """A CA and a server certificate for localhost and 127.0.0.1 (EC keys: fast to make)."""
    openssl = require("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=andi-edge test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
    )  # fmt: skip
    return Certificates(folder)


@dataclass
class Mosquitto:
    """A broker of our own on a loopback port; stop() and start() again keep the port (and, with persistence, the
    sessions of subscribers that asked for one)."""

    folder: Path
    port: int = field(default_factory=free_port)
    tls: Certificates | None = None
    users: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.folder}/",
            "autosave_interval 1",
            f"log_dest file {self.folder / 'mosquitto.log'}",
        ]
        if os.geteuid() == 0:  # as root it would become the user mosquitto, who may not read these folders
            lines.append("user root")
        if self.users:
            passwords = self.folder / "passwords"
            passwords.write_text("")
            for user, password in self.users.items():
                subprocess.run([require("mosquitto_passwd"), "-b", str(passwords), user, password], check=True)
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
        (self.folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [require("mosquitto"), "-c", str(self.folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """Subscribes to ``topic`` at QoS 1 with a session the broker keeps (so that nothing published while it
    reconnects after a broker restart is missed) and records every message with its arrival time."""

    def __init__(
        self,
        port: int,
        topic: str,
        client_id: str,
        tls: Certificates | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if auth is not None:
            self.client.username_pw_set(*auth)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca))
        self.client.reconnect_delay_set(1, 1)
        self.topic = topic

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            client.subscribe(self.topic, qos=1)

        def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
            self._subscribed.set()

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            with self._lock:
                self.received.append(Received(message.topic, message.payload, message.retain, time.time()))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect_async("127.0.0.1", port, 30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError(f"could not subscribe to {topic} on port {port}")

    def messages(self, prefix: str = "") -> list[Received]:
        with self._lock:
            return [m for m in self.received if m.topic.startswith(prefix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class HookServer:
    """An HTTPS (or HTTP) server on loopback that records each POST and answers ``fail_first`` of them with 503."""

    def __init__(self, tls: Certificates | None, fail_first: int = 0) -> None:
        self.posts: list[Post] = []
        self.refused = 0
        self.fail_first = fail_first
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.refused < outer.fail_first:
                    outer.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.posts.append(Post(self.path, dict(self.headers.items()), body, time.time()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.cert, tls.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def expected_alerts(state: Path, labels: tuple[str, ...], min_conf: float) -> list[tuple[str, str]]:
    """(file, label) for each finished photo with a box of one of ``labels`` at or above ``min_conf``, in commit
    order: from the journal's committed records at full precision (the outputs' rounding could tip a box over the
    threshold). What a per-photo rule for those labels must alert, to compare with what arrived."""
    from andi_edge.alerts.rules import sightings
    from andi_edge.results.run import RunFacts
    from andi_edge.state.journal import open_existing

    journal = open_existing(state)
    try:
        facts = RunFacts.from_meta(journal.get_meta("run") or {})
        rows = journal.finished_after(0, 1_000_000)
    finally:
        journal.close()
    return [
        (row.rel_path, seen.label)
        for row in rows
        if row.record is not None
        for seen in sightings(row.record.result, facts.labels, min_conf)
        if seen.label in labels
    ]
