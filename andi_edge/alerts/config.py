"""The ``alerts:`` section of the field config: where alerts go, which detections raise one, and how often.

Declared once here (``declare.setting``): the config file's keys, their checks, `andi-edge alerts`' quick-start
flags and the docs' config reference all come from these fields. The section is read by `andi-edge alerts`, never
by `watch`, which keeps no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from andi_edge.declare import check, setting
from andi_edge.errors import ConfigError

#: ``HH:MM-HH:MM``, device local time; the end may be before the start (across midnight)
_QUIET_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
MQTT_SCHEMES = ("mqtt", "mqtts")
WEBHOOK_SCHEMES = ("https", "http")
RULE_PER = ("photo", "event")


@dataclass(frozen=True)
class AlertRule:
    """Which detections alert: one rule of ``alerts.rules``."""

    labels: tuple[str, ...] = setting(
        factory=tuple,
        help="the labels that alert: detector categories (person, vehicle, animal) or species the classifier names; "
        "a category also matches the species named within it (animal matches every species). Any case",
    )
    min_conf: float = setting(0.5, "a box alerts at or above this detector confidence", min=0, max=1)
    per: str = setting(
        "event",
        "event: the first photo of an event alerts, later photos of the same event send an update instead of "
        "another alert; photo: every photo with the label alerts",
        choices=RULE_PER,
    )
    name: str = setting("", "the rule's name in each alert (empty: its labels joined by '+')")
    cooldown_s: float = setting(
        0.0, "after an alert of a label, no other alert of that label by this rule for this long (0: none)", min=0
    )
    quiet_hours: str = setting(
        "", "HH:MM-HH:MM, device local time (may span midnight): this rule raises no alerts then; empty: none"
    )

    def __post_init__(self) -> None:
        check(self, "alerts.rules[]")
        if not self.labels or any(not label.strip() for label in self.labels):
            raise ConfigError(
                "an alert rule needs at least one label", hint="e.g. labels: [person, vehicle] (or --rule person:0.5)"
            )
        if self.quiet_hours and not _QUIET_HOURS.match(self.quiet_hours):
            raise ConfigError(
                f"alerts.rules[].quiet_hours must be HH:MM-HH:MM (24-hour clock), got {self.quiet_hours!r}",
                hint="e.g. quiet_hours: 22:00-06:00",
            )

    @property
    def title(self) -> str:
        return self.name or "+".join(label.strip().lower() for label in self.labels)

    def quiet_span_min(self) -> tuple[int, int] | None:
        """Quiet hours as (start, end) minutes after midnight, or None."""
        found = _QUIET_HOURS.match(self.quiet_hours)
        if found is None:
            return None
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        return h1 * 60 + m1, h2 * 60 + m2


@dataclass(frozen=True)
class MqttSettings:
    """The MQTT broker alerts are published to (QoS 1; a retained status topic and a last will)."""

    url: str = setting(
        "",
        "mqtt://HOST:PORT/TOPIC_PREFIX, or mqtts:// for TLS (the broker's certificate verified); empty: no MQTT",
    )
    username: str = setting("", "the user name the broker knows this device by (empty: none)")
    password_file: str = setting(
        "",
        "a file (mode 0600 or stricter) holding the broker password; under systemd the credential 'mqtt-password' "
        "(LoadCredential=) is read instead. Empty: no password",
    )
    ca_file: str = setting("", "mqtts: the CA certificate that signed the broker's (empty: the system's CAs)")
    cert_file: str = setting("", "mqtts: this device's client certificate, when the broker asks for one")
    key_file: str = setting("", "mqtts: the client certificate's key (credential 'mqtt-client-key' under systemd)")
    client_id: str = setting("", "the MQTT client id (empty: andi-edge-DEVICE)")
    keepalive_s: int = setting(60, "MQTT keepalive: the broker publishes the last will after 1.5x this", min=5)
    thumbnails: bool = setting(True, "publish each alert's thumbnail (JPEG bytes) on PREFIX/thumbnails/LABEL/ID")

    def __post_init__(self) -> None:
        check(self, "alerts.mqtt")
        if self.url:
            parsed = _parse_url(self.url, MQTT_SCHEMES, "alerts.mqtt.url")
            if parsed.query or parsed.fragment:
                raise ConfigError(f"alerts.mqtt.url takes no query or fragment, got {self.url!r}")

    @property
    def topic_prefix(self) -> str:
        return urlsplit(self.url).path.strip("/") or "andi-edge"


@dataclass(frozen=True)
class WebhookSettings:
    """An HTTPS endpoint each alert is POSTed to (JSON, signed with HMAC-SHA256)."""

    url: str = setting("", "https://HOST/PATH (http:// only to a host on this network, and says so at start)")
    secret_file: str = setting(
        "",
        "a file (mode 0600 or stricter) holding the HMAC-SHA256 key; under systemd the credential "
        "'webhook-secret-N' (N: the webhook's place in the list, from 0) is read instead. Empty: requests are not "
        "signed",
    )
    ca_file: str = setting("", "the CA certificate that signed the endpoint's (empty: the system's CAs)")
    timeout_s: float = setting(10.0, "a request not answered within this is a failed delivery, tried again", above=0)
    thumbnails: bool = setting(True, "include each alert's thumbnail, base64, in the field thumbnail_jpeg")

    def __post_init__(self) -> None:
        check(self, "alerts.webhooks[]")
        _parse_url(self.url, WEBHOOK_SCHEMES, "alerts.webhooks[].url")


@dataclass(frozen=True)
class AlertSettings:
    """Live alerts (`andi-edge alerts`): read from what the journal committed, delivered at least once."""

    device: str = setting("", "this device's name in alerts and topics (empty: the host name)")
    state: str = setting(
        "",
        "the alerts' own delivery state (position, queue): a folder beside the journal's (empty: STATE-alerts, "
        "STATE being the journal's folder)",
    )
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    webhooks: tuple[WebhookSettings, ...] = setting(factory=tuple, help="HTTPS endpoints, each sent every alert")
    rules: tuple[AlertRule, ...] = setting(factory=tuple, help="which detections alert (at least one)")
    daily_cap: int = setting(
        200, "at most this many alerts a day (device local time), all rules together; updates are not counted", min=0
    )
    thumbnail_max_kb: int = setting(20, "each alert's crop thumbnail is a JPEG of at most this size", min=2, max=64)
    backlog_thumbnails_mb: float = setting(
        50.0,
        "undelivered thumbnails take at most this much of the delivery state; beyond it the oldest are dropped "
        "first (never the alerts themselves)",
        min=0,
    )
    status_interval_s: float = setting(60.0, "the retained status message is published this often", above=0)
    poll_interval_s: float = setting(0.5, "the journal is looked at for newly finished photos this often", above=0)
    retry_max_s: float = setting(
        300.0, "a transport that failed is tried again after a backoff that doubles up to this", above=0
    )
    from_start: bool = setting(
        True,
        "the first time the alerts run on a journal: true, every photo it already holds is evaluated; false, only "
        "photos finished from then on",
    )

    def __post_init__(self) -> None:
        check(self, "alerts")

    @property
    def configured(self) -> bool:
        return bool(self.mqtt.url or self.webhooks)

    def validate(self, source: str) -> AlertSettings:
        """What `andi-edge alerts` needs beyond each key's own range: somewhere to send, and a rule."""
        if not self.configured:
            raise ConfigError(
                f"no alert transport in {source}",
                hint="set alerts.mqtt.url or alerts.webhooks (or pass --mqtt mqtt://HOST:PORT/PREFIX)",
            )
        if not self.rules:
            raise ConfigError(
                f"no alert rule in {source}",
                hint="add alerts.rules, e.g. - {labels: [person, vehicle], min_conf: 0.5} (or --rule person:0.5)",
            )
        return self


