"""Neural Magic's recipe without its stack: gradual magnitude pruning (`andi-edge prune --method gmp`),
quantization-aware training (`--qat-epochs`), sparse INT8 (`andi-edge quantize`), measured on ONNX Runtime and,
where it installs, on DeepSparse.

1. A split of the sample photos by location (tests/dataset_factory.py: real photos, MegaDetector v5a's boxes
   as labels, so "accuracy" here is agreement with MDv5a), and the dense fine-tuning of the COCO YOLOv5n on it
   (--epochs at 320 px, the head warm-started to animal/person/vehicle): ft-dense.
2. As SparseML prunes a fine-tuned model: GMP of ft-dense to each of --sparsities over --epochs more, and for
   the highest one, --qat-epochs of quantization-aware training after it.
3. Export each (and the COCO model) at 320 and 640 px, quantize each (calibrated on 64 sample photos).
4. Speed: model-only latency (fixed input, ``--threads`` cores) on ONNX Runtime and on DeepSparse (its own venv,
   build/deepsparse-venv: `python3 -m venv build/deepsparse-venv && build/deepsparse-venv/bin/pip install
   deepsparse==1.8.0`; evaluation licence, end-of-life upstream), and `detect` end to end on ONNX Runtime.
5. Accuracy: each model's boxes against the dense fp32 model's own (>= 0.25) on all 185 photos, INT8 models
   also against their own fp32 model's, and the zeros actually present in the exported ONNX.

Run: .venv/bin/python benchmarks/sparse.py [--sparsities 0.5,0.8 --epochs 12 --qat-epochs 3]
     -> results/sparse.{json,md}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import PHOTOS, REPO, RESULTS, WEIGHTS, cli

DEEPSPARSE_PY = REPO / "build" / "deepsparse-venv" / "bin" / "python"
DEEPSPARSE_PROBE = """
import json, sys, time
import numpy as np
from deepsparse import Engine
path, size, cores, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
engine = Engine(model=path, batch_size=1, num_cores=cores)
x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
for _ in range(5):
    engine([x])
times = []
for _ in range(runs):
    start = time.perf_counter()
    engine([x])
    times.append((time.perf_counter() - start) * 1000)
print(json.dumps({"p50_ms": float(np.median(times)), "mean_ms": float(np.mean(times))}))
"""


def log(message: str) -> None:
    print(f"[sparse] {message}", flush=True)


def onnx_zeros(path: Path) -> float:
    """The share of zero weights among the convolutions' weights of an ONNX file (dense ones show ~0)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    conv_inputs = {n.input[1] for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1}
    # a QDQ model's weights come through DequantizeLinear: follow it to the quantized initializer
    dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    names = {dq.get(name, name) for name in conv_inputs}
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name in names]
    total = sum(a.size for a in arrays)
    # an INT8 weight of 0 is a zero weight too (symmetric per-channel quantization keeps zeros at 0)
    zeros = sum(int((a == 0).sum()) for a in arrays)
    return round(zeros / total, 4) if total else 0.0


def ort_model_only(path: Path, threads: int, runs: int) -> float:
    from andi_edge import bench
    from andi_edge.runtime.backends import BackendOptions
    from andi_edge.runtime.detector import Detector

    detector = Detector(path, backend_options=BackendOptions(intra_op_threads=threads, allow_spinning=False))
    return float(bench.bench_model_only(detector, runs=runs, warmup=5)["inference_ms"]["p50"])


def deepsparse_model_only(path: Path, size: int, threads: int, runs: int) -> float | str:
    if not DEEPSPARSE_PY.exists():
        return "not installed (build/deepsparse-venv)"
    done = subprocess.run([str(DEEPSPARSE_PY), "-c", DEEPSPARSE_PROBE, str(path), str(size), str(threads),
                           str(runs)], capture_output=True, text=True, check=False, timeout=900)  # fmt: skip
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else str(done.returncode)
        if "ValidateOpset" in last:
            return "refused: DeepSparse 1.8's ONNX loader does not know this QDQ model's opset"
        return f"failed: {last[:160]}"
    return round(float(json.loads(done.stdout.strip().splitlines()[-1])["p50_ms"]), 2)


