"""The training-side pieces that exist: dataset split, eval (seen vs unseen, --reference), the INT8 gate.

The dataset is built from real photos and MegaDetector v5a's reference boxes (tests/dataset_factory.py).
The COCO-pretrained model is scored against it through the built-in coco-to-megadetector class map.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.dataset_factory import build_cct
from tests.integration.cli_runner import run_cli


@pytest.fixture(scope="module")
def cct(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path) -> Path:
    return build_cct(photos_dir, tmp_path_factory.mktemp("cct") / "cct.json")


@pytest.fixture(scope="module")
def split_dir(cct: Path, photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("split") / "split"
    proc = run_cli("dataset", "split", cct, "--images", photos_dir, "--by", "location", "--val", "0.25",
                   "--test", "0.10", "--seed", "0", "-o", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "animal" in proc.stdout and "locations: train" in proc.stdout
    return out


def test_split_by_location_writes_yolo_and_no_location_leaks(split_dir: Path, cct: Path) -> None:
    manifest = json.loads((split_dir / "manifest.json").read_text())
    locs = manifest["locations"]
    assert not (set(locs["train"]) & set(locs["val"])) and not (set(locs["train"]) & set(locs["test"]))
    assert not (set(locs["val"]) & set(locs["test"]))
    source = json.loads(cct.read_text())
    assert len(manifest["images"]) == len(source["images"])
    boxes_per_image: dict[str, int] = {}
    for ann in source["annotations"]:
        boxes_per_image[ann["image_id"]] = boxes_per_image.get(ann["image_id"], 0) + 1
    for entry in manifest["images"]:
        label = (split_dir / "labels" / entry["split"] / entry["file"]).with_suffix(".txt")
        lines = [line for line in label.read_text().splitlines() if line]
        assert len(lines) == boxes_per_image.get(entry["file"], 0), entry["file"]
        for line in lines:
            cls, *xywh = line.split()
            assert cls in {"0", "1", "2"} and all(0 <= float(v) <= 1 for v in xywh)
        assert (split_dir / "images" / entry["split"] / entry["file"]).resolve().is_file()
    assert "names" in (split_dir / "data.yaml").read_text()
    empties = [e for e in manifest["images"] if not e["classes"]]
    assert empties, "empty images are kept as background"


def test_missing_class_is_warned_loudly(tmp_path: Path, photos_dir: Path) -> None:
    images = []
    for i in range(4):
        photo = f"ecoassist_md_examples/{i + 1}.jpg"
        with Image.open(photos_dir / photo) as im:
            w, h = im.size
        images.append({"id": f"{i}", "file_name": photo, "width": w, "height": h, "location": f"loc{i}"})
    cats = [{"id": 1, "name": "animal"}, {"id": 2, "name": "rare"}]
    anns = [{"id": "a", "image_id": "3", "category_id": 2, "bbox": [1, 1, 10, 10]}]
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps({"images": images, "categories": cats, "annotations": anns}))
    # the one 'rare' image is its location's only image; with train's target at 10%, that location's best place is
    # val or test whatever the order: (1 - 0.1)^2 in train costs more than (1 - 0.45)^2 + 0.1^2 outside it
    proc = run_cli("dataset", "split", data, "--images", photos_dir, "--by", "location", "--val", "0.45",
                   "--test", "0.45", "-o", tmp_path / "s")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert not manifest["class_counts"]["train"].get("rare") and manifest["missing_from_train"] == ["rare"]
    assert "WARNING: class 'rare' has no image in the training split" in proc.stdout


def test_eval_reports_seen_unseen_and_reference(
    tmp_path: Path, cct: Path, split_dir: Path, photos_dir: Path, model_320: Path
) -> None:
    out = tmp_path / "eval.json"
    proc = run_cli("eval", "-m", model_320, "--dataset", cct, "--images", photos_dir, "--split-manifest", split_dir,
                   "--reference", model_320, "--class-map", "coco-to-megadetector", "-o", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    overall = report["overall"]
    assert 0 <= overall["f1_macro"] <= 1 and 0 <= overall["map50"] <= 1
    assert "empty" in overall["f1_per_class"] and "animal" in overall["f1_per_class"]
    manifest = json.loads((split_dir / "manifest.json").read_text())
    held_out = sum(1 for e in manifest["images"] if e["split"] in ("val", "test"))
    assert overall["images"] == held_out
    assert report["unseen_locations"]["images"] == held_out, "split by location: every held-out image is unseen"
    assert report["seen_locations"] is None
    assert report["against_reference"]["map50"] == 1.0, "a model against itself"
    assert report["inference_ms_per_image"]["mean"] > 0
    assert "F1-macro" in proc.stdout and "unseen locations" in proc.stdout


def test_eval_needs_matching_classes(cct: Path, photos_dir: Path, model_320_native: Path) -> None:
    """A model whose card keeps COCO's classes (export --native-classes) cannot be scored on animal/vehicle
    labels until a class map says how."""
    proc = run_cli("eval", "-m", model_320_native, "--dataset", cct, "--images", photos_dir)
    assert proc.returncode == 2 and "no class for dataset class(es): animal, vehicle" in proc.stderr
    assert "--class-map" in proc.stderr


def test_quantize_gate_refuses_a_model_that_loses_too_much(
    tmp_path: Path, cct: Path, photos_dir: Path, model_320: Path
) -> None:
    # calibrating on one flat grey image gives INT8 ranges that real photos overflow: a badly damaged model
    calib = tmp_path / "calib"
    calib.mkdir()
    Image.fromarray(np.full((240, 320, 3), 114, np.uint8)).save(calib / "grey.png")
    out = tmp_path / "bad-int8.onnx"
    proc = run_cli("quantize", model_320, "--calib", calib, "-o", out, "--eval", cct, "--images", photos_dir,
                   "--class-map", "coco-to-megadetector", "--max-loss", "0.01")  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    assert "loses" in proc.stderr and "nothing was written" in proc.stderr
    assert not out.exists()
    good = tmp_path / "int8.onnx"
    proc = run_cli("quantize", model_320, "--calib", photos_dir / "lila_md_testset", "-o", good, "--eval", cct,
                   "--images", photos_dir, "--class-map", "coco-to-megadetector", "--max-loss", "1.0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert good.exists()


def test_a_device_runs_the_int8_model_only_when_its_gate_passed(
    tmp_path: Path, cct: Path, photos_dir: Path, model_320: Path
) -> None:
    """backend.prefer_int8 (the Pi and x86 profiles): MODEL-int8.onnx beside MODEL.onnx is run when its card
    says it was quantized from this very file and passed the gate; an INT8 model without a gate, or made from
    another model, is not; `check` says which and why."""
    import shutil

    from andi_edge.runtime.detector import Detector
    from andi_edge.runtime.model_choice import choose_model
    from andi_edge.runtime.model_meta import file_sha256

    model = tmp_path / "trap.onnx"
    shutil.copy2(model_320, model)
    sibling = tmp_path / "trap-int8.onnx"
    assert choose_model(model, True).reason == "as configured: no trap-int8.onnx beside it"
    calib = photos_dir / "lila_md_testset"
    proc = run_cli("quantize", model, "--calib", calib, "--calib-count", "8", "-o", sibling)
    assert proc.returncode == 0, proc.stderr
    card = Detector(sibling).card
    assert card.source_model_sha256 == file_sha256(model) and card.quantize_gate is None
    ungated = choose_model(model, True)
    assert ungated.path == model and "passed no accuracy gate" in ungated.reason
    proc = run_cli("quantize", model, "--calib", calib, "--calib-count", "8", "-o", sibling, "--eval", cct,
                   "--images", photos_dir, "--class-map", "coco-to-megadetector", "--max-loss", "1.0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    gate = Detector(sibling).card.quantize_gate
    assert gate is not None and gate["passed"] is True and gate["max_loss"] == 1.0 and gate["images"] > 0
    chosen = choose_model(model, True)
    assert chosen.path == sibling and chosen.reason.startswith("INT8: trap-int8.onnx passed its gate (mAP@0.5 ")
    assert choose_model(model, False).path == model, "only where the config asks for it"
    config = tmp_path / "config.yaml"
    config.write_text(f"watch: {tmp_path}\noutput: {tmp_path / 'out'}\nmodel: {model}\nbackend:\n  prefer_int8: true\n")
    proc = run_cli("check", "--config", config)
    assert proc.returncode == 0 and "model choice: INT8: trap-int8.onnx passed its gate" in proc.stdout, proc.stdout
    other = tmp_path / "other.onnx"
    shutil.copy2(model_320, other)
    shutil.copy2(sibling, tmp_path / "other-int8.onnx")
    with open(other, "ab") as f:
        f.write(b"\0")  # not the file the INT8 model was made from
    assert "was not quantized from other.onnx" in choose_model(other, True).reason


def test_chain_split_train_export_prune_quantize_eval(
    tmp_path: Path, split_dir: Path, cct: Path, photos_dir: Path, weights_path: Path
) -> None:
    """The issue's chain, small: split (fixture) -> 1-epoch fine-tune at 160 px -> export -> prune (with one
    recovery epoch and the gate wired) -> export -> quantize -> eval with --reference and the split manifest."""
    from andi_edge.runtime.detector import Detector

    run = tmp_path / "run"
    proc = run_cli("train", "--data", split_dir, "--arch", "yolov5n", "--weights", weights_path, "--epochs", "1",
                   "--imgsz", "160", "--batch", "8", "--head", "new", "-o", run)  # fmt: skip
    # one epoch with a fresh head is far worse than the COCO model it started from on unseen locations: refused
    assert proc.returncode == 7, proc.stderr
    assert "WORSE THAN ITS STARTING MODEL ON UNSEEN LOCATIONS" in proc.stderr and "--allow-worse" in proc.stderr
    config = json.loads((run / "run_config.json").read_text())
    assert config["tensors_carried"] == 342 and config["trainer_args"]["patience"] == 5
    assert config["source_weights_sha256"].startswith("4f180cf2")
    assert config["verdict"] == "refused"
    against = config["against_start"]["scores"]
    assert set(against) == {"seen", "unseen"} and against["unseen"]["start"]["images"] > 0
    unseen = against["unseen"]
    assert unseen["start"]["map50"] > unseen["finetuned"]["map50"] + 0.01
    for group in against.values():
        for scores in group.values():
            assert 0 <= scores["f1_macro"] <= 1 and 0 <= scores["map50"] <= 1
    best = run / "train" / "weights" / "best.pt"
    fp32 = tmp_path / "ft-160.onnx"
    assert run_cli("export", best, "--imgsz", "160", "-o", fp32).returncode == 0
    card = Detector(fp32).card
    assert card.class_names == ("animal", "person", "vehicle") and card.head == "ultralytics"

    pruned = tmp_path / "pruned.pt"
    proc = run_cli("prune", best, "--ratio", "0.5", "--data", split_dir, "--epochs", "1", "--imgsz", "160",
                   "--batch", "8", "-o", pruned)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "parameters 2,636,105 ->" in proc.stdout
    record = json.loads(pruned.with_suffix(".prune.json").read_text())
    assert record["params"][1] < 0.5 * record["params"][0] and record["macs"][1] < 0.6 * record["macs"][0]
    pruned_onnx = tmp_path / "pruned-160.onnx"
    assert run_cli("export", pruned, "--imgsz", "160", "-o", pruned_onnx).returncode == 0
    assert pruned_onnx.stat().st_size < 0.5 * fp32.stat().st_size
    assert Detector(pruned_onnx).card.class_names == ("animal", "person", "vehicle")

    int8 = tmp_path / "pruned-160-int8.onnx"
    proc = run_cli("quantize", pruned_onnx, "--calib", photos_dir / "lila_md_testset", "--calib-count", "8", "-o", int8)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "eval.json"
    proc = run_cli("eval", "-m", int8, "--dataset", cct, "--images", photos_dir, "--split-manifest", split_dir,
                   "--reference", fp32, "-o", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert "empty" in report["overall"]["f1_per_class"] and report["unseen_locations"]["images"] > 0
    assert report["against_reference"]["reference"] == fp32.name

    # the prune gate's wiring (export both, evaluate both, refuse, write nothing): a one-epoch model scores ~0
    # mAP, so a real loss cannot be provoked here; a negative --max-loss demands an improvement no pruning gives.
    # test_quantize_gate_refuses_a_model_that_loses_too_much shows a genuine loss being refused.
    refused = tmp_path / "refused.pt"
    proc = run_cli("prune", best, "--ratio", "0.9", "--data", split_dir, "--epochs", "0", "--imgsz", "160",
                   "-o", refused, "--eval", cct, "--images", photos_dir, "--max-loss", "-1")  # fmt: skip
    assert proc.returncode == 7 and "nothing was written" in proc.stderr
    assert not refused.exists()


def test_train_mistakes(tmp_path: Path) -> None:
    proc = run_cli("train", "--data", tmp_path, "--epochs", "1", "-o", tmp_path / "run")
    assert proc.returncode == 2 and "no data.yaml" in proc.stderr and "dataset split" in proc.stderr


def test_prune_mistakes(tmp_path: Path, weights_path: Path) -> None:
    proc = run_cli("prune", weights_path, "--data", tmp_path, "-o", tmp_path / "p.pt")
    assert proc.returncode == 2 and "no data.yaml" in proc.stderr
    proc = run_cli("prune", weights_path, "--data", tmp_path, "--epochs", "0", "-o", tmp_path / "p.pt")
    assert proc.returncode == 2 and "not an ultralytics checkpoint" in proc.stderr and "andi-edge train" in proc.stderr
    proc = run_cli("prune", weights_path, "--ratio", "1.5", "--data", tmp_path, "-o", tmp_path / "p.pt")
    assert proc.returncode == 2 and "--ratio 1.5" in proc.stderr


def test_balance_upsamples_and_pastes_across_locations(tmp_path: Path, split_dir: Path) -> None:
    import shutil

    work = tmp_path / "split"
    shutil.copytree(split_dir, work, symlinks=True)
    before = json.loads((work / "manifest.json").read_text())["class_counts"]["train"]
    proc = run_cli("dataset", "balance", work, "--upsample-below", "10", "--copy-paste", "6", "--jitter", "0.2")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((work / "manifest.json").read_text())
    after = manifest["class_counts"]["train"]
    for cls, n in before.items():
        if cls != "empty":
            assert after[cls] >= min(10, 2 * n), cls
    pasted = [e for e in manifest["images"] if "copy-paste" in e.get("made_by", "")]
    assert len(pasted) == 6
    for entry in pasted:
        donor_location = entry["made_by"].split("(")[1].split(")")[0]
        assert donor_location != entry["location"], "pasted onto a background from another location"
        label = (work / "labels" / "train" / entry["file"]).with_suffix(".txt").read_text().split()
        assert len(label) == 5 and all(0 <= float(v) <= 1 for v in label[1:])
        assert Image.open(work / "images" / "train" / entry["file"]).size[0] > 0
    assert all(e["split"] == "train" for e in manifest["images"] if e["file"].startswith("_balance"))
    # a rerun replaces, never stacks
    assert run_cli("dataset", "balance", work, "--copy-paste", "2").returncode == 0
    assert len(list((work / "images" / "train" / "_balance").glob("*.jpg"))) == 2
    nothing = run_cli("dataset", "balance", work)
    assert nothing.returncode == 2 and "nothing to do" in nothing.stderr


def test_train_a_larger_layout_from_its_architecture_alone_warns_loudly(tmp_path: Path, split_dir: Path) -> None:
    """yolov5s's weights are not on this machine: without --from-scratch it stops before any work (it trained
    from random weights and exited 0 with mAP 0); with it, it trains from random weights, says so, and cannot be
    compared with a starting model."""
    run = tmp_path / "run-s"
    args = ("train", "--data", split_dir, "--arch", "yolov5s", "--epochs", "1", "--imgsz", "64", "--batch", "8")
    refused = run_cli(*args, "-o", run, cwd=tmp_path)  # from another folder than the checkout
    assert refused.returncode == 2 and "no pretrained weights to start from" in refused.stderr, refused.stderr
    assert "--from-scratch" in refused.stderr and "yolov5s.pt" in refused.stderr and not run.exists()
    proc = run_cli(*args, "-o", run, "--from-scratch")  # (the default warm head needs a checkpoint: learnt anew)
    assert proc.returncode == 0, proc.stderr
    assert "NO PRETRAINED WEIGHTS" in proc.stderr and "yolov5s.pt" in proc.stderr
    assert "trained from its architecture alone" in proc.stdout
    assert "not compared with the starting model: no pretrained starting model" in proc.stdout
    config = json.loads((run / "run_config.json").read_text())
    assert config["pretrained"] is False and config["tensors_carried"] == 0 and config["verdict"] == "accepted"
    assert (run / "train" / "weights" / "best.pt").is_file()


def test_warm_head_keeps_what_the_pretrained_model_knew(tmp_path: Path, split_dir: Path, weights_path: Path) -> None:
    """The default --head warm: the classic model fine-tuned whole, its head rows taken from COCO's (animal from the
    ten animal classes, person copied, vehicle from five). Before any step it is the COCO model with camera-trap
    categories, so epoch 0 already scores what the starting model does; two epochs at a small rate keep it there,
    and the result is a classic checkpoint that exports as one."""
    from andi_edge.runtime.detector import Detector
    from andi_edge.toolchain.yolov5_classic import load_classic

    run = tmp_path / "warm"
    proc = run_cli("train", "--data", split_dir, "--weights", weights_path, "--epochs", "2", "--imgsz", "160",
                   "--batch", "16", "--freeze", "10", "-o", run)  # fmt: skip
    assert proc.returncode in (0, 7), proc.stderr
    assert "head warm-started: animal combined from 10, person copied, vehicle combined from 5" in proc.stdout
    assert "epoch 1/2: loss" in proc.stderr and "epoch 2/2: loss" in proc.stderr  # progress as it trains
    config = json.loads((run / "run_config.json").read_text())
    assert config["head"] == "warm" and config["tensors_carried"] == config["tensors_in_source"] - 6
    unseen = config["against_start"]["scores"]["unseen"]
    # the warm start is the starting model, bar the head's reshaping: close on unseen locations from epoch 0
    assert config["history"][0]["epoch"] == 0 and config["history"][0]["val_map50"] > 0.1
    assert unseen["finetuned"]["map50"] >= unseen["start"]["map50"] - 0.1, unseen
    best = run / "train" / "weights" / "best.pt"
    model, _ = load_classic(best)  # pickled as the original repository pickles: our loader reads it
    assert list(model.names) == ["animal", "person", "vehicle"] and model.detect.no == 8
    onnx = tmp_path / "warm.onnx"
    assert run_cli("export", best, "--imgsz", "160", "-o", onnx).returncode == 0
    detector = Detector(onnx)
    assert detector.card.head == "yolov5" and detector.class_names == ("animal", "person", "vehicle")


def test_warm_head_rows_come_from_the_pretrained_head(weights_path: Path, photos_dir: Path) -> None:
    """Before any training step: box and objectness outputs equal the COCO model's, a COCO class's row is its own,
    a category's and a species' prior is the noisy-or of COCO's animal priors, an unknown class is fresh."""
    import torch

    from andi_edge.runtime.categories import COCO_ANIMALS, COCO_CLASS_NAMES
    from andi_edge.toolchain.classic_train import warm_start_head
    from andi_edge.toolchain.yolov5_classic import load_classic
    from tests.architectures import letterboxed

    original, _ = load_classic(weights_path)
    warm, _ = load_classic(weights_path)
    names = ["animal", "person", "car", "mountain_lion", "empty"]
    init = warm_start_head(warm, names)
    assert init.rows == {"animal": "combined from 10", "person": "copied", "car": "copied",
                         "mountain_lion": "combined from 10", "empty": "fresh"}  # fmt: skip
    [photo] = letterboxed([photos_dir / "burrowing_owl" / "RCNX2938.JPG"], 320)
    with torch.no_grad():
        before = original.forward_raw(torch.from_numpy(photo))
        after = warm.forward_raw(torch.from_numpy(photo))
    person, car = 5 + COCO_CLASS_NAMES.index("person"), 5 + COCO_CLASS_NAMES.index("car")
    for old, new in zip(before, after, strict=True):
        assert new.shape[-1] == 5 + len(names)
        torch.testing.assert_close(new[..., :5], old[..., :5])
        torch.testing.assert_close(new[..., 6], old[..., person])
        torch.testing.assert_close(new[..., 7], old[..., car])
    animal_rows = [5 + COCO_CLASS_NAMES.index(n) for n in COCO_ANIMALS]
    for old_conv, new_conv in zip(original.detect.m, warm.detect.m, strict=True):
        assert isinstance(old_conv, torch.nn.Conv2d) and isinstance(new_conv, torch.nn.Conv2d)
        assert old_conv.bias is not None and new_conv.bias is not None
        old_bias = old_conv.bias.view(3, 85)
        new_bias = new_conv.bias.view(3, 10)
        noisy_or = 1 - torch.prod(1 - torch.sigmoid(old_bias[:, animal_rows]), dim=1)
        for column in (5, 8):  # animal, mountain_lion
            torch.testing.assert_close(torch.sigmoid(new_bias[:, column]), noisy_or)
        assert torch.all(new_conv.weight.view(3, 10, -1)[:, 9] == 0), "a fresh row starts at the prior only"


