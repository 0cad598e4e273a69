"""Results people use, on real photos through the real daemon: events in the batch JSON and sidecars, repeat
flags (and their reversal), a Camtrap DP package validated against the TDWG schemas, and the HTML report
rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from andi_edge.results.observation_types import observation_type
from tests.camtrap_validation import package_errors
from tests.integration.cli_runner import run_cli
from tests.integration.daemon_harness import Daemon, make_daemon

SERENGETI = "serengeti_S1_D04_R6_sequence"
#: the Serengeti frames' bursts by EXIF time (18:24:57 x2; 11:20:43-44; 11:30:16-17 x3; a lone 10:42:04)
SERENGETI_EVENTS = [
    ["S1_D04_R6_PICT0020.JPG", "S1_D04_R6_PICT0021.JPG"],
    ["S1_D04_R6_PICT0129.JPG", "S1_D04_R6_PICT0130.JPG"],
    ["S1_D04_R6_PICT0221.JPG", "S1_D04_R6_PICT0222.JPG", "S1_D04_R6_PICT0223.JPG"],
    ["S1_D04_R6_PICT0275.JPG"],
]
# The squirrel camera's fixed false positive (a knot at x~0.64, y~0.11) wobbles in width from photo to photo: at
# IoU 0.8 five of its photos form one pattern.
REPEATS_CONFIG = "repeats:\n  min_photos: 4\n  iou_threshold: 0.8\n  action: {action}\n"


@dataclass
class Run:
    daemon: Daemon
    base_config: str

    def watch_once(self, action: str = "flag") -> None:
        self.daemon.config.write_text(self.base_config + REPEATS_CONFIG.format(action=action))
        self.daemon.run_once()

    def by_file(self) -> dict[str, dict[str, Any]]:
        return {image["file"]: image for image in self.daemon.batch()["images"]}

    def sidecar(self, rel: str) -> dict[str, Any]:
        return json.loads((self.daemon.out / "local" / f"{rel}.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path, model_320: Path) -> Run:
    """A card of three real cameras (Serengeti bursts, the Peru camera with a person and EXIF-less video frames,
    a squirrel sequence), processed once by the daemon."""
    tmp = tmp_path_factory.mktemp("review")
    daemon = make_daemon(tmp, model_320)
    for folder, source in (
        ("serengeti", photos_dir / SERENGETI),
        ("peru", photos_dir / "peru_sdzg2"),
        ("squirrels", photos_dir / "squirrels_yolo" / "images" / "train"),
    ):
        (daemon.card / folder).mkdir()
        for photo in sorted(source.iterdir()):
            if photo.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                shutil.copy2(photo, daemon.card / folder / photo.name)
    result = Run(daemon, daemon.config.read_text())
    result.watch_once()
    return result


def _class_names(batch: dict[str, Any]) -> dict[str, str]:
    return batch["detection_categories"]  # type: ignore[no-any-return]


def test_events_group_bursts_and_are_written_to_batch_json_and_sidecars(run: Run) -> None:
    batch = run.daemon.batch()
    by_file = run.by_file()
    serengeti = {f: e for f, e in by_file.items() if f.startswith("serengeti/")}
    groups: dict[str, list[str]] = defaultdict(list)
    for file, entry in sorted(serengeti.items()):
        groups[entry["event"]["id"]].append(file.split("/")[1])
    assert sorted(groups.values()) == SERENGETI_EVENTS
    typical = batch["info"]["detector_metadata"]["typical_detection_threshold"]
    names = _class_names(batch)
    for members in groups.values():
        entries = [serengeti[f"serengeti/{m}"] for m in members]
        event = entries[0]["event"]
        assert [e["event"]["position"] for e in entries] == list(range(1, len(members) + 1))
        assert {json.dumps(e["event"]["id"]) for e in entries} == {json.dumps(event["id"])}
        assert event["photos"] == len(members)
        candidates = [d for e in entries for d in e["detections"] if d["conf"] >= typical]
        if candidates:  # the label is the class of the event's best detection, from the photos themselves
            best = max(candidates, key=lambda d: d["conf"])
            assert (event["label"], event["conf"]) == (names[best["category"]], best["conf"])
        else:
            assert event["label"] == "empty"
        for member, entry in zip(members, entries, strict=True):
            sidecar = run.sidecar(f"serengeti/{member}")
            assert sidecar["event"] == entry["event"], "sidecars carry the same event as the batch JSON"
            assert sidecar["andi_edge"]["sha256"], "rewriting a sidecar keeps its provenance"
    # EXIF-less video frames cannot be placed in time: each is an event of its own
    untimed = [e for f, e in by_file.items() if f.startswith("peru/") and "datetime" not in e]
    assert untimed and all(e["event"]["photos"] == 1 and e["event"]["start"] is None for e in untimed)
    # still a valid MegaDetector 1.6 file: extra fields only, float confidences, mapped categories
    for entry in batch["images"]:
        for detection in entry.get("detections") or []:
            assert isinstance(detection["conf"], float) and detection["category"] in names


def test_repeat_detections_are_flagged_suppressed_and_reversible(run: Run) -> None:
    listing = run_cli("repeats", "--state", run.daemon.state)
    assert listing.returncode == 0, listing.stderr
    assert "flagged" in listing.stdout and "squirrels" in listing.stdout
    pattern_id = listing.stdout.split()[0]
    flagged = {
        (f, i): d
        for f, e in run.by_file().items()
        for i, d in enumerate(e.get("detections") or [])
        if d.get("repeat", {}).get("pattern") == pattern_id
    }
    assert len({f for f, _ in flagged}) >= 4, "a pattern is seen in at least min_photos photos"
    assert all(d["conf"] > 0 for d in flagged.values()), "flag keeps the confidence"
    file, index = next(iter(flagged))
    original = flagged[(file, index)]["conf"]
    assert run.sidecar(file)["detections"][index]["repeat"]["pattern"] == pattern_id

    run.watch_once(action="suppress")  # MegaDetector's convention: negative confidence
    assert run.by_file()[file]["detections"][index]["conf"] == -original
    assert run.sidecar(file)["detections"][index]["conf"] == -original

    kept = run_cli("repeats", "--state", run.daemon.state, "--keep", pattern_id)
    assert kept.returncode == 0, kept.stderr
    run.watch_once(action="suppress")
    restored = run.by_file()[file]["detections"][index]
    assert restored["conf"] == original and "repeat" not in restored, "a kept pattern is not flagged"
    assert "repeat" not in run.sidecar(file)["detections"][index]

    assert run_cli("repeats", "--state", run.daemon.state, "--unkeep", pattern_id).returncode == 0
    run.watch_once(action="flag")
    assert run.by_file()[file]["detections"][index]["repeat"]["pattern"] == pattern_id
    assert run.by_file()[file]["detections"][index]["conf"] == original
    unknown = run_cli("repeats", "--state", run.daemon.state, "--keep", "rp-nonexistent")
    assert unknown.returncode == 2 and "no repeat pattern" in unknown.stderr


def _deployment_config(path: Path) -> Path:
    config = {
        "project": {"title": "andi-edge test run", "acronym": "AET"},
        "contributors": [{"title": "Test Person", "email": "test@example.org", "role": "principalInvestigator"}],
        "licenses": {"data": "CC0-1.0", "media": "CC-BY-4.0"},
        "timezone": "UTC",
        "taxa": {"zebra": "Equus quagga", "elephant": "Loxodonta africana"},
        "deployments": [
            {
                "deployment_id": "SER-D04",
                "cameras": ["local/folder:serengeti"],
                "latitude": -2.45,
                "longitude": 34.82,
                "timezone": "Africa/Dar_es_Salaam",
                "feature_type": "trailGame",
            },
            {
                "deployment_id": "PERU-1",
                "cameras": ["local/folder:peru"],
                "latitude": -12.6,
                "longitude": -69.2,
                "timezone": "America/Lima",
            },
            {"deployment_id": "SQ-1", "cameras": ["local/folder:squirrels"], "latitude": 45.5, "longitude": -73.6},
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_camtrap_dp_export_validates_against_the_tdwg_schemas(run: Run, tmp_path: Path) -> None:
    config = _deployment_config(tmp_path / "deployments.yaml")
    package = tmp_path / "package"
    result = run_cli(
        "export-camtrap-dp", "--state", run.daemon.state, "-o", package, "--deployment-config", config, "--copy-media"
    )
    assert result.returncode == 0, result.stderr
    assert package_errors(package) == []

    deployments = {d["deploymentID"]: d for d in _csv(package / "deployments.csv")}
    media = {m["mediaID"]: m for m in _csv(package / "media.csv")}
    observations = _csv(package / "observations.csv")
    by_path = {m["filePath"].removeprefix("media/local/"): m for m in media.values()}
    batch = run.by_file()
    assert set(by_path) == set(batch), "every photo of the run is a media row"
    # timestamps carry the deployment's own offset: EXIF 2010-08-19 18:24:57 in Tanzania is +03:00
    assert by_path[f"serengeti/{SERENGETI_EVENTS[0][0]}"]["timestamp"] == "2010-08-19T18:24:57+03:00"
    assert by_path["peru/EK000008.JPG"]["timestamp"] == "2014-07-01T15:21:15-05:00"
    # the Peru camera's video frames have no EXIF time: its clock is flagged; Serengeti's is not
    assert (
        deployments["PERU-1"]["timestampIssues"] == "true" and "no EXIF" in deployments["PERU-1"]["deploymentComments"]
    )
    assert deployments["SER-D04"]["timestampIssues"] == "false"
    assert deployments["SER-D04"]["deploymentStart"] == "2010-08-19T18:24:57+03:00"
    # copied photos are where filePath says, byte for byte
    sample = by_path[f"serengeti/{SERENGETI_EVENTS[0][0]}"]
    assert (package / sample["filePath"]).read_bytes() == (
        run.daemon.card / "serengeti" / SERENGETI_EVENTS[0][0]
    ).read_bytes()

    typical = run.daemon.batch()["info"]["detector_metadata"]["typical_detection_threshold"]
    media_obs = [o for o in observations if o["observationLevel"] == "media"]
    event_obs = [o for o in observations if o["observationLevel"] == "event"]
    # one event-level observation per event, labelled as the batch JSON labels it
    events = {e["event"]["id"]: e["event"] for e in batch.values() if "event" in e}
    assert {o["eventID"] for o in event_obs} == set(events)
    for o in event_obs:
        label = events[o["eventID"]]["label"]
        assert o["observationType"] == ("blank" if label == "empty" else observation_type(label))
        assert o["classificationMethod"] == "machine" and "yolov5n" in o["classifiedBy"]
    # media-level: each box at the threshold is one observation with the batch JSON's box; empty photos are blank
    for path, entry in batch.items():
        m = by_path[path]
        rows = [o for o in media_obs if o["mediaID"] == m["mediaID"]]
        boxes = [d for d in entry.get("detections") or [] if d["conf"] >= typical]
        if "failure" in entry:
            assert rows == []
        elif not boxes:
            assert [r["observationType"] for r in rows] == ["blank"]
        else:
            got = sorted((r["bboxX"], r["bboxY"], r["bboxWidth"], r["bboxHeight"]) for r in rows)
            want = sorted(tuple(str(v) for v in d["bbox"]) for d in boxes)
            assert got == want
            assert all(r["eventID"] == entry["event"]["id"] for r in rows)
    # people: human observations, and their photos (and their event's photos) are not public
    human_media = {o["mediaID"] for o in media_obs if o["observationType"] == "human"}
    assert human_media, "the Peru camera photographed a person"
    assert all(media[m]["filePublic"] == "false" for m in human_media)
    person_events = {o["eventID"] for o in media_obs if o["observationType"] == "human"}
    for o in media_obs:
        if o["eventID"] in person_events:
            assert media[o["mediaID"]]["filePublic"] == "false"
    assert any(m["filePublic"] == "true" for m in media.values())
    descriptor = json.loads((package / "datapackage.json").read_text())
    assert {t["scientificName"] for t in descriptor["taxonomic"]} <= {"Equus quagga", "Loxodonta africana"}
    assert descriptor["temporal"]["start"] == "2010-08-19"


def test_camtrap_dp_export_explains_what_is_missing(run: Run, tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    made = run_cli("export-camtrap-dp", "--state", run.daemon.state, "--template", template)
    assert made.returncode == 0, made.stderr
    text = template.read_text()
    for camera in ("local/folder:serengeti", "local/folder:peru", "local/folder:squirrels"):
        assert camera in text
    unfilled = run_cli(
        "export-camtrap-dp", "--state", run.daemon.state, "-o", tmp_path / "p", "--deployment-config", template
    )
    assert unfilled.returncode == 2 and "still holds the template's placeholder" in unfilled.stderr, unfilled.stderr
    filled = tmp_path / "filled.yaml"  # every TODO filled in but the coordinates, left empty
    text = re.sub(r'"TODO: [^"]*"', '"Someone"', text).replace("timezone: null", "timezone: UTC")
    filled.write_text(re.sub(r"(?m)^#.*TODO.*$\n?", "", text))
    unfilled = run_cli(
        "export-camtrap-dp", "--state", run.daemon.state, "-o", tmp_path / "p", "--deployment-config", filled
    )
    assert unfilled.returncode == 2 and "latitude must be set" in unfilled.stderr, unfilled.stderr
    assert "Traceback" not in unfilled.stderr
    partial = yaml.safe_load(_deployment_config(tmp_path / "d.yaml").read_text())
    partial["deployments"] = partial["deployments"][:1]
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(partial))
    missing = run_cli(
        "export-camtrap-dp",
        "--state",
        run.daemon.state,
        "-o",
        tmp_path / "p",
        "--deployment-config",
        tmp_path / "d.yaml",
    )
    assert (
        missing.returncode == 2
        and "belong to no deployment" in missing.stderr
        and "local/folder:peru" in missing.stderr
    )
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "thesis.docx").write_text("precious")
    refused = run_cli(
        "export-camtrap-dp",
        "--state",
        run.daemon.state,
        "-o",
        occupied,
        "--deployment-config",
        _deployment_config(tmp_path / "ok.yaml"),
    )
    assert refused.returncode == 6 and "already holds other files" in refused.stderr
    assert (occupied / "thesis.docx").read_text() == "precious"
    absolute = run_cli(
        "export-camtrap-dp", "--state", run.daemon.state, "-o", tmp_path / "p2", "--deployment-config",
        _deployment_config(tmp_path / "ok2.yaml"), "--media-base", "/mnt/photos/",
    )  # fmt: skip
    assert absolute.returncode == 2 and "--media-base" in absolute.stderr
    no_journal = run_cli("report", "--state", tmp_path / "nowhere", "-o", tmp_path / "r.html")
    assert no_journal.returncode == 6 and "no journal" in no_journal.stderr


class _Dom(HTMLParser):
    """The parts of the rendered DOM the test looks at."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))

    def find(self, tag: str, attribute: str | None = None) -> list[dict[str, str]]:
        """Attributes of every ``tag`` element (that has ``attribute``, if given)."""
        return [a for t, a in self.elements if t == tag and (attribute is None or attribute in a)]


