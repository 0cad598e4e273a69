"""`andi-edge alerts`: live alerts over MQTT and webhooks, in a process (and unit) of its own."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andi_edge.cli.options import EXIT_OK
from andi_edge.errors import ConfigError, UsageError
from andi_edge.logs import configure_logging

if TYPE_CHECKING:
    from andi_edge.alerts.config import AlertSettings
    from andi_edge.alerts.transports import Transport

log = logging.getLogger("andi_edge")


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.mqtt:
        overrides["mqtt"] = {"url": args.mqtt}
    if args.webhook:
        overrides["webhooks"] = [{"url": url} for url in args.webhook]
    if args.rule:
        from andi_edge.alerts.config import parse_rule

        rules = [parse_rule(text, per=args.per or "event") for text in args.rule]
        overrides["rules"] = [{"labels": list(r.labels), "min_conf": r.min_conf, "per": r.per} for r in rules]
    elif args.per:
        raise UsageError("--per goes with --rule (in a config file, each rule has its own `per:`)")
    if args.device:
        overrides["device"] = args.device
    return overrides


def load_alerts(args: argparse.Namespace) -> tuple[AlertSettings, Path, Path]:
    """The alert settings, the journal's folder and the delivery state's folder: from the site config (the same
    file `watch` reads, its ``alerts:`` section) with the flags over it, or from the flags alone (quick start)."""
    from andi_edge.alerts.config import AlertSettings
    from andi_edge.alerts.service import delivery_dir
    from andi_edge.settings import WatchConfig, build_strict, read_yaml_mapping

    overrides = _flag_overrides(args)
    if args.config is not None:
        raw = read_yaml_mapping(args.config)
        section = dict(raw.get("alerts") or {})
        section.update(overrides)
        raw["alerts"] = section
        if args.state is not None:
            raw["state"] = str(args.state)
        config: WatchConfig = build_strict(WatchConfig, raw, str(args.config))
        config.validate(str(args.config))
        settings: AlertSettings = config.alerts
        journal_dir = config.journal_dir
        source = str(args.config)
    else:
        if args.state is None:
            raise UsageError(
                "alerts needs --config FILE (the site config, its alerts: section) or --state STATE (the journal "
                "folder of `andi-edge watch`) with --mqtt/--webhook and --rule"
            )
        try:
            settings = build_strict(AlertSettings, overrides, "command line")
        except ConfigError as exc:
            raise ConfigError(exc.message.replace("(in command line)", "(in the flags)"), exc.hint) from exc
        journal_dir = args.state
        source = "the command line"
    settings.validate(source)
    delivery = args.alerts_state or delivery_dir(settings, journal_dir)
    return settings, journal_dir, delivery


def build_transports(settings: AlertSettings) -> list[Transport]:
    from andi_edge.alerts.service import device_name
    from andi_edge.alerts.transports import MqttTransport, WebhookTransport

    device = device_name(settings)
    transports: list[Transport] = []
    if settings.mqtt.url:
        transports.append(MqttTransport(settings.mqtt, device))
    transports += [WebhookTransport(webhook, device, i) for i, webhook in enumerate(settings.webhooks)]
    return transports


def cmd_alerts(args: argparse.Namespace) -> int:
    from andi_edge.daemon.notify import Notifier

    settings, journal_dir, delivery = load_alerts(args)
    configure_logging(args.log_level or "info")
    transports = build_transports(settings)
    if args.action == "test":
        return _send_test(settings, transports)
    from andi_edge.alerts.service import AlertService

    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        log.info("received %s: delivering what is ready, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    service = AlertService(
        settings=settings,
        journal_dir=journal_dir,
        delivery_dir=delivery,
        transports=transports,
        stop=stop,
        notifier=Notifier(),
    )
    return service.run()


def _send_test(settings: AlertSettings, transports: list[Transport]) -> int:
    import uuid

    from andi_edge.alerts.payload import trial_payload
    from andi_edge.alerts.service import device_name
    from andi_edge.alerts.transports import TransportDownError

    failed: TransportDownError | None = None
    payload = trial_payload(device_name(settings), f"test-{uuid.uuid4().hex[:12]}")
    for transport in transports:
        try:
            transport.send_test(payload)
            print(f"test alert {payload['id']} delivered: {transport.name}")
        except TransportDownError as exc:
            print(f"test alert NOT delivered: {exc.message}")
            failed = exc
        finally:
            transport.close()
    if failed is not None:
        raise TransportDownError(
            "the test alert did not reach every destination",
            hint="check the address, port, credentials and TLS settings; `andi-edge check --config FILE` tries each",
        )
    return EXIT_OK


def _help(cls: type[Any], name: str) -> str:
    """A quick-start flag's help: its setting's own declaration (one text for the flag, the config and the docs)."""
    from dataclasses import fields

    from andi_edge.declare import declaration

    declared = declaration(next(f for f in fields(cls) if f.name == name))
    assert declared is not None
    return declared.help


def register(commands: Any) -> None:
    from andi_edge.alerts.config import AlertRule, AlertSettings, MqttSettings, WebhookSettings

    alerts = commands.add_parser(
        "alerts",
        help="live alerts: people, vehicles, species of interest over MQTT and webhooks, stored while the link is down",
        description=(
            "Follow the journal of `andi-edge watch` (read-only) and send an alert for each photo or clip the rules "
            "ask for, in the order the daemon finished them: MQTT (QoS 1, retained status, last will) and/or HTTPS "
            "webhooks (HMAC-SHA256 signed). Alerts are queued on the device and delivered at least once, each with a "
            "stable id, after any outage. `alerts test` sends one marked message end to end."
        ),
        epilog=(
            "Quick start: andi-edge alerts --state STATE --mqtt mqtt://HOST:1883/PREFIX --rule person,vehicle:0.5. "
            "Settings: the alerts: section of the site config (docs/field/alerts.md); flags override it."
        ),
    )
    alerts.add_argument(
        "action", nargs="?", choices=["run", "test"], default="run", help="run (default), or test: one message"
    )
    alerts.add_argument("--config", "-c", type=Path, help="the site config (the same file `watch` reads)")
    alerts.add_argument("--state", type=Path, help="the journal folder of `andi-edge watch` (overrides the config)")
    alerts.add_argument(
        "--alerts-state",
        type=Path,
        default=None,
        help="the alerts' own queue and position (default: alerts.state, else STATE-alerts beside the journal's)",
    )
    alerts.add_argument("--mqtt", metavar="URL", help=f"alerts.mqtt.url: {_help(MqttSettings, 'url')}")
    alerts.add_argument(
        "--webhook",
        metavar="URL",
        action="append",
        default=[],
        help=f"alerts.webhooks[].url (repeatable): {_help(WebhookSettings, 'url')}",
    )
    alerts.add_argument(
        "--rule",
        metavar="LABELS:MIN_CONF",
        action="append",
        default=[],
        help="labels (comma-separated) that alert at or above a confidence, e.g. person,vehicle:0.5 (repeatable)",
    )
    alerts.add_argument("--per", choices=["photo", "event"], default=None, help=f"of --rule: {_help(AlertRule, 'per')}")
    alerts.add_argument("--device", default=None, help=f"alerts.device: {_help(AlertSettings, 'device')}")
    alerts.set_defaults(handler=cmd_alerts)