def detect_rate(path: Path) -> float:
    out = cli("detect", PHOTOS, "-m", path, "-o", Path(tempfile.gettempdir()) / "andi-sparse-detect.json")
    return float(out.split("photos/s")[0].rsplit("(", 1)[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", default="0.5,0.8", help="GMP targets, comma-separated")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from andi_edge.bench import accuracy_delta
    from andi_edge.photos import find_photos
    from andi_edge.runtime.detector import Detector
    from tests.dataset_factory import build_cct

    sparsities = [float(v) for v in args.sparsities.split(",")]
    _, sources = find_photos([PHOTOS])
    photos = [s.path for s in sources]
    with tempfile.TemporaryDirectory(prefix="andi-sparse-") as tmp:
        work = Path(tmp)
        cct = build_cct(PHOTOS, work / "cct.json")
        split = work / "split"
        cli("dataset", "split", cct, "--images", PHOTOS, "--by", "location", "--val", "0.25", "--test", "0.10",
            "--seed", "0", "-o", split)  # fmt: skip
        log(f"dense fine-tuning, {args.epochs} epochs at 320 px")
        run = work / "dense-ft"
        cli("train", "--data", split, "--weights", WEIGHTS, "--epochs", args.epochs, "--imgsz", "320", "--batch",
            "8", "--patience", args.epochs, "--no-compare", "-o", run)  # fmt: skip
        dense_ft = run / "train" / "weights" / "best.pt"
        dense_record = json.loads((run / "run_config.json").read_text())
        models: dict[str, Path] = {"coco-dense": WEIGHTS, "ft-dense": dense_ft}
        pruning: dict[str, dict[str, Any]] = {}
        for sparsity in sparsities:
            qat = args.qat_epochs if sparsity == max(sparsities) else 0
            for epochs_qat in sorted({0, qat}):
                name = f"ft-gmp{round(sparsity * 100)}" + ("-qat" if epochs_qat else "")
                log(f"{name}: GMP of ft-dense to {sparsity:.0%} over {args.epochs} epochs, {epochs_qat} of QAT")
                start = time.perf_counter()
                sparse_pt = work / f"{name}.pt"
                cli("prune", dense_ft, "--method", "gmp", "--sparsity", sparsity, "--data", split, "--epochs",
                    args.epochs, "--qat-epochs", epochs_qat, "--imgsz", "320", "--batch", "8",
                    "-o", sparse_pt)  # fmt: skip
                record = json.loads(sparse_pt.with_suffix(".prune.json").read_text())
                kept = ("sparsity", "best_epoch", "val_map50", "history", "qat")
                pruning[name] = {"seconds": round(time.perf_counter() - start, 1), **{k: record[k] for k in kept}}
                models[name] = sparse_pt
        rows: dict[str, dict[str, Any]] = {}
        for size in (320, 640):
            exported: dict[str, Path] = {}
            for name, weights in models.items():
                fp32 = work / f"{name}-{size}.onnx"
                cli("export", weights, "--imgsz", size, "-o", fp32)
                int8 = work / f"{name}-{size}-int8.onnx"
                cli("quantize", fp32, "--calib", PHOTOS, "-o", int8)
                exported[name] = fp32
                for precision, path in (("fp32", fp32), ("int8", int8)):
                    key = f"{name}-{size}-{precision}"
                    log(f"measuring {key}")
                    # the COCO model against itself; the fine-tuned ones against the dense fine-tuned fp32
                    reference = Detector(exported["coco-dense" if name == "coco-dense" else "ft-dense"])
                    candidate = Detector(path)
                    rows[key] = {
                        "size_mb": round(path.stat().st_size / 2**20, 2),
                        "conv_weights_zero": onnx_zeros(path),
                        "ort_model_only_ms": round(ort_model_only(path, args.threads, args.runs), 2),
                        "deepsparse_model_only_ms": deepsparse_model_only(path, size, args.threads, args.runs),
                        "detect_photos_per_s": detect_rate(path),
                        "vs_dense_fp32": accuracy_delta(reference, candidate, photos),
                        "vs_own_fp32": accuracy_delta(Detector(fp32), candidate, photos) if precision == "int8"
                        else None,
                    }  # fmt: skip
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "sparsities": sparsities,
        "epochs": args.epochs,
        "qat_epochs": args.qat_epochs,
        "pruning": pruning,
        "dense_ft_history": dense_record.get("history"),
        "threads": args.threads,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sparse.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "sparse.md").write_text(markdown(result))
    log(f"wrote {args.out / 'sparse.md'}")
    return 0


def markdown(r: dict[str, Any]) -> str:
    dense_best = max((h["val_map50"] for h in r["dense_ft_history"] or [] if h["epoch"] > 0), default=float("nan"))
    lines = [
        "# Gradual magnitude pruning, quantization-aware training, sparse INT8, ONNX Runtime and DeepSparse",
        "",
        f"Run {r['date']} by `benchmarks/sparse.py`. ft-dense: the COCO YOLOv5n fine-tuned for {r['epochs']} epochs "
        "at 320 px on a location split of the sample photos (3-class head warm-started from the COCO rows; best "
        f"val mAP@0.5 against MDv5a {dense_best:.3f}). ft-gmpNN: ft-dense pruned by `andi-edge prune --method gmp` "
        f"to NN% over {r['epochs']} more epochs (as SparseML prunes a fine-tuned model); -qat: then "
        f"{r['qat_epochs']} epochs of quantization-aware training (`--qat-epochs`). Model-only latencies on "
        f"{r['threads']} threads; `detect` end to end with the default (parallel) pipeline on ONNX Runtime; "
        "accuracy against the dense fp32 model's own boxes >= 0.25 (the COCO model for its rows, ft-dense for the "
        "fine-tuned ones) on all 185 photos, and for INT8 rows against their own fp32 model's.",
        "",
        "| pruning | zeros | best epoch | val mAP@0.5 vs MDv5a | after QAT | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, p in r["pruning"].items():
        qat = p["qat"]["val_map50"] if p.get("qat") else "-"
        lines.append(f"| {name} | {p['sparsity']['sparsity']:.0%} | {p['best_epoch']} | {p['val_map50']} | {qat} "
                     f"| {p['seconds']} |")  # fmt: skip
    lines += [
        "",
        "| model | MB | zero conv weights | ORT model-only p50 ms | DeepSparse model-only p50 ms "
        "| detect photos/s (ORT) | mAP@0.5 vs dense fp32 | recall at 0.25 | INT8 vs own fp32: mAP@0.5 / recall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in r["rows"].items():
        acc = row["vs_dense_fp32"]
        own = row.get("vs_own_fp32")
        own_text = f"{own['map50']} / {own['recall_at_typical']}" if own else "-"
        lines.append(
            f"| {key} | {row['size_mb']} | {row['conv_weights_zero']:.0%} | {row['ort_model_only_ms']} | "
            f"{row['deepsparse_model_only_ms']} | {row['detect_photos_per_s']} | {acc['map50']} | "
            f"{acc['recall_at_typical']} | {own_text} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
