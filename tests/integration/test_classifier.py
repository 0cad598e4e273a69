"""The species classifier end to end: crops from the sample photos, a real (small) training run, export, eval and
INT8 through the CLI; then ``detect``, ``batch`` and ``watch`` running it as the second stage, and what that
changes downstream (MegaDetector classifications, crop folders, events, the report, Camtrap DP).

The classifier is tiny and trained on few crops (see tests/classifier_factory.py): the tests check what the
pipeline does with its answers, and that its answers are its own (labels in the right order, the crops it was
shown), not that it is a good classifier.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from andi_edge.runtime.classifier import crop_tensor, crop_windows_xyxy_px, cut
from andi_edge.runtime.classifier_card import CropPolicy, card_from_mapping
from tests.camtrap_validation import package_errors
from tests.classifier_factory import OWL, SQUIRREL, dataset_args, owl_site
from tests.integration.cli_runner import run_cli
from tests.integration.daemon_harness import make_daemon

# 12 owl frames (three sites, bursts among them) for the daemon and detect tests
OWL_PHOTOS = 12


def _md_classification_rules(document: dict[str, Any]) -> None:
    """MegaDetector 1.6's rules for classifications, as Timelapse and AddaxAI read them."""
    categories = document["classification_categories"]
    assert categories and "0" not in categories and all(k.isdigit() for k in categories)
    for image in document["images"]:
        for det in image.get("detections") or []:
            labels = det.get("classifications")
            if labels is None:
                continue
            assert labels, "a classified box lists at least one label"
            assert all(isinstance(i, str) and i in categories for i, _ in labels)
            confs = [c for _, c in labels]
            assert confs == sorted(confs, reverse=True) and all(0 <= c <= 1 for c in confs)
            assert len({i for i, _ in labels}) == len(labels)


def _owl_card(photos_dir: Path, folder: Path, count: int = OWL_PHOTOS) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in (photos_dir / "burrowing_owl").iterdir() if p.suffix.upper() == ".JPG")[:count]
    for name in names:
        shutil.copy2(photos_dir / "burrowing_owl" / name, folder / name)
    return names


# -- toolchain ------------------------------------------------------------------------------------------------


def test_crops_dataset_records_its_policy_and_never_splits_a_location(
    tmp_path: Path, photos_dir: Path, model_320: Path, species_classifier: dict[str, Path]
) -> None:
    by_class = json.loads((species_classifier["crops"] / "crops.json").read_text())
    assert by_class["crop_policy"] == {"padding": 0.1, "square": True}
    assert by_class["labels"] == [OWL, SQUIRREL]
    assert {s["kind"] for s in by_class["sources"]} == {"boxes", "image labels + detector crops"}
    for crop in by_class["crops"]:
        path = species_classifier["crops"] / crop["file"]
        with Image.open(path) as im:
            assert max(im.size) <= by_class["max_side_px"]
        assert crop["file"].startswith(f"crops/{crop['split']}/")
        if crop["label"] == OWL:
            assert crop["origin"] == "detector" and crop["location"] == owl_site(Path(crop["source"]).name)
        else:
            assert crop["origin"] == "annotation" and crop["label"] == SQUIRREL
    assert by_class["counts"]["train"][OWL] > 0 and by_class["counts"]["train"][SQUIRREL] > 0

    out = tmp_path / "by-location"
    made = run_cli(*dataset_args(photos_dir, species_classifier["labels_csv"], model_320, out, by="location"))
    assert made.returncode == 0, made.stderr
    manifest = json.loads((out / "crops.json").read_text())
    split_of: dict[str, set[str]] = {}
    for crop in manifest["crops"]:
        split_of.setdefault(crop["location"], set()).add(crop["split"])
    assert all(len(splits) == 1 for splits in split_of.values()), split_of
    owl_sites = {c["location"] for c in manifest["crops"] if c["label"] == OWL}
    assert owl_sites == {"Otay", "RJER", "RanchoJamul", "buow-short-names"}, owl_sites
    unknown = tmp_path / "unknown-class"
    refused = run_cli(
        *dataset_args(photos_dir, species_classifier["labels_csv"], model_320, unknown), "--classes", "deer"
    )
    assert refused.returncode == 2 and "no such class" in refused.stderr and "--classes" in refused.stderr
    assert "Traceback" not in refused.stderr and not (unknown / "crops.json").exists()


