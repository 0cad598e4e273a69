"""Where alerts go. A transport takes a batch of queued messages and says which it delivered: the seam where
another link (LoRa, SMS, EarthRanger) is added (docs/field/alerts.md says what each would need).

- ``MqttTransport``: QoS 1, a message counts as delivered on the broker's PUBACK. A retained ``status`` topic and a
  last will (``offline``, retained) that the broker publishes when the device goes silent.
- ``WebhookTransport``: one HTTPS POST per message, the JSON body signed with HMAC-SHA256, TLS verified; a 2xx
  answer is the acknowledgement.

A transport never drops a message: what it does not acknowledge stays queued and is sent again, in order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import socket
import ssl
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from andi_edge.alerts.config import MqttSettings, WebhookSettings
from andi_edge.alerts.outbox import Queued
from andi_edge.alerts.payload import topic_level
from andi_edge.errors import AndiEdgeError, ConfigError

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Andi-Edge-Signature"
#: how long a batch waits for the broker's acknowledgements
ACK_TIMEOUT_S = 10.0
#: a webhook batch stops after this long (the rest goes with the next), so that the loop feeds systemd's watchdog
WEBHOOK_BATCH_BUDGET_S = 20.0


class TransportDownError(AndiEdgeError):
    """The link is down (broker unreachable, refused, TLS failed): nothing was delivered; try again later."""

    exit_code = 10


class Transport(Protocol):
    #: a stable name: deliveries are recorded under it
    name: str
    #: the link comes back by itself (an MQTT client reconnects): after a failure, look again soon rather than
    #: back off
    reconnects: bool

    def send(self, batch: Sequence[Queued]) -> list[int]:
        """Deliver the batch in order; the seqs acknowledged (a prefix of the batch, when a later one failed).
        Raises TransportDownError when the link is down."""
        ...

    def publish_status(self, status: dict[str, Any]) -> None: ...

    def send_test(self, payload: dict[str, Any]) -> None:
        """One message, end to end, acknowledged or an error."""
        ...

    def close(self) -> None: ...


def _systemd_credential(credential: str) -> Path | None:
    """The file systemd gave this process for ``credential`` (``LoadCredential=``), if it gave one."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    found = Path(directory) / credential if directory else None
    return found if found is not None and found.is_file() else None


def read_secret(credential: str, path: str, key: str) -> str | None:
    """A secret from systemd's credentials (``LoadCredential=``) when the unit gave one, else from the file the
    config names, which must be readable by its owner only; None when neither is set."""
    given = _systemd_credential(credential)
    if given is not None:
        return given.read_text(encoding="utf-8").rstrip("\r\n")
    if not path:
        return None
    try:
        info = os.stat(path)
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{key}: {path} may be read by others (mode {stat.S_IMODE(info.st_mode):04o})",
                hint=f"chmod 600 {path} (or give it to the unit as the systemd credential '{credential}')",
            )
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc


def credential_path(credential: str, path: str) -> str | None:
    """A file a library opens itself (a TLS key): systemd's credential when given, else the configured path."""
    given = _systemd_credential(credential)
    return str(given) if given is not None else path or None


