"""`andi-edge check` of the alerts section: rules the model can satisfy, and destinations that answer.

A rule naming a label the model (and its classifier) never gives would never alert: an error, with the labels it
knows. A broker is connected to (credentials and TLS included) and let go; a webhook's host is reached and its TLS
certificate verified, without posting anything (no false alert reaches a ranger's phone from a check).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

from andi_edge.alerts.config import AlertSettings
from andi_edge.errors import ConfigError

PROBE_TIMEOUT_S = 8.0


def check_rules(settings: AlertSettings, known_labels: Sequence[str]) -> None:
    from andi_edge.alerts.rules import unknown_labels

    for rule in settings.rules:
        unknown = unknown_labels(rule, known_labels)
        if unknown:
            raise ConfigError(
                f"alert rule {rule.title}: the model never names {', '.join(repr(u) for u in unknown)}",
                hint=f"labels it knows: {', '.join(known_labels)}",
            )


def check_destinations(settings: AlertSettings) -> list[str]:
    """One line per destination that answered; ConfigError for the first that does not."""
    from andi_edge.alerts.service import device_name
    from andi_edge.alerts.transports import MqttTransport, TransportDownError

    lines = []
    if settings.mqtt.url:
        transport = MqttTransport(settings.mqtt, device_name(settings))
        try:
            try:
                transport.preflight(PROBE_TIMEOUT_S)
            except TransportDownError as exc:
                raise ConfigError(f"alerts.mqtt.url: {exc.message}", hint=exc.hint) from exc
            if not transport.wait_connected(PROBE_TIMEOUT_S, until_failure=True):
                raise ConfigError(
                    f"alerts.mqtt.url: {transport.name}: {transport.problem}",
                    hint="is the broker running and reachable from here (address, port, firewall), and are the user "
                    "name, password and CA right?",
                )
        finally:
            transport.close()
        lines.append(f"alerts: MQTT broker {transport.name} accepted the connection")
    for webhook in settings.webhooks:
        lines.append(_reach(webhook.url, webhook.ca_file, webhook.timeout_s))
    return lines


def _reach(url: str, ca_file: str, timeout_s: float) -> str:
    from andi_edge.alerts.transports import TransportDownError, reach

    parsed = urlsplit(url)
    secure = parsed.scheme == "https"
    context = ssl.create_default_context(cafile=ca_file or None) if secure else None
    port = parsed.port or (443 if secure else 80)
    try:
        reach(parsed.hostname or "", port, context, min(timeout_s, PROBE_TIMEOUT_S), url, "alerts.webhooks[].ca_file")
    except TransportDownError as exc:
        raise ConfigError(f"alerts.webhooks[].url: {exc.message}", hint=exc.hint) from exc
    return f"alerts: webhook {url} reachable" + (" (TLS verified)" if secure else " (plain HTTP)")