def test_training_run_records_its_config_and_the_card_says_how_to_feed_it(
    species_classifier: dict[str, Path],
) -> None:
    run = json.loads((species_classifier["run"] / "run.json").read_text())
    assert run["request"]["arch"] == "mobilenet_v3_small" and run["request"]["seed"] == 0
    assert run["pretrained"] is None, "no ImageNet file here: trained from scratch"
    assert set(run["train_counts"]) == {OWL, SQUIRREL}
    assert 0 <= run["best_epoch"] < run["epochs_run"] <= 8
    assert len(run["history"]) == run["epochs_run"]

    import onnx

    model = onnx.load(str(species_classifier["model"]))
    meta = {p.key: p.value for p in model.metadata_props}
    card = card_from_mapping(json.loads(meta["andi_edge.classifier_card"]), "model")
    assert card.labels == (OWL, SQUIRREL) and card.architecture == "mobilenet_v3_small"
    assert (card.input_height_px, card.input_width_px) == (64, 64)
    assert card.crop == CropPolicy(0.1, True) and card.licence == "CC0-1.0"
    manifest = json.loads((species_classifier["crops"] / "crops.json").read_text())
    assert set(card.training_locations) == {c["location"] for c in manifest["crops"] if c["split"] == "train"}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param, "a dynamic batch: a photo's crops run in one call"


def test_training_says_where_imagenet_weights_go_and_starts_from_given_ones(
    tmp_path: Path, species_classifier: dict[str, Path]
) -> None:
    crops = species_classifier["crops"]
    quick: list[str | Path] = ["--crops", crops, "--imgsz", "64", "--epochs", "1", "--batch", "16"]
    required = run_cli(
        "classifier", "train", *quick, "--arch", "alexnet", "--pretrained", "required", "-o", tmp_path / "a"
    )
    assert required.returncode != 0 and "Traceback" not in required.stderr
    assert "alexnet-owt-7be5be79.pth" in required.stderr and "download.pytorch.org/models" in required.stderr
    scratch = run_cli("classifier", "train", *quick, "--arch", "mobilenet_v3_small", "-o", tmp_path / "s")
    assert scratch.returncode == 0 and "TRAINING FROM SCRATCH" in scratch.stderr
    import torch
    from torchvision import models

    torch.save(models.mobilenet_v3_small().state_dict(), tmp_path / "start.pth")
    given = run_cli(
        "classifier", "train", *quick, "--arch", "mobilenet_v3_small", "--weights", tmp_path / "start.pth",
        "-o", tmp_path / "w",
    )  # fmt: skip
    assert given.returncode == 0, given.stderr
    assert "FROM SCRATCH" not in given.stderr
    assert json.loads((tmp_path / "w" / "run.json").read_text())["pretrained"].endswith("start.pth")
    torch.save(models.alexnet().state_dict(), tmp_path / "other.pth")
    wrong = run_cli(
        "classifier", "train", *quick, "--arch", "mobilenet_v3_small", "--weights", tmp_path / "other.pth",
        "-o", tmp_path / "x",
    )  # fmt: skip
    assert wrong.returncode != 0 and "is it this architecture?" in wrong.stderr