def reach(host: str, port: int, tls: ssl.SSLContext | None, timeout_s: float, what: str, ca_key: str) -> None:
    """Connect to ``host:port`` and, with ``tls``, complete the handshake (the certificate verified); sends
    nothing. TransportDownError with the precise reason: refused, no route, a certificate not trusted."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            if tls is not None:
                with tls.wrap_socket(raw, server_hostname=host):
                    pass
    except ssl.SSLError as exc:
        raise TransportDownError(
            f"{what}: TLS failed ({exc.reason or exc})",
            hint=f"the certificate must be signed by {ca_key} (or a system CA) for the name in the URL",
        ) from exc
    except OSError as exc:
        raise TransportDownError(
            f"{what}: cannot reach {host}:{port} ({exc.strerror or exc})",
            hint="is it running, and does this device have a route to it?",
        ) from exc


def _message_body(message: Queued, thumbnail: dict[str, Any] | None) -> dict[str, Any]:
    body = dict(message.payload)
    body["thumbnail"] = thumbnail
    if message.thumbnail_dropped:
        body["thumbnail_dropped"] = True  # the backlog outgrew its bound while the link was down
    return body


class MqttTransport:
    reconnects = True

    def __init__(self, settings: MqttSettings, device: str) -> None:
        import paho.mqtt.client as mqtt  # imported here: `watch` and the rest of the CLI never load it
        from paho.mqtt.enums import CallbackAPIVersion

        parsed = urlsplit(settings.url)
        secure = parsed.scheme == "mqtts"
        self.host = parsed.hostname or ""
        self.port = parsed.port or (8883 if secure else 1883)
        self.prefix = urlsplit(settings.url).path.strip("/") or f"andi-edge/{topic_level(device)}"
        self.name = f"{parsed.scheme}://{self.host}:{self.port}/{self.prefix}"
        self.settings = settings
        self.device = device
        self._connected = threading.Event()
        self._attempt_failed = threading.Event()
        self._closing = False
        self._problem = "not connected yet"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id or f"andi-edge-{topic_level(device)}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self._client.will_set(self.status_topic, json.dumps(self._offline()), qos=1, retain=True)
        if settings.username:
            password = read_secret("mqtt-password", settings.password_file, "alerts.mqtt.password_file")
            self._client.username_pw_set(settings.username, password)
        if secure:
            self._client.tls_set(
                ca_certs=settings.ca_file or None,
                certfile=credential_path("mqtt-client-cert", settings.cert_file),
                keyfile=credential_path("mqtt-client-key", settings.key_file),
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self._client.max_inflight_messages_set(50)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._last_status: dict[str, Any] | None = None
        self._client.connect_async(self.host, self.port, settings.keepalive_s)
        self._client.loop_start()

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/status"

    def _offline(self) -> dict[str, Any]:
        return {"state": "offline", "device": self.device}

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._problem = f"the broker refused the connection: {reason}"
            self._attempt_failed.set()
            log.warning("alerts: %s (%s)", self._problem, self.name)
            return
        self._problem = ""
        self._connected.set()
        log.info("alerts: connected to %s", self.name)
        if self._last_status is not None:
            client.publish(self.status_topic, json.dumps(self._last_status), qos=1, retain=True)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        problem = f"cannot reach the broker at {self.host}:{self.port}"
        self._attempt_failed.set()
        if problem != self._problem:
            log.warning("alerts: %s; trying again", problem)
        self._problem = problem

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if not was_connected:
            return  # a refused connection: _on_connect said why
        if not self._closing:
            log.warning("alerts: lost the broker %s (%s); the queue waits", self.name, reason)
        self._problem = f"disconnected: {reason}"

    @property
    def problem(self) -> str:
        return self._problem

    def wait_connected(self, timeout_s: float, until_failure: bool = False) -> bool:
        """Whether the client is connected within ``timeout_s``; ``until_failure``: give up at the first failed
        attempt (a check, a test message: the answer is wanted now, not after the client's retries)."""
        deadline = time.monotonic() + timeout_s
        while not self._connected.wait(0.05):
            if time.monotonic() > deadline or (until_failure and self._attempt_failed.is_set()):
                return False
        return True

    def preflight(self, timeout_s: float) -> None:
        """Reach the broker's port and, for mqtts, complete the TLS handshake with this client's settings: the
        precise reason (refused, no route, certificate not trusted) when it fails, which MQTT's own retries hide."""
        context = None
        if urlsplit(self.settings.url).scheme == "mqtts":
            context = ssl.create_default_context(cafile=self.settings.ca_file or None)
            certfile = credential_path("mqtt-client-cert", self.settings.cert_file)
            if certfile:
                context.load_cert_chain(certfile, credential_path("mqtt-client-key", self.settings.key_file))
        reach(self.host, self.port, context, timeout_s, f"MQTT {self.name}", "alerts.mqtt.ca_file")

    def _publish(self, topic: str, body: bytes, retain: bool = False) -> Any:
        return self._client.publish(topic, body, qos=1, retain=retain)

    def send(self, batch: Sequence[Queued]) -> list[int]:
        if not self._connected.is_set():
            raise TransportDownError(f"MQTT {self.name}: {self._problem}")
        sent: list[tuple[int, list[Any]]] = []
        for message in batch:
            infos = []
            label = topic_level(message.label)
            thumbnail = None
            if self.settings.thumbnails and message.thumbnail:
                thumb_topic = f"{self.prefix}/thumbnails/{label}/{message.id}"
                infos.append(self._publish(thumb_topic, message.thumbnail))
                thumbnail = {"topic": thumb_topic, "bytes": len(message.thumbnail)}
            kind = "updates" if message.kind == "update" else "alerts"
            body = json.dumps(_message_body(message, thumbnail), ensure_ascii=False).encode("utf-8")
            infos.append(self._publish(f"{self.prefix}/{kind}/{label}", body))
            sent.append((message.seq, infos))
        deadline = time.monotonic() + ACK_TIMEOUT_S
        acknowledged: list[int] = []
        for seq, infos in sent:
            for info in infos:
                while not info.is_published():
                    if time.monotonic() > deadline or not self._connected.is_set():
                        return acknowledged  # in order: the rest is sent again
                    time.sleep(0.005)
            acknowledged.append(seq)
        return acknowledged

    def publish_status(self, status: dict[str, Any]) -> None:
        self._last_status = status
        if self._connected.is_set():
            self._publish(self.status_topic, json.dumps(status).encode("utf-8"), retain=True)

    def send_test(self, payload: dict[str, Any]) -> None:
        self.preflight(ACK_TIMEOUT_S)
        if not self.wait_connected(ACK_TIMEOUT_S, until_failure=True):
            raise TransportDownError(f"MQTT {self.name}: {self._problem}")
        info = self._publish(f"{self.prefix}/test", json.dumps(payload).encode("utf-8"))
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while not info.is_published():
            if time.monotonic() > deadline:
                raise TransportDownError(f"MQTT {self.name}: the broker did not acknowledge the test message")
            time.sleep(0.01)

    def close(self) -> None:
        """A clean goodbye: ``offline`` retained (the broker drops the will on a clean disconnect)."""
        self._closing = True
        if self._connected.is_set():
            info = self._publish(self.status_topic, json.dumps(self._offline()).encode("utf-8"), retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.01)
        self._client.disconnect()
        self._client.loop_stop()


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of the exact body bytes, in hex."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_credential(index: int) -> str:
    """The systemd credential that holds the secret of ``alerts.webhooks[index]``."""
    return f"webhook-secret-{index}"


class WebhookTransport:
    reconnects = False

    def __init__(self, settings: WebhookSettings, device: str, index: int = 0) -> None:
        self.settings = settings
        self.device = device
        parsed = urlsplit(settings.url)
        self.name = f"webhook:{parsed.scheme}://{parsed.netloc}{parsed.path}"
        self._secret = read_secret(
            webhook_credential(index), settings.secret_file, f"alerts.webhooks[{index}].secret_file"
        )
        self._context = (
            ssl.create_default_context(cafile=settings.ca_file or None) if parsed.scheme == "https" else None
        )
        if parsed.scheme == "http":
            log.warning("alerts: %s is plain HTTP: alerts cross the network unencrypted", self.name)

    def _post(self, body: bytes, message_id: str) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "andi-edge-alerts", "X-Andi-Edge-Id": message_id}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        request = urllib.request.Request(self.settings.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s, context=self._context) as answer:
                answer.read(65536)
        except urllib.error.HTTPError as exc:
            raise TransportDownError(f"webhook {self.name} answered HTTP {exc.code} {exc.reason}") from exc
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportDownError(f"webhook {self.name}: {reason}") from exc

    def send(self, batch: Sequence[Queued]) -> list[int]:
        acknowledged: list[int] = []
        started = time.monotonic()
        for message in batch:
            if acknowledged and time.monotonic() - started > WEBHOOK_BATCH_BUDGET_S:
                break  # a slow endpoint: the rest at the next look, after the watchdog was fed
            thumbnail = None
            if self.settings.thumbnails and message.thumbnail:
                thumbnail = {"jpeg_base64": base64.b64encode(message.thumbnail).decode("ascii")}
            body = json.dumps(_message_body(message, thumbnail), ensure_ascii=False).encode("utf-8")
            try:
                self._post(body, message.id)
            except TransportDownError:
                if acknowledged:
                    return acknowledged
                raise
            acknowledged.append(message.seq)
        return acknowledged

    def publish_status(self, status: dict[str, Any]) -> None:
        """Webhooks carry alerts only (status is MQTT's retained topic, and `andi-edge status`)."""

    def send_test(self, payload: dict[str, Any]) -> None:
        self._post(json.dumps(payload).encode("utf-8"), str(payload["id"]))

    def close(self) -> None:
        pass