def test_gradual_magnitude_pruning_makes_a_sparse_classic_model_that_exports_and_quantizes(
    tmp_path: Path, split_dir: Path, weights_path: Path, photos_dir: Path
) -> None:
    """`prune --method gmp` on the COCO YOLOv5n (classic), 2 epochs at 160 px to 60%: the record says how
    sparse it got and when; the exported ONNX and its INT8 carry the zeros; the model detects."""
    import onnx
    from onnx import numpy_helper

    from andi_edge.runtime.detector import Detector

    sparse = tmp_path / "gmp.pt"
    proc = run_cli("prune", weights_path, "--method", "gmp", "--sparsity", "0.6", "--data", split_dir, "--epochs",
                   "2", "--imgsz", "160", "--batch", "8", "-o", sparse)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "gradual magnitude pruning" in proc.stdout and "(sparsity 60.0%)" in proc.stdout, proc.stdout
    record = json.loads(sparse.with_suffix(".prune.json").read_text())
    assert record["method"] == "gmp" and record["recovery_epochs"] == 1 and record["best_epoch"] == 2
    assert [h.get("sparsity") for h in record["history"]] == [None, pytest.approx(0.6, abs=0.05), 0.6]
    assert record["sparsity"]["layers"] == 56 and 0.599 <= record["sparsity"]["sparsity"] <= 0.6
    _assert_batch_norm_measured_on(sparse, split_dir, imgsz=160, batch=8)
    onnx_path = tmp_path / "gmp-160.onnx"
    assert run_cli("export", sparse, "--imgsz", "160", "-o", onnx_path).returncode == 0
    graph = onnx.load(str(onnx_path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    conv = [weights[n.input[1]] for n in graph.node if n.op_type == "Conv" and n.input[1] in weights]
    zero_share = sum(int((w == 0).sum()) for w in conv) / sum(w.size for w in conv)
    assert zero_share > 0.5, "the zeros survive export (BatchNorm folding scales, never fills, a zero weight)"
    int8 = tmp_path / "gmp-160-int8.onnx"
    proc = run_cli("quantize", onnx_path, "--calib", photos_dir / "lila_md_testset", "--calib-count", "8", "-o", int8)
    assert proc.returncode == 0, proc.stderr
    detector = Detector(int8)
    assert detector.card.class_names == ("animal", "person", "vehicle") and detector.card.precision == "int8"
    assert detector.detect(next((photos_dir / "lila_md_testset").glob("*.jpg"))).ok


def test_gmp_then_quantization_aware_training_keeps_the_zeros_and_stores_int8_weights(
    tmp_path: Path, split_dir: Path, weights_path: Path, photos_dir: Path
) -> None:
    """`--qat-epochs 1` after GMP: the zeros stay, the checkpoint is fused with every convolution outside the
    head on its int8 grid, and it exports and quantizes like any other."""
    import torch

    from andi_edge.runtime.detector import Detector
    from andi_edge.toolchain.yolov5_classic import Conv, load_classic

    sparse = tmp_path / "gmp-qat.pt"
    proc = run_cli("prune", weights_path, "--method", "gmp", "--sparsity", "0.6", "--data", split_dir, "--epochs",
                   "2", "--qat-epochs", "1", "--imgsz", "160", "--batch", "8", "-o", sparse)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "quantization-aware training: 1 epochs" in proc.stdout and "(sparsity 60.0%)" in proc.stdout
    record = json.loads(sparse.with_suffix(".prune.json").read_text())
    assert record["qat"]["epochs"] == 1 and record["qat"]["best_epoch"] == 1
    assert 0.599 <= record["sparsity"]["sparsity"] <= 0.6, "QAT revived no pruned weight"
    model, _ = load_classic(sparse)
    convs = [m for m in model.modules() if isinstance(m, Conv)]
    assert convs and not any(hasattr(m, "bn") for m in convs), "batch norms folded: what QAT rounded is the file"
    for module in convs:
        weight = module.conv.weight.detach()
        steps = weight / (weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 127)
        assert torch.allclose(steps, steps.round(), atol=1e-3)
    onnx_path = tmp_path / "gmp-qat-160.onnx"
    assert run_cli("export", sparse, "--imgsz", "160", "-o", onnx_path).returncode == 0
    int8 = tmp_path / "gmp-qat-160-int8.onnx"
    proc = run_cli("quantize", onnx_path, "--calib", photos_dir / "lila_md_testset", "--calib-count", "8", "-o", int8)
    assert proc.returncode == 0, proc.stderr
    assert Detector(int8).detect(next((photos_dir / "lila_md_testset").glob("*.jpg"))).ok


def _assert_batch_norm_measured_on(weights: Path, split_dir: Path, imgsz: int, batch: int) -> None:
    """The saved model's first batch norm holds the exact statistics of its convolution over the training
    photos (the average of the batch means), not running averages that lagged the masks."""
    import numpy as np
    import torch

    from andi_edge.toolchain.classic_train import _load_split
    from andi_edge.toolchain.yolov5_classic import Conv, load_classic

    model, _ = load_classic(weights)
    first = model.model[0]
    norm = getattr(first, "bn", None)
    assert isinstance(first, Conv) and isinstance(norm, torch.nn.BatchNorm2d)
    samples = _load_split(split_dir, "train", imgsz)
    with torch.no_grad():
        means = [first.conv(torch.from_numpy(np.stack([s.tensor for s in samples[i : i + batch]]))).mean((0, 2, 3))
                 for i in range(0, len(samples), batch) if len(samples[i : i + batch]) > 1]  # fmt: skip
    torch.testing.assert_close(norm.running_mean, torch.stack(means).mean(0), atol=1e-4, rtol=1e-4)


def test_gmp_mistakes(tmp_path: Path, split_dir: Path, weights_path: Path) -> None:
    for args, message in (
        (("--sparsity", "1.5", "--epochs", "1"), "--sparsity 1.5: expected a fraction"),
        (("--epochs", "0"), "give --epochs 1 or more"),
        (("--epochs", "1", "--qat-epochs", "-1"), "--qat-epochs -1: expected 0 (none) or more"),
    ):
        proc = run_cli("prune", weights_path, "--method", "gmp", "--data", split_dir, "-o", tmp_path / "p.pt", *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "p.pt").exists()