def test_eval_reports_seen_and_unseen_locations_and_a_confusion_matrix(
    tmp_path: Path, species_classifier: dict[str, Path]
) -> None:
    report_path, png = tmp_path / "eval.json", tmp_path / "confusion.png"
    done = run_cli(
        "classifier", "eval", species_classifier["model"], "--crops", species_classifier["crops"], "--split", "all",
        "-o", report_path, "--confusion", png,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    manifest = json.loads((species_classifier["crops"] / "crops.json").read_text())
    overall = report["overall"]
    assert overall["crops"] == len(manifest["crops"])
    assert report["seen_locations"]["crops"] + report["unseen_locations"]["crops"] == overall["crops"]
    matrix = np.asarray(overall["confusion"]["matrix"])
    assert matrix.sum() == overall["crops"] and overall["confusion"]["labels"] == [OWL, SQUIRREL]
    assert overall["top1"] == pytest.approx(np.trace(matrix) / matrix.sum(), abs=1e-4)
    assert {row["support"] for row in overall["per_label"].values()} == set(matrix.sum(axis=1).tolist())
    # on the crops it learnt from it has learnt something: well above always answering "owl"
    assert overall["f1_macro"] > 0.6, overall
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_int8_classifier_is_gated_and_compared_with_its_source(
    tmp_path: Path, species_classifier: dict[str, Path]
) -> None:
    int8 = tmp_path / "species-int8.onnx"
    done = run_cli(
        "classifier", "quantize", species_classifier["model"], "--crops", species_classifier["crops"], "-o", int8,
        "--gate-split", "all", "--max-loss", "0.2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    extra = json.loads(meta["andi_edge.classifier_card"])["extra"]
    assert extra["precision"] == "int8" and extra["quantize_gate"]["passed"] is True
    assert extra["quantize_gate"]["metric"] == "f1_macro"
    compared = run_cli(
        "classifier", "eval", int8, "--crops", species_classifier["crops"], "--split", "all",
        "--reference", species_classifier["model"], "-o", tmp_path / "r.json",
    )  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    against = json.loads((tmp_path / "r.json").read_text())["against_reference"]
    assert 0.5 <= against["top1_agreement"] <= 1.0
    refused = run_cli(
        "classifier", "quantize", int8, "--crops", species_classifier["crops"], "-o", tmp_path / "again.onnx"
    )
    assert refused.returncode != 0 and "already INT8" in refused.stderr and "Traceback" not in refused.stderr
    # `andi-edge quantize` knows a classifier by its card: a crops dataset calibrates it, its val crops gate it
    plain = run_cli(
        "quantize", species_classifier["model"], "--calib", species_classifier["crops"], "-o", tmp_path / "q.onnx",
        "--max-loss", "1.0",
    )  # fmt: skip
    assert plain.returncode == 0 and "quantized classifier" in plain.stdout, plain.stderr
    strict = run_cli(
        "quantize", species_classifier["model"], "--calib", species_classifier["crops"], "-o", tmp_path / "s.onnx",
        "--max-loss", "-1",
    )  # fmt: skip
    assert strict.returncode == 7 and "F1-macro" in strict.stderr and not (tmp_path / "s.onnx").exists()


def test_a_device_runs_the_gated_int8_classifier_where_its_profile_prefers_int8(
    tmp_path: Path, model_320: Path, species_classifier: dict[str, Path]
) -> None:
    fp32 = tmp_path / "species.onnx"
    shutil.copy2(species_classifier["model"], fp32)
    config = tmp_path / "watch.yaml"
    config.write_text(
        f"watch: {tmp_path}\noutput: {tmp_path / 'out'}\nmodel: {model_320}\nbackend:\n  prefer_int8: true\n"
        f"classifier:\n  model: {fp32}\n"
    )
    before = run_cli("check", "--config", config)
    assert before.returncode == 0, before.stderr
    assert "classifier choice: as configured: no species-int8.onnx beside it" in before.stdout
    made = run_cli(
        "classifier", "quantize", fp32, "--crops", species_classifier["crops"], "-o", tmp_path / "species-int8.onnx",
        "--gate-split", "all", "--max-loss", "1.0",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    after = run_cli("check", "--config", config)
    assert after.returncode == 0, after.stderr
    assert "classifier choice: INT8: species-int8.onnx passed its gate (F1-macro" in after.stdout
    assert "classifier ok: " + str(tmp_path / "species-int8.onnx") in after.stdout
    config.write_text(config.read_text().replace("prefer_int8: true", "prefer_int8: false"))
    assert "classifier choice: as configured" in run_cli("check", "--config", config).stdout


# -- the runtime ----------------------------------------------------------------------------------------------


def test_detect_with_the_classifier_names_the_species_in_megadetector_format(
    tmp_path: Path, photos_dir: Path, model_320: Path, species_classifier: dict[str, Path]
) -> None:
    owls = tmp_path / "owls"
    _owl_card(photos_dir, owls)
    out = tmp_path / "md.json"
    done = run_cli(
        "detect", owls, photos_dir / "squirrels_yolo" / "images", "-m", model_320,
        "--classifier", species_classifier["model"], "-o", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    _md_classification_rules(document)
    assert document["info"]["classifier"] == "species.onnx"
    assert document["classification_categories"] == {"1": OWL, "2": SQUIRREL}
    assert document["info"]["andi_edge"]["classifier"]["model_sha256"]
    classified = {OWL: 0, SQUIRREL: 0}
    right = {OWL: 0, SQUIRREL: 0}
    for image in document["images"]:
        truth = SQUIRREL if "squirrel" in image["file"] else OWL
        for det in image.get("detections") or []:
            labelled = "classifications" in det
            # animal boxes at or above classifier.min_conf (0.2) are classified, and nothing else
            assert labelled == (det["category"] == "1" and det["conf"] >= 0.2), det
            if labelled:
                assert len(det["classifications"]) == 2, "top-3 of two labels"
                classified[truth] += 1
                right[truth] += document["classification_categories"][det["classifications"][0][0]] == truth
    assert classified[OWL] >= 5 and classified[SQUIRREL] >= 3, classified
    # these are photos it was trained on: if the labels were shuffled or the crops misplaced it would not be right
    assert right[OWL] + right[SQUIRREL] >= 0.7 * (classified[OWL] + classified[SQUIRREL]), (right, classified)
    assert "burrowing owl" in done.stdout, "the summary counts photos by species"


def test_bench_reports_the_classify_stage(
    tmp_path: Path, photos_dir: Path, model_320: Path, species_classifier: dict[str, Path]
) -> None:
    owls = tmp_path / "owls"
    _owl_card(photos_dir, owls, count=6)
    out = tmp_path / "bench.json"
    done = run_cli(
        "bench", "-m", model_320, "--images", owls, "--classifier", species_classifier["model"], "--runs", "1",
        "--warmup", "1", "-o", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    photos = json.loads(out.read_text())["photos"]
    assert photos["stage_ms"]["classify"]["n"] == 6
    cost = photos["classifier"]
    assert cost["model_file"] == "species.onnx" and cost["photos_with_crops"] >= 3
    assert cost["ms_per_crop"] > 0 and cost["ms_per_photo_with_crops"]["mean"] >= cost["ms_per_photo_all"]["mean"]
    # owls are small in 2048 px frames: the 320 px detector's decode is too small for their crops
    assert cost["photos_decoded_again"] >= 1 and photos["stage_ms"]["crop_decode"]["n"] == cost["photos_decoded_again"]
    assert cost["classify_ms_per_crop"] < cost["ms_per_crop"]
    assert "classifier species.onnx" in done.stdout and "ms a crop" in done.stdout


def test_batch_runs_the_classifier_too(
    tmp_path: Path, photos_dir: Path, model_320: Path, species_classifier: dict[str, Path]
) -> None:
    owls = tmp_path / "owls"
    _owl_card(photos_dir, owls, count=4)
    detect_out, batch_out = tmp_path / "detect.json", tmp_path / "batch.json"
    common: list[str | Path] = ["-m", model_320, "--classifier", species_classifier["model"]]
    assert run_cli("detect", owls, *common, "-o", detect_out).returncode == 0
    done = run_cli("batch", owls, *common, "-o", batch_out, "--workers", "1")
    assert done.returncode == 0, done.stderr
    by_detect = {i["file"]: i.get("detections") for i in json.loads(detect_out.read_text())["images"]}
    batch = json.loads(batch_out.read_text())
    assert batch["classification_categories"] == {"1": OWL, "2": SQUIRREL}
    assert {i["file"]: i.get("detections") for i in batch["images"]} == by_detect


def test_a_classifier_someone_else_trained_plugs_in_with_a_yaml_card(
    tmp_path: Path, photos_dir: Path, model_320: Path
) -> None:
    """A BYO classifier: one crop per call (batch fixed to 1), probabilities out, inputs on the 0-1 scale, and a
    YAML card beside it. It names a crop by its dominant colour, so what it must answer for each box can be
    worked out here from the photo, and checked against what the pipeline made of it."""
    import torch

    class Dominant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(x.mean(dim=(2, 3)) * 40.0, dim=1)

    model = tmp_path / "colours.onnx"
    torch.onnx.export(Dominant(), (torch.zeros(1, 3, 32, 32),), str(model), input_names=["x"], output_names=["p"],
                      opset_version=17, dynamo=False)  # fmt: skip
    card_yaml = {
        "name": "colours", "labels": ["reddish", "greenish", "bluish"], "input_size": 32, "normalisation": "unit",
        "output": "probabilities", "crop": {"padding": 0.0, "square": False}, "licence": "MIT",
    }  # fmt: skip
    (tmp_path / "colours.yaml").write_text(yaml.safe_dump(card_yaml))
    photos = tmp_path / "photos"
    photos.mkdir()
    for source in sorted((photos_dir / "serengeti_S1_D04_R6_sequence").glob("*.JPG")):
        shutil.copy2(source, photos / source.name)
    out = tmp_path / "md.json"
    done = run_cli(
        "detect", photos, "-m", model_320, "--classifier", model, "--classifier-min-conf", "0.1",
        "--classifier-classes", "all", "--full-decode", "-o", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    _md_classification_rules(document)
    card = card_from_mapping(yaml.safe_load((tmp_path / "colours.yaml").read_text()), "colours.yaml")
    checked = 0
    for image in document["images"]:
        with Image.open(photos / image["file"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        height, width = rgb.shape[:2]
        for det in image["detections"]:
            if "classifications" not in det:
                continue
            x, y, w, h = det["bbox"]
            xyxy = np.asarray([[x * width, y * height, (x + w) * width, (y + h) * height]], np.float32)
            window = crop_windows_xyxy_px(xyxy, width, height, card.crop)[0]
            means = crop_tensor(cut(rgb, window), card).mean(axis=(1, 2)) * 40.0
            expected = np.exp(means - means.max()) / np.exp(means - means.max()).sum()
            got = {int(i) - 1: c for i, c in det["classifications"]}
            # the box is rounded to 4 decimals in the file: the crop re-cut here may differ by a pixel
            for label, conf in got.items():
                assert conf == pytest.approx(expected[label], abs=0.03)
            checked += 1
    assert checked >= 3, "the Serengeti frames have animals to classify"


def test_classifier_mistakes_are_clear_errors(
    tmp_path: Path, photos_dir: Path, model_320: Path, species_classifier: dict[str, Path]
) -> None:
    photo = photos_dir / "burrowing_owl"
    no_card = tmp_path / "bare.onnx"
    import onnx

    bare = onnx.load(str(species_classifier["model"]))
    del bare.metadata_props[:]
    onnx.save(bare, str(no_card))
    failed = run_cli("detect", photo, "-m", model_320, "--classifier", no_card, "-o", tmp_path / "a.json")
    assert failed.returncode != 0 and "no classifier card" in failed.stderr and "bare.yaml" in failed.stderr
    wrong_class = run_cli(
        "detect", photo, "-m", model_320, "--classifier", species_classifier["model"],
        "--classifier-classes", "deer", "-o", tmp_path / "b.json",
    )  # fmt: skip
    assert wrong_class.returncode != 0 and "no such class" in wrong_class.stderr
    (tmp_path / "bad.yaml").write_text("labels: [a, a]\ninput_size: 64\n")
    bad_card = run_cli(
        "detect", photo, "-m", model_320, "--classifier", no_card, "--classifier-card", tmp_path / "bad.yaml",
        "-o", tmp_path / "c.json",
    )  # fmt: skip
    assert bad_card.returncode != 0 and "labels repeat" in bad_card.stderr
    (tmp_path / "three.yaml").write_text("labels: [a, b, c]\ninput_size: 64\n")
    mismatch = run_cli(
        "detect", photo, "-m", model_320, "--classifier", no_card, "--classifier-card", tmp_path / "three.yaml",
        "-o", tmp_path / "d.json",
    )  # fmt: skip
    assert mismatch.returncode != 0 and "scores 2 labels but its card lists 3" in mismatch.stderr
    swapped = run_cli("detect", photo, "-m", species_classifier["model"], "-o", tmp_path / "e.json")
    assert swapped.returncode != 0 and "is a crop classifier, not a detector" in swapped.stderr
    for result in (failed, wrong_class, bad_card, mismatch, swapped):
        assert "Traceback" not in result.stderr
    info = run_cli("info", species_classifier["model"], "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["classifier_card"]["labels"] == [OWL, SQUIRREL]
    assert f"labels: {OWL}, {SQUIRREL}" in run_cli("info", species_classifier["model"]).stdout
    assert not any((tmp_path / n).exists() for n in ("a.json", "b.json", "c.json", "d.json", "e.json"))


# -- the daemon and what a biologist reads -------------------------------------------------------------------


@pytest.fixture(scope="module")
def classified_run(
    tmp_path_factory: pytest.TempPathFactory, photos_dir: Path, model_320: Path, species_classifier: dict[str, Path]
) -> Any:
    tmp_path = tmp_path_factory.mktemp("classified-run")
    daemon = make_daemon(tmp_path, model_320)
    _owl_card(photos_dir, daemon.card / "owls")
    shutil.copytree(photos_dir / "squirrels_yolo" / "images" / "train", daemon.card / "squirrels")
    with daemon.config.open("a") as f:
        f.write(f"classifier:\n  model: {species_classifier['model']}\n  label_threshold: 0.5\n")
    daemon.run_once()
    return daemon


def test_watch_sorts_crops_by_species_and_labels_events_with_them(classified_run: Any) -> None:
    daemon = classified_run
    batch = daemon.batch()
    _md_classification_rules(batch)
    assert batch["classification_categories"] == {"1": OWL, "2": SQUIRREL}
    out = daemon.out / "local"
    folders = {p.name for p in (out / "crops").iterdir()}
    assert folders & {"burrowing owl", "burrowing_owl", "squirrel"}, folders
    assert folders <= {"burrowing owl", "burrowing_owl", "squirrel", "animal", "person", "vehicle"}
    crops_threshold = 0.3
    for image in batch["images"]:
        sidecar = json.loads((out / (image["file"] + ".json")).read_text())
        assert sidecar["andi_edge"]["classifier"]["model_file"] == "species.onnx"
        crops = sorted(sidecar["andi_edge"]["crops"])
        ranked = sorted(
            (d for d in image.get("detections") or [] if d["conf"] >= crops_threshold), key=lambda d: -d["conf"]
        )
        assert len(crops) == len(ranked)
        for rank, det in enumerate(ranked):
            (crop,) = [c for c in crops if c.endswith(f"__det{rank:02d}.jpg")]
            top = det.get("classifications", [[None, 0.0]])[0]
            species = batch["classification_categories"].get(top[0]) if top[1] >= 0.5 else None
            folder = crop.split("/")[1]
            if species is not None and det["category"] == "1":
                assert folder.replace("_", " ") == species, (crop, det)
            else:
                assert folder in {"animal", "person", "vehicle"}, (crop, det)
    labels = {i["event"]["label"] for i in batch["images"] if "event" in i}
    assert labels & {OWL, SQUIRREL}, labels
    assert labels <= {OWL, SQUIRREL, "animal", "person", "vehicle", "empty"}
    timings = [json.loads(p.read_text())["andi_edge"]["timings_ms"] for p in daemon.sidecars()]
    assert timings and all("classify" in t for t in timings), "the daemon's timings include the second stage"
    metrics = (daemon.config.parent / "metrics.prom").read_text()
    assert 'andi_edge_stage_seconds_total{stage="classify"}' in metrics
    checked = run_cli("check", "--config", daemon.config, daemon.card, "--model", daemon.model, "--output",
                      daemon.out, "--state", daemon.state, "--classifier", daemon.out.parent / "none.onnx")  # fmt: skip
    assert checked.returncode != 0 and "classifier file not found" in checked.stderr
    checked = run_cli("check", "--config", daemon.config, daemon.card, "--model", daemon.model, "--output",
                      daemon.out, "--state", daemon.state)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "classifier ok: " in checked.stdout and "classifies animal boxes >= 0.2" in checked.stdout


def test_report_counts_species_and_camtrap_dp_names_them(classified_run: Any, tmp_path: Path) -> None:
    daemon = classified_run
    report = tmp_path / "report.html"
    made = run_cli("report", "--state", daemon.state, "-o", report, "--samples", "4", "--empty-samples", "2")
    assert made.returncode == 0, made.stderr
    assert f'data-class="{OWL}"' in report.read_text()
    template = tmp_path / "template.yaml"
    made = run_cli("export-camtrap-dp", "--state", daemon.state, "--template", template)
    assert made.returncode == 0, made.stderr
    assert f'#   "{OWL}": TODO' in template.read_text(), "the template lists the species to map to taxa"
    config = {
        "project": {"title": "owls and squirrels"},
        "contributors": [{"title": "Test Person", "email": "t@example.org", "role": "principalInvestigator"}],
        "licenses": {"data": "CC0-1.0", "media": "CC-BY-4.0"},
        "timezone": "America/Los_Angeles",
        "taxa": {OWL: "Athene cunicularia", SQUIRREL: "Sciurus carolinensis"},
        "deployments": [{"deployment_id": "D1", "cameras": ["local"], "latitude": 32.6, "longitude": -116.9}],
    }
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(config))
    package = tmp_path / "package"
    done = run_cli(
        "export-camtrap-dp", "--state", daemon.state, "-o", package, "--deployment-config", tmp_path / "d.yaml"
    )
    assert done.returncode == 0, done.stderr
    assert package_errors(package) == []
    with (package / "observations.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    named = [r for r in rows if r["scientificName"]]
    assert {r["scientificName"] for r in named} <= {"Athene cunicularia", "Sciurus carolinensis"}
    assert any(r["scientificName"] == "Athene cunicularia" for r in named)
    for r in named:
        assert r["observationType"] == "animal" and r["classificationMethod"] == "machine"
        assert "classifier" in r["classifiedBy"] and "species.onnx" in r["classifiedBy"]
    media_rows = [r for r in named if r["observationLevel"] == "media"]
    assert media_rows and all(0.5 <= float(r["classificationProbability"]) <= 1 for r in media_rows)
    descriptor = json.loads((package / "datapackage.json").read_text())
    assert "Athene cunicularia" in {t["scientificName"] for t in descriptor["taxonomic"]}
