"""`andi-edge alerts` end to end: `watch` processes a card with people, vehicles and animals while the alerts
process is killed with kill -9 and the broker (Debian's Mosquitto, on loopback) is stopped and restarted; TLS and
passwords on the broker; a signed HTTPS webhook that fails before it answers; `check` and `alerts test`."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from andi_edge.state.journal import open_existing
from tests.brokers import Certificates, HookServer, Mosquitto, Subscriber, expected_alerts, make_ca
from tests.integration.cli_runner import ANDI_EDGE, run_cli
from tests.integration.daemon_harness import FAST_CONFIG, wait_until

#: a card in three batches: people (an event of three), vehicles, animals, empty photos
BATCHES = (
    ("peru_sdzg2/EK000008.JPG", "peru_sdzg2/EK000012.JPG", "ecoassist_md_examples/4.jpg", "peru_sdzg2/EK000009.JPG"),
    (
        "ecoassist_md_examples/3.jpg",
        "lowres_trailcam/heron_20241018012713_0.jpg",
        "peru_sdzg2/EK000010.JPG",
        "peru_sdzg2/EK000016.JPG",
    ),
    (
        "lila_md_testset/snapshot_camdeboo_CDB_S1_A05_A05_R2_CDB_S1_A05_R2_IMAG0084.JPG",
        "lowres_trailcam/caper_20241018010155_23.jpg",
        "ecoassist_md_examples/1.jpg",
        "lila_md_testset/snapshot_kruger_KRU_S1_25_25_R1_KRU_S1_25_R1_IMAG0012.JPG",
    ),
)
RULE_LABELS = ("person", "vehicle")
MIN_CONF = 0.5


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def _site_config(tmp_path: Path, model: Path, alerts: str) -> Path:
    """One file for both processes, as in the field: watch reads its sections, alerts its alerts: section."""
    config = tmp_path / "site.yaml"
    body = FAST_CONFIG.format(min_free_mb=0, crops_min_free_mb=0, metrics='""', once_give_up_s=60)
    config.write_text(
        f"watch: {tmp_path / 'card'}\nmodel: {model}\noutput: {tmp_path / 'out'}\nstate: {tmp_path / 'state'}\n"
        + body
        + alerts
    )
    (tmp_path / "card").mkdir(exist_ok=True)
    return config


def _start(log: Path, *args: str | Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(ANDI_EDGE), *map(str, args)], stdout=out, stderr=out)


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _copy(photos_dir: Path, card: Path, names: tuple[str, ...]) -> None:
    first = len(list(card.rglob("*.*")))
    for i, name in enumerate(names):
        target = card / "DCIM" / f"{first + i:03d}_{Path(name).name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photos_dir / name, target)


def _done(state: Path) -> int:
    path = state / "journal.sqlite3"
    if not path.exists():
        return 0
    journal = open_existing(state)
    try:
        return journal.counts()["done"]
    finally:
        journal.close()


def _alerts(subscriber: Subscriber, prefix: str = "site/alerts/") -> list[dict[str, object]]:
    return [m.json() for m in subscriber.messages(prefix)]


def test_every_alert_arrives_once_or_again_with_its_id_through_kills_and_a_broker_outage(
    tmp_path: Path, model_320: Path, photos_dir: Path, broker: Mosquitto
) -> None:
    config = _site_config(
        tmp_path,
        model_320,
        f"alerts:\n  device: trap-7\n  mqtt: {{url: 'mqtt://127.0.0.1:{broker.port}/site', keepalive_s: 5}}\n"
        "  rules:\n    - {labels: [person, vehicle], min_conf: 0.5, per: photo}\n"
        "  status_interval_s: 0.5\n  poll_interval_s: 0.2\n",
    )
    state, card, log = tmp_path / "state", tmp_path / "card", tmp_path / "processes.log"
    subscriber = Subscriber(broker.port, "site/#", "test-subscriber")
    alerts = _start(log, "alerts", "--config", config)  # before the journal exists: it waits for it
    watch = _start(log, "watch", "--config", config)
    try:
        _copy(photos_dir, card, BATCHES[0])
        wait_until(lambda: _done(state) >= 4, 120, "the first batch", log)
        wait_until(lambda: len(_alerts(subscriber)) >= 1, 30, "a first alert", log)
        _kill9(alerts)
        alerts = _start(log, "alerts", "--config", config)

        broker.stop()  # the link goes down for the second batch
        _copy(photos_dir, card, BATCHES[1])
        wait_until(lambda: _done(state) >= 8, 120, "the second batch", log)
        wait_until(
            lambda: (
                "waiting to be delivered" in run_cli("status", "--state", state).stdout
                and not run_cli("status", "--state", state).stdout.count("alerts: 0 waiting")
            ),
            30,
            "status to show the backlog",
            log,
        )
        _kill9(alerts)  # killed while the link is down, with alerts queued
        alerts = _start(log, "alerts", "--config", config)
        time.sleep(1.0)
        broker.start()

        _copy(photos_dir, card, BATCHES[2])
        time.sleep(0.7)
        _kill9(alerts)  # and once more, somewhere in evaluation or delivery
        alerts = _start(log, "alerts", "--config", config)
        wait_until(lambda: _done(state) >= 12, 120, "the third batch", log)
        expected = expected_alerts(state, RULE_LABELS, MIN_CONF)
        assert len(expected) >= 5, f"the card should hold people and vehicles: {expected}"
        wait_until(
            lambda: {(a["file"], a["label"]) for a in _alerts(subscriber)} >= set(expected), 60, "every alert", log
        )
        time.sleep(1.0)  # anything sent twice has arrived
        status = run_cli("status", "--state", state)
        assert "alerts: 0 waiting to be delivered" in status.stdout, status.stdout
    finally:
        alerts.send_signal(signal.SIGTERM)
        watch.send_signal(signal.SIGTERM)
        alerts.wait(timeout=30)
        watch.wait(timeout=60)
        subscriber.close()
    received = _alerts(subscriber)
    assert {(a["file"], a["label"]) for a in received} == set(expected), "none for a label no rule asks for"
    ids = defaultdict(set)
    for a in received:
        ids[(a["file"], a["label"])].add(a["id"])
        assert a["device"] == "trap-7" and a["type"] == "alert" and float(str(a["conf"])) >= MIN_CONF
    assert all(len(found) == 1 for found in ids.values()), f"a repeat carries the same id: {dict(ids)}"
    assert len({next(iter(v)) for v in ids.values()}) == len(ids)
    first_seen: list[tuple[str, str]] = []
    for a in received:
        key = (str(a["file"]), str(a["label"]))
        if key not in first_seen:
            first_seen.append(key)
    assert first_seen == expected, "alerts arrive in the order the daemon finished the photos"
    thumbnails = [m for m in subscriber.messages("site/thumbnails/")]
    assert thumbnails and all(len(m.payload) <= 20 * 1024 and m.payload[:2] == b"\xff\xd8" for m in thumbnails)
    statuses = [m.json() for m in subscriber.messages("site/status")]
    assert statuses[-1]["state"] == "offline", "a clean stop says offline (retained)"
    online = [s for s in statuses if s["state"] == "online"]
    assert (
        online
        and online[-1]["photos_today"] == 12
        and online[-1]["backlog"] == {f"mqtt://127.0.0.1:{broker.port}/site": 0}
    )
    assert "Traceback" not in log.read_text()


def test_the_broker_says_offline_for_a_device_that_went_silent(
    tmp_path: Path, model_320: Path, photos_dir: Path, broker: Mosquitto
) -> None:
    """The last will: kill -9 leaves no goodbye; the broker publishes the retained ``offline`` when the connection
    drops (or after 1.5x keepalive of silence, a device whose power or link went)."""
    config = _site_config(
        tmp_path,
        model_320,
        f"alerts:\n  mqtt: {{url: 'mqtt://127.0.0.1:{broker.port}/lwt', keepalive_s: 5}}\n"
        "  rules: [{labels: [person]}]\n  status_interval_s: 0.5\n",
    )
    log = tmp_path / "alerts.log"
    alerts = _start(log, "alerts", "--config", config)
    subscriber = Subscriber(broker.port, "lwt/status", "lwt-subscriber")
    try:
        wait_until(lambda: any(m.json()["state"] == "online" for m in subscriber.messages()), 20, "online", log)
        _kill9(alerts)
        wait_until(lambda: subscriber.messages()[-1].json()["state"] == "offline", 20, "the last will", log)
    finally:
        subscriber.close()
    late = Subscriber(broker.port, "lwt/status", "late-subscriber")  # retained: a dashboard opened later sees it
    try:
        wait_until(lambda: bool(late.messages()), 10, "the retained status")
        assert late.messages()[0].retain and late.messages()[0].json()["state"] == "offline"
    finally:
        late.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_ca(tmp_path_factory.mktemp("ca"))


def test_tls_and_a_password_on_the_broker_and_clear_errors_when_they_are_wrong(
    tmp_path: Path, certificates: Certificates
) -> None:
    broker = Mosquitto(tmp_path / "broker", tls=certificates, users={"trap7": "correct horse"})
    broker.start()
    try:
        password = tmp_path / "mqtt-password"
        password.write_text("correct horse\n")
        password.chmod(0o600)
        state = tmp_path / "state"
        state.mkdir()
        url = f"mqtts://localhost:{broker.port}/secure"
        subscriber = Subscriber(
            broker.port, "secure/#", "tls-subscriber", tls=certificates, auth=("trap7", "correct horse")
        )
        config = tmp_path / "alerts.yaml"
        template = (
            "watch: /m\nmodel: m.onnx\noutput: /o\nstate: {state}\nalerts:\n  mqtt:\n    url: '{url}'\n"
            "    username: trap7\n    password_file: {password}\n    ca_file: {ca}\n  rules: [{{labels: [person]}}]\n"
        )
        config.write_text(template.format(state=state, url=url, password=password, ca=certificates.ca))
        sent = run_cli("alerts", "test", "--config", config, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "test alert" in sent.stdout and "delivered" in sent.stdout
        wait_until(lambda: bool(subscriber.messages("secure/test")), 10, "the test message")
        test_message = subscriber.messages("secure/test")[0].json()
        assert test_message["type"] == "test" and test_message["test"] is True
        subscriber.close()

        password.write_text("wrong\n")
        refused = run_cli("alerts", "test", "--config", config, timeout=60)
        assert refused.returncode == 10, refused.stdout + refused.stderr
        assert "NOT delivered" in refused.stdout and "refused" in refused.stdout, refused.stdout

        password.write_text("correct horse\n")
        password.chmod(0o644)
        exposed = run_cli("alerts", "test", "--config", config, timeout=60)
        assert exposed.returncode == 2 and "may be read by others (mode 0644)" in exposed.stderr, exposed.stderr
        password.chmod(0o600)

        config.write_text(template.format(state=state, url=url, password=password, ca=certificates.cert))
        untrusted = run_cli("alerts", "test", "--config", config, timeout=60)  # the wrong CA: TLS fails, clearly
        assert untrusted.returncode == 10, untrusted.stdout + untrusted.stderr
        assert "NOT delivered" in untrusted.stdout and "TLS failed (CERTIFICATE_VERIFY_FAILED)" in untrusted.stdout
    finally:
        broker.stop()


def test_a_signed_https_webhook_gets_every_alert_after_refusing_the_first_tries(
    tmp_path: Path, model_320: Path, photos_dir: Path, certificates: Certificates
) -> None:
    hook = HookServer(certificates, fail_first=3)
    secret = tmp_path / "hook.key"
    secret.write_text("a shared secret\n")
    secret.chmod(0o600)
    config = _site_config(
        tmp_path,
        model_320,
        f"alerts:\n  webhooks:\n    - {{url: 'https://localhost:{hook.port}/andi', secret_file: {secret}, "
        f"ca_file: {certificates.ca}}}\n  rules:\n    - {{labels: [person], per: event}}\n"
        "  retry_max_s: 0.5\n  poll_interval_s: 0.2\n",
    )
    _copy(photos_dir, tmp_path / "card", BATCHES[0] + BATCHES[1])
    assert run_cli("watch", "--config", config, "--once").returncode == 0
    log = tmp_path / "alerts.log"
    alerts = _start(log, "alerts", "--config", config)
    try:
        wait_until(lambda: len(hook.posts) >= 3, 60, "the webhook's posts", log)
        time.sleep(0.5)
    finally:
        alerts.send_signal(signal.SIGTERM)
        alerts.wait(timeout=30)
        hook.close()
    assert hook.refused == 3
    bodies = []
    for post in hook.posts:
        expected = "sha256=" + hmac.new(b"a shared secret", post.body, hashlib.sha256).hexdigest()
        assert post.headers["X-Andi-Edge-Signature"] == expected and post.path == "/andi"
        bodies.append(json.loads(post.body))
    kinds = [(b["type"], Path(str(b["file"])).name) for b in bodies]
    assert kinds == [("alert", "000_EK000008.JPG"), ("update", "003_EK000009.JPG"), ("update", "006_EK000010.JPG")], (
        "the first photo of the event alerts, later ones update it, in order"
    )
    assert len({b["event"]["id"] for b in bodies}) == 1 and bodies[-1]["event"]["photos"] == 3
    assert bodies[0]["thumbnail"]["jpeg_base64"] and bodies[1]["thumbnail"] is None
    assert "Traceback" not in log.read_text()


def test_check_refuses_a_rule_the_model_cannot_satisfy_and_a_host_that_does_not_answer(
    tmp_path: Path, model_320: Path
) -> None:
    from tests.brokers import free_port

    config = _site_config(
        tmp_path,
        model_320,
        f"alerts:\n  mqtt: {{url: 'mqtt://127.0.0.1:{free_port()}/x'}}\n  rules: [{{labels: [person, unicorn]}}]\n",
    )
    bad_rule = run_cli("check", "--config", config)
    assert bad_rule.returncode == 2 and "alert rule person+unicorn: the model never names 'unicorn'" in bad_rule.stderr
    assert "labels it knows: animal, person, vehicle" in bad_rule.stderr
    config.write_text(config.read_text().replace("[person, unicorn]", "[person]"))
    unreachable = run_cli("check", "--config", config, timeout=60)
    assert unreachable.returncode == 2 and "cannot reach 127.0.0.1:" in unreachable.stderr, unreachable.stderr
    assert "Connection refused" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    quick = run_cli("alerts", "--state", tmp_path / "state", "--rule", "person:2")
    assert quick.returncode == 2 and "--rule 'person:2'" in quick.stderr and "between 0 and 1" in quick.stderr
    nothing = run_cli("alerts", "--state", tmp_path / "state", "--rule", "person")
    assert nothing.returncode == 2 and "no alert transport" in nothing.stderr


def test_the_alerts_read_a_journal_they_may_not_write(tmp_path: Path, model_320: Path, photos_dir: Path) -> None:
    """Under systemd the journal's folder is read-only to the alerts unit: with the daemon stopped (no WAL index
    left) the journal is read as it stands, nothing is written beside it, and the queue lives elsewhere."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to take from root the power to write anywhere")
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    state = tmp_path / "state"
    try:
        config = _site_config(
            tmp_path,
            model_320,
            f"alerts:\n  mqtt: {{url: 'mqtt://127.0.0.1:{broker.port}/ro'}}\n  rules: [{{labels: [person]}}]\n"
            f"  state: {tmp_path / 'queue'}\n  poll_interval_s: 0.2\n",
        )
        _copy(photos_dir, tmp_path / "card", BATCHES[0])
        assert run_cli("watch", "--config", config, "--once").returncode == 0
        assert not (state / "journal.sqlite3-wal").exists() and not (state / "journal.sqlite3-shm").exists()
        before = sorted(p.name for p in state.iterdir())
        for path in [state, *state.iterdir()]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        subscriber = Subscriber(broker.port, "ro/alerts/#", "ro-subscriber")
        # root without CAP_DAC_OVERRIDE: the folder's mode holds for it as for the unit's user
        prefix = ("setpriv", "--bounding-set=-dac_override", "--inh-caps=-dac_override") if os.geteuid() == 0 else ()
        log = tmp_path / "alerts.log"
        with log.open("ab") as out:
            alerts = subprocess.Popen(
                [*prefix, str(ANDI_EDGE), "alerts", "--config", str(config)], stdout=out, stderr=out
            )
        try:
            wait_until(lambda: len(subscriber.messages()) >= 1, 30, "an alert from a read-only journal", log)
        finally:
            alerts.send_signal(signal.SIGTERM)
            alerts.wait(timeout=30)
            subscriber.close()
        assert sorted(p.name for p in state.iterdir()) == before, "nothing was written beside the journal"
        assert (tmp_path / "queue" / "alerts.sqlite3").is_file()
    finally:
        broker.stop()
        for path in [state, *state.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_video_clip_alerts_with_the_frame_of_its_best_box(tmp_path: Path, model_320: Path, photos_dir: Path) -> None:
    """A clip is seen over all its analysed frames: a person in its second half alerts, with that frame's number
    and a thumbnail from the crop `watch` cut from that frame (plain HTTP to loopback, unsigned)."""
    from tests.clips import h264

    hook = HookServer(None)
    config = _site_config(
        tmp_path,
        model_320,
        f"alerts:\n  webhooks: [{{url: 'http://127.0.0.1:{hook.port}/clip'}}]\n"
        "  rules: [{labels: [person], per: photo}]\n  poll_interval_s: 0.2\n",
    )
    clip = tmp_path / "card" / "DCIM" / "CLIP0001.MP4"
    clip.parent.mkdir(parents=True)
    h264(clip, [photos_dir / "ecoassist_md_examples/4.jpg", photos_dir / "peru_sdzg2/EK000010.JPG"], seconds=4)
    assert run_cli("watch", "--config", config, "--once").returncode == 0
    log = tmp_path / "alerts.log"
    alerts = _start(log, "alerts", "--config", config)
    try:
        wait_until(lambda: len(hook.posts) >= 1, 30, "the clip's alert", log)
    finally:
        alerts.send_signal(signal.SIGTERM)
        alerts.wait(timeout=30)
        hook.close()
    [post] = hook.posts
    body = json.loads(post.body)
    assert body["media"] == "clip" and body["file"] == "DCIM/CLIP0001.MP4" and body["label"] == "person"
    assert int(str(body["frame"])) >= 20, "the person is in the second half (frames at 10/s, one analysed a second)"
    assert "X-Andi-Edge-Signature" not in post.headers and body["thumbnail"]["jpeg_base64"]