def _parse_url(url: str, schemes: tuple[str, ...], key: str) -> SplitResult:
    try:
        parsed = urlsplit(url)
        port = parsed.port
    except ValueError as exc:
        raise ConfigError(f"{key}: {url!r} is not a valid URL ({exc})") from exc
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ConfigError(
            f"{key} must be {' or '.join(s + '://HOST' for s in schemes)}..., got {url!r}",
        )
    if parsed.username is not None or parsed.password is not None:
        raise ConfigError(
            f"{key} must not hold a user name or password ({url!r} would put it in logs and unit files)",
            hint="use the username and password_file/secret_file keys (or systemd credentials)",
        )
    del port
    return parsed


def parse_rule(text: str, per: str = "event") -> AlertRule:
    """A quick-start ``--rule LABELS:MIN_CONF`` (``person,vehicle:0.5``; ``:MIN_CONF`` may be left out: 0.5)."""
    labels_text, _, conf_text = text.rpartition(":") if ":" in text else (text, "", "")
    labels = tuple(label.strip() for label in labels_text.split(",") if label.strip())
    try:
        min_conf = float(conf_text) if conf_text else 0.5
    except ValueError:
        raise ConfigError(
            f"--rule {text!r}: {conf_text!r} is not a confidence", hint="LABELS:MIN_CONF, e.g. person,vehicle:0.5"
        ) from None
    try:
        return AlertRule(labels=labels, min_conf=min_conf, per=per)
    except ConfigError as exc:
        raise ConfigError(f"--rule {text!r}: {exc.message}", hint="LABELS:MIN_CONF, e.g. person,vehicle:0.5") from exc