def _chromium() -> str:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is missing: `make test` installs it (apt-get install chromium-headless-shell)")


def _render(html_file: Path, screenshot: Path, width: int = 1400) -> str:
    browser = _chromium()
    common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--virtual-time-budget=5000",
        f"--window-size={width},2400",
    ]
    dom = subprocess.run(
        [browser, *common, "--dump-dom", html_file.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    subprocess.run(
        [browser, *common, f"--screenshot={screenshot}", html_file.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return dom


def test_html_report_rendered_in_headless_chromium_shows_the_run(run: Run, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    made = run_cli("report", "--state", run.daemon.state, "-o", report, "--samples", "10", "--empty-samples", "6")
    assert made.returncode == 0, made.stderr
    source = report.read_text()
    # the crops were cut at another confidence than the report counts at (0.3 vs 0.25): it says so
    assert "The daemon cut crops (crops/) at confidence &ge; 0.3, so they count fewer boxes" in source
    for chunk in source.split("src=")[1:]:  # self-contained: nothing is fetched
        assert chunk[1:].startswith("data:"), chunk[:80]
    for chunk in source.split("href=")[1:]:  # links open a photo on this machine, when clicked
        assert chunk[1:].startswith(("data:", "file:///")), chunk[:80]
    for width in (800, 1400):  # tables and charts fit the window: no sideways scrolling
        narrow = _Dom()
        narrow.feed(_render(report, tmp_path / f"shot-{width}.png", width))
        assert narrow.find("body")[0].get("data-overflow") == "no", width
    rendered = _render(report, tmp_path / "shot.png")
    dom = _Dom()
    dom.feed(rendered)
    body = dom.find("body")[0]
    assert body.get("data-ready") == "yes", "the page loaded and ran its check"
    batch = run.by_file()
    typical = run.daemon.batch()["info"]["detector_metadata"]["typical_detection_threshold"]
    names = _class_names(run.daemon.batch())
    with_boxes = [f for f, e in batch.items() if any(d["conf"] >= typical for d in e.get("detections") or [])]
    empties = [f for f, e in batch.items() if "failure" not in e and f not in with_boxes]
    # thumbnails: the asked-for samples, every one decoded by the browser, each box drawn
    thumbs = [a for a in dom.find("figure") if "thumb" in a.get("class", "").split()]
    shown = {a["data-file"] for a in thumbs}
    images = dom.find("img")
    assert images and all(i.get("data-decoded") == "yes" for i in images)
    assert not [a for a in thumbs if "broken" in a.get("class", "") or "missing" in a.get("class", "")]
    # the detection samples are those of their own section (a repeat pattern shows one of its photos too)
    section = rendered.split('id="detections"', 1)[1].split("</section>", 1)[0]
    sampled = set(re.findall(r'data-file="([^"]+)"', section))
    assert len(sampled) == 10 and sampled <= set(with_boxes) and len(set(empties) & shown) >= 6
    boxes_drawn = [a for a in dom.find("rect") if "box" in a.get("class", "").split()]
    assert len(boxes_drawn) >= 10
    # per-class counts: photos with a box of the class at the threshold, straight from the batch JSON
    photos_per_class: dict[str, int] = defaultdict(int)
    for f in with_boxes:
        for name in {names[d["category"]] for d in batch[f]["detections"] if d["conf"] >= typical}:
            photos_per_class[name] += 1
    rows = {a["data-class"] for a in dom.find("tr", "data-class")}
    assert set(photos_per_class) <= rows
    totals = {a["data-key"] for a in dom.find("td", "data-key")}
    assert {"photos", "events", "cameras", "repeat patterns"} <= totals
    events = {e["event"]["id"] for e in batch.values() if "event" in e and e["event"]["start"]}
    assert {a["data-event"] for a in dom.find("circle", "data-event")} == events, "one timeline dot per timed event"
    assert dom.find("div", "data-pattern"), "the squirrel pattern is shown"
    # the photos counted as empty whose best box is between the conservative and typical thresholds, to review
    conservative = run.daemon.batch()["info"]["detector_metadata"]["conservative_detection_threshold"]
    to_review = [
        f for f in empties if max((d["conf"] for d in batch[f].get("detections") or []), default=0) >= conservative
    ]
    review = rendered.split('id="review"', 1)[1].split("</section>", 1)[0]
    assert f"To review: {len(to_review)} photo" in review
    assert set(re.findall(r"<li><a href=\"file://[^\"]+\">local/([^<]+)</a>", review)) == set(to_review)
    # every photo is reachable by its label
    every = rendered.split('id="all"', 1)[1].split("</section>", 1)[0]
    listed = [int(n) for n in re.findall(r": (\d+) photos?</summary>", every)]
    assert sum(listed) >= len(batch), "a photo with two labels is under both"
    # the screenshot is a real rendering, not a blank page
    with Image.open(tmp_path / "shot.png") as shot:
        colours = shot.convert("RGB").resize((64, 64)).getcolors(64 * 64)
    assert colours is not None and len(colours) > 50


def test_report_without_the_card_shows_placeholders_never_another_cards_photo(run: Run, tmp_path: Path) -> None:
    card = run.daemon.card
    hidden = card.with_name("card-away")
    card.rename(hidden)
    try:
        # another card in the slot, with photos at the very same paths: not the photos the results are about
        impostor = next((hidden / "serengeti").iterdir()).read_bytes()
        for photo in hidden.rglob("*"):
            if photo.is_file():
                target = card / photo.relative_to(hidden)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(impostor)
        made = run_cli(
            "report", "--state", run.daemon.state, "-o", tmp_path / "r.html", "--samples", "2", "--empty-samples", "1"
        )
        package = tmp_path / "package"
        config = _deployment_config(tmp_path / "deployments.yaml")
        exported = run_cli(
            "export-camtrap-dp",
            "--state",
            run.daemon.state,
            "-o",
            package,
            "--deployment-config",
            config,
            "--copy-media",
        )
    finally:
        shutil.rmtree(card)
        hidden.rename(card)
    assert made.returncode == 0, made.stderr
    assert "not readable here" in made.stdout
    page = (tmp_path / "r.html").read_text()
    assert "photo not available here" in page and "data:image/jpeg" not in page
    assert exported.returncode == 0, exported.stderr
    assert "not copied" in exported.stdout and not (package / "media").exists()
    assert package_errors(package) == []


def test_a_running_daemon_updates_earlier_sidecars_as_a_burst_grows(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    """The rewrite path of a live daemon (on its writer thread), not only the final render of --once."""
    import signal

    from tests.integration.daemon_harness import wait_until

    daemon = make_daemon(tmp_path, model_320)
    burst = SERENGETI_EVENTS[2]
    first = daemon.out / "local" / f"{burst[0]}.json"
    proc = daemon.start()
    try:
        for i, name in enumerate(burst, start=1):
            shutil.copy2(photos_dir / SERENGETI / name, daemon.card / name)

            def grown(n: int = i) -> bool:
                return bool(json.loads(first.read_text()).get("event", {}).get("photos") == n)

            wait_until(grown, 60, f"the first photo's sidecar to show an event of {i}", daemon.log)

        def event_ids() -> set[str]:
            return {json.loads((daemon.out / "local" / f"{n}.json").read_text())["event"]["id"] for n in burst}

        # the render rewrites the burst's sidecars one after another on the writer thread: wait for the last
        wait_until(lambda: len(event_ids()) == 1, 60, "every sidecar of the burst to carry its event", daemon.log)
        assert len(event_ids()) == 1
        assert proc.poll() is None, "still running: these were live updates"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


HOSTILE_NAMES = (
    "<img src=x onerror=document.body.setAttribute('data-pwned','1')>.JPG",
    '"><svg onload=document.body.setAttribute("data-pwned","2")>.jpg',
)


def test_report_escapes_hostile_names_and_failures(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """File names are text from strangers: markup in a name (or in a failure message quoting one) is shown as
    text, never parsed into elements, and the page's CSP lets only its own hashed script run."""
    daemon = make_daemon(tmp_path, model_320)
    burst = sorted((photos_dir / "serengeti_S1_D04_R6_sequence").glob("*.JPG"))
    for name, photo in zip(HOSTILE_NAMES, burst, strict=False):
        shutil.copy2(photo, daemon.card / name)
    (daemon.card / "<b onmouseover=alert(3)>broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    daemon.run_once()
    report = tmp_path / "report.html"
    made = run_cli("report", "--state", daemon.state, "-o", report, "--samples", "10", "--empty-samples", "10")
    assert made.returncode == 0, made.stderr
    source = report.read_text()
    parsed = _Dom()
    parsed.feed(source)
    for tag, attributes in parsed.elements:
        assert not any(a.startswith("on") for a in attributes), f"an event handler reached <{tag}>"
    assert len(parsed.find("script")) == 1 and not parsed.find("svg", "onload")
    assert not [a for a in parsed.find("img") if a.get("src") == "x"]
    assert "&lt;img src=x onerror=" in source and "&lt;b onmouseover=alert(3)&gt;broken.jpg" in source
    csp = next(a["content"] for a in parsed.find("meta", "http-equiv"))
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1] and "sha256-" in csp
    rendered = _Dom()
    rendered.feed(_render(report, tmp_path / "shot.png"))
    body = rendered.find("body")[0]
    assert body.get("data-ready") == "yes", "our own (hashed) script still runs"
    assert "data-pwned" not in body


def test_camtrap_dp_neutralises_formulas_and_exif_control_characters(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    """EXIF text is from strangers: a camera model that is a spreadsheet formula lands in deployments.csv as text
    (a leading apostrophe), control characters are gone, and the package still validates."""
    from PIL import Image

    daemon = make_daemon(tmp_path, model_320)
    (daemon.card / "serengeti").mkdir()
    source = sorted((photos_dir / "serengeti_S1_D04_R6_sequence").glob("*.JPG"))[0]
    with Image.open(source) as im:
        exif = im.getexif()
        exif[0x010F] = '=HYPERLINK("http://example.invalid","click")'  # Make
        exif[0x0110] = "Trail\x1b[31mCam\x07 9"  # Model, with an ANSI escape and a bell
        im.save(daemon.card / "serengeti" / "IMG_0001.JPG", exif=exif, quality=90)
    daemon.run_once()
    [entry] = daemon.batch()["images"]
    assert entry["exif_metadata"]["Model"] == "Trail [31mCam  9", "control characters replaced at decode"
    package = tmp_path / "package"
    made = run_cli(
        "export-camtrap-dp", "--state", daemon.state, "-o", package, "--deployment-config",
        _deployment_config(tmp_path / "deployments.yaml"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert package_errors(package) == []
    [deployment] = [d for d in _csv(package / "deployments.csv") if d["deploymentID"] == "SER-D04"]
    assert deployment["cameraModel"].startswith("'=HYPERLINK("), deployment["cameraModel"]
    assert float(deployment["longitude"]) == 34.82, "numbers stay numbers"
    text = (package / "deployments.csv").read_text()
    assert "\x1b" not in text and "\x07" not in text


def test_names_that_are_not_utf8_work_end_to_end(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """A FAT card mounted without `utf8` gives names such as caf\\xe9.JPG: bytes, not text. The photo is processed
    once like any other; its sidecar keeps the card's bytes; the batch JSON gives the name back exactly (as JSON's
    own \\udcXX escape); text for people (status, report, Camtrap DP) shows the byte as \\xe9."""
    import os

    daemon = make_daemon(tmp_path, model_320)
    folder = daemon.card / "serengeti"
    folder.mkdir()
    frames = sorted((photos_dir / SERENGETI).glob("*.JPG"))
    cafe = os.fsencode(folder) + b"/caf\xe9 100%.JPG"
    shutil.copy2(os.fsencode(frames[0]), cafe)
    shutil.copy2(frames[1], folder / "IMG_0002.JPG")
    with open(os.fsencode(folder) + b"/bad\xff.JPG", "wb") as f:
        f.write(b"not a photo")
    # 200 bytes that are not UTF-8: 800 characters once shown as \xe9, past a file name's 255 bytes
    long_name = b"\xe9" * 200 + b".JPG"
    shutil.copy2(os.fsencode(frames[2]), os.fsencode(folder) + b"/" + long_name)
    daemon.run_once()
    status = run_cli("status", "--state", daemon.state)
    assert "done 3, failed 1" in status.stdout and "bad\\xff.JPG" in status.stdout, status.stdout
    names = {e["file"]: e for e in daemon.batch()["images"]}
    assert set(names) == {"serengeti/IMG_0002.JPG", os.fsdecode(b"serengeti/caf\xe9 100%.JPG"),
                          os.fsdecode(b"serengeti/bad\xff.JPG"), os.fsdecode(b"serengeti/" + long_name)}  # fmt: skip
    assert b"caf\\udce9 100%.JPG" in (daemon.out / "local" / "megadetector_results.json").read_bytes()
    assert os.path.isfile(os.fsencode(daemon.out / "local" / "serengeti") + b"/caf\xe9 100%.JPG.json")
    report = tmp_path / "report.html"
    made = run_cli("report", "--state", daemon.state, "-o", report, "--samples", "5", "--empty-samples", "5")
    assert made.returncode == 0, made.stderr
    assert "caf\\xe9 100%.JPG" in report.read_text()
    package = tmp_path / "package"
    exported = run_cli(
        "export-camtrap-dp", "--state", daemon.state, "-o", package, "--copy-media", "--deployment-config",
        _deployment_config(tmp_path / "deployments.yaml"),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert package_errors(package) == []
    paths = {m["filePath"] for m in _csv(package / "media.csv")}
    assert "media/local/serengeti/caf\\xe9 100%.JPG" in paths
    for path in paths:
        assert (package / path).is_file(), f"media.csv links {path}, which the package holds"


def test_review_from_any_results_file(tmp_path: Path, photos_dir: Path, model_320: Path) -> None:
    """report, export-camtrap-dp and status read what a biologist already has: `detect`'s results (no need to
    process everything again under watch), MegaDetector's own output and AddaxAI's."""
    serengeti = tmp_path / "serengeti"
    shutil.copytree(photos_dir / SERENGETI, serengeti)
    results = tmp_path / "results.json"
    assert run_cli("detect", serengeti, "-m", model_320, "-o", results, "-q").returncode == 0
    report = tmp_path / "report.html"
    made = run_cli("report", results, "-o", report)
    assert made.returncode == 0, made.stderr
    assert "photos" in made.stdout and "not readable here" not in made.stdout  # its image_root holds the photos
    assert report.read_text().count("<img") >= 1
    status = run_cli("status", results)
    assert status.returncode == 0 and f"{len(list(serengeti.glob('*.JPG')))} photos" in status.stdout, status.stderr
    config = _deployment_config(tmp_path / "deployments.yaml")
    config.write_text(config.read_text().replace("local/folder:serengeti", "local/folder:."))
    package = tmp_path / "package"
    exported = run_cli("export-camtrap-dp", results, "-o", package, "--deployment-config", config, "--copy-media")
    assert exported.returncode == 0, exported.stderr
    assert package_errors(package) == []

    reference = photos_dir / "lila_md_testset" / "megadetector_v5a_reference.json"  # MegaDetector's own
    made = run_cli("report", reference, "--images", photos_dir / "lila_md_testset", "-o", tmp_path / "md.html")
    assert made.returncode == 0 and "not readable here" not in made.stdout, made.stdout + made.stderr
    assert "megadetector_v5_camonly" in (tmp_path / "md.html").read_text()
    status = run_cli("status", reference, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["photos"] > 10
    addax = photos_dir / "ecoassist_md_examples" / "output_original.json"  # AddaxAI's: absolute paths elsewhere
    made = run_cli("report", addax, "--images", photos_dir / "ecoassist_md_examples", "-o", tmp_path / "ax.html")
    assert made.returncode == 0, made.stderr
    not_results = run_cli("report", config, "-o", tmp_path / "x.html")
    assert not_results.returncode == 2 and "not a readable JSON file" in not_results.stderr
    escaping = tmp_path / "escaping.json"  # a results file from a stranger may not reach past its photos' folder
    escaping.write_text(json.dumps({"images": [{"file": "a.jpg"}, {"file": "../../etc/passwd", "detections": []}],
                                    "detection_categories": {"1": "animal"}}))  # fmt: skip
    refused = run_cli("export-camtrap-dp", escaping, "--template", tmp_path / "t.yaml")
    assert refused.returncode == 2 and "leads outside the folder of the photos" in refused.stderr, refused.stderr
    (tmp_path / "other.json").write_text('{"results": []}')
    not_results = run_cli("report", tmp_path / "other.json", "-o", tmp_path / "x.html")
    assert not_results.returncode == 2 and "not a MegaDetector results file" in not_results.stderr
    assert "Traceback" not in not_results.stderr
