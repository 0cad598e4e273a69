"""The Raspberry Pi path, proven by emulation: the device install (the runtime wheel and its dependencies, no
torch) in an aarch64 Debian userland, `andi-edge detect` run there under qemu-user, boxes compared with the x86
run of the same model on the same photos.

- Userland: Debian 12's arm64 packages of Python 3.11 and the libraries it links (`apt-get download`, unpacked
  with `dpkg -x`; no chroot, no root inside), run by `qemu-aarch64-static -L ROOT`.
- Python packages: aarch64 manylinux wheels from PyPI (`pip download --platform`), installed with `pip install
  --target` exactly as `pip install .` resolves them on a Pi, except that onnxruntime is pinned to 1.27:
  its aarch64 wheels of 1.28 and later crash at import under this emulator (qemu 7.2), not on real hardware as
  far as we know. The x86 run uses the project's own onnxruntime.
- Speed under emulation means nothing; what counts is that the install works without torch and that the
  boxes equal the x86 ones (within EMULATION_TOLERANCE), and the installed size.

Needs (`make pi-emulation` installs them): qemu-user-static, dpkg's arm64 architecture (`dpkg --add-architecture
arm64 && apt-get update`), network to Debian's and PyPI's registries the first time (cached in build/aarch64).

Run: .venv/bin/python benchmarks/aarch64_emulation.py [--model build/yolov5n-320.onnx] ->
results/aarch64_emulation.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANDI_EDGE_SHARED", REPO.parent / "shared"))
PHOTOS = SHARED / "data" / "camera_trap_images"
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "build" / "aarch64"
QEMU = "qemu-aarch64-static"
#: onnxruntime's last aarch64 wheel that imports under qemu-user 7.2 (1.28+ crash there at import)
ORT_UNDER_EMULATION = "onnxruntime==1.27.*"
#: Debian 12 arm64 packages: Python 3.11 and what it links; libstdc++ for onnxruntime
DEBS = (
    "python3.11:arm64", "python3.11-minimal:arm64", "libpython3.11-minimal:arm64", "libpython3.11-stdlib:arm64",
    "libc6:arm64", "gcc-12-base:arm64", "libgcc-s1:arm64", "libstdc++6:arm64", "zlib1g:arm64", "libbz2-1.0:arm64",
    "liblzma5:arm64", "libzstd1:arm64", "libexpat1:arm64", "libffi8:arm64", "libssl3:arm64", "libsqlite3-0:arm64",
    "libcrypt1:arm64", "libuuid1:arm64", "libncursesw6:arm64", "libtinfo6:arm64", "libreadline8:arm64",
    "libdb5.3:arm64", "libnsl2:arm64", "libtirpc3:arm64", "libgssapi-krb5-2:arm64", "libkrb5-3:arm64",
    "libk5crypto3:arm64", "libkrb5support0:arm64", "libkeyutils1:arm64", "libcom-err2:arm64", "libselinux1:arm64",
    "libpcre2-8-0:arm64", "libacl1:arm64", "libmd0:arm64", "media-types",
)  # fmt: skip
PLATFORM_TAGS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
#: a handful of real photos of different kinds: cameras, sizes, a PNG named .JPG, a low-res frame, a person
SAMPLE = (
    "ecoassist_md_examples/1.jpg", "ecoassist_md_examples/3.jpg", "edge_cases/10050028_0.JPG",
    "lowres_trailcam/deer_20241018004500_44.jpg", "serengeti_S1_D04_R6_sequence/S1_D04_R6_PICT0020.JPG",
)  # fmt: skip
#: normalised box coordinates and confidences: the same model, other CPU kernels and compiler
EMULATION_TOLERANCE = 2e-3


def log(message: str) -> None:
    print(f"[aarch64] {message}", flush=True)


def run(*command: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, command))}\n{done.stderr[-3000:]}")
    return done


def check_host() -> None:
    if shutil.which(QEMU) is None:
        raise SystemExit(f"{QEMU} not found: `make pi-emulation` installs it (Debian package qemu-user-static)")
    foreign = run("dpkg", "--print-foreign-architectures").stdout.split()
    if "arm64" not in foreign:
        raise SystemExit("dpkg lacks the arm64 architecture: `dpkg --add-architecture arm64 && apt-get update` "
                         "(`make pi-emulation` does it)")  # fmt: skip


def userland(root: Path) -> None:
    """Debian's arm64 Python 3.11 and its libraries, unpacked into ``root``."""
    debs = WORK / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for package in DEBS:
        name = package.split(":")[0]
        if not any(debs.glob(f"{name}_*.deb")):
            run("apt-get", "download", package, cwd=debs)
    if (root / "usr" / "bin" / "python3.11").exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob("*.deb")):
        run("dpkg", "-x", deb, root)


def device_install(site: Path) -> list[str]:
    """The runtime wheel and its dependencies for aarch64, as `pip install .` gets them on a Pi."""
    wheels = WORK / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("andi_edge-*.whl"):
        old.unlink()
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", wheels, REPO)
    platform_args = [arg for tag in PLATFORM_TAGS for arg in ("--platform", tag)]
    target_args = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    wheel = next(wheels.glob("andi_edge-*.whl"))
    run(sys.executable, "-m", "pip", "download", "--quiet", "-d", wheels, *platform_args, *target_args,
        str(wheel), ORT_UNDER_EMULATION)  # fmt: skip
    if site.exists():
        shutil.rmtree(site)
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", wheels, "--target", site,
        *platform_args, *target_args, str(wheel), ORT_UNDER_EMULATION)  # fmt: skip
    return sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))


def emulated(root: Path, site: Path, *args: str | Path, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1", "HOME": str(WORK),
           "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}  # fmt: skip
    python = root / "usr" / "bin" / "python3.11"
    return subprocess.run([QEMU, "-L", str(root), str(python), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)  # fmt: skip


CLI = "import sys; sys.argv[0] = 'andi-edge'; from andi_edge.cli import main; sys.exit(main())"
#: the decoder of a video clip runs in a process of its own: under qemu-user (no binfmt_misc here) the emulated
#: Python cannot exec an aarch64 binary, so its child processes are started through a host script that runs the
#: same emulated Python (``multiprocessing.set_executable``)
CLI_WITH_CHILDREN = (
    "import multiprocessing, sys; multiprocessing.set_executable({wrapper!r}); sys.argv[0] = 'andi-edge'; "
    "from andi_edge.cli import main; sys.exit(main())"
)


def child_wrapper(root: Path) -> Path:
    """A host shell script that runs the emulated Python with the arguments it is given."""
    wrapper = WORK / "python-aarch64"
    python = root / "usr" / "bin" / "python3.11"
    wrapper.write_text(f'#!/bin/sh\nexec {QEMU} -L "{root}" "{python}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def make_clip(path: Path) -> Path:
    """A 2 s H.264 clip of three sample photos, made here with PyAV as the tests make theirs."""
    from tests.clips import h264

    return h264(path, sorted((PHOTOS / "serengeti_S1_D04_R6_sequence").glob("*.JPG"))[:3], seconds=2)


PROBE = (
    "import importlib.util, json, platform, numpy, onnxruntime, PIL; "
    "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(), "
    "'numpy': numpy.__version__, 'onnxruntime': onnxruntime.__version__, 'pillow': PIL.__version__, "
    "'torch_importable': importlib.util.find_spec('torch') is not None, "
    "'ultralytics_importable': importlib.util.find_spec('ultralytics') is not None}))"
)


def compare(x86: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    """Entry by entry: the same files, failures and boxes (matched in confidence order)."""
    a = {e["file"]: e for e in x86["images"]}
    b = {e["file"]: e for e in arm["images"]}
    worst_box = worst_conf = 0.0
    mismatches = []
    for name in sorted(a.keys() | b.keys()):
        ea, eb = a.get(name), b.get(name)
        if ea is None or eb is None or ("failure" in ea) != ("failure" in eb):
            mismatches.append(f"{name}: present or failed on one side only")
            continue
        if ea.get("frames_processed") != eb.get("frames_processed"):
            mismatches.append(f"{name}: frames {ea.get('frames_processed')} on x86, {eb.get('frames_processed')}")
        da, db = ea.get("detections") or [], eb.get("detections") or []
        # boxes near the confidence floor may appear on one side only: compare those both sides clearly keep
        strong_a = [d for d in da if d["conf"] >= 0.05]
        strong_b = [d for d in db if d["conf"] >= 0.05]
        if len(strong_a) != len(strong_b):
            mismatches.append(f"{name}: {len(strong_a)} boxes >= 0.05 on x86, {len(strong_b)} on aarch64")
            continue
        for p, q in zip(strong_a, strong_b, strict=True):
            if p["category"] != q["category"]:
                mismatches.append(f"{name}: category {p['category']} vs {q['category']}")
            worst_conf = max(worst_conf, abs(p["conf"] - q["conf"]))
            worst_box = max(worst_box, *(abs(u - v) for u, v in zip(p["bbox"], q["bbox"], strict=True)))
    agree = not mismatches and worst_box <= EMULATION_TOLERANCE and worst_conf <= EMULATION_TOLERANCE
    clips = sum(1 for e in a.values() if "frames_processed" in e)
    compared = sum(len([d for d in e.get("detections") or [] if d["conf"] >= 0.05]) for e in a.values())
    return {"photos": len(a) - clips, "clips": clips, "boxes_compared": compared, "max_bbox_diff": worst_box,
            "max_conf_diff": worst_conf, "tolerance": EMULATION_TOLERANCE, "mismatches": mismatches,
            "agree": agree}  # fmt: skip


def du_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "build" / "yolov5n-320.onnx")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"no model at {args.model}: `make model` exports it")
    check_host()
    root, site = WORK / "root", WORK / "site"
    log("aarch64 userland (Debian 12 arm64 packages)")
    userland(root)
    log(f"device install: the runtime wheel and its aarch64 dependencies ({ORT_UNDER_EMULATION})")
    packages = device_install(site)
    photos = WORK / "photos"
    shutil.rmtree(photos, ignore_errors=True)
    photos.mkdir(parents=True)
    for rel in SAMPLE:
        shutil.copy2(PHOTOS / rel, photos / rel.replace("/", "__"))
    make_clip(photos / "CLIP0001.MP4")
    log("x86 reference run")
    x86_out, arm_out = WORK / "x86.json", WORK / "aarch64.json"
    run(Path(sys.executable).with_name("andi-edge"), "detect", photos, "-m", args.model, "-o", x86_out, "-q")
    log("the same under qemu-aarch64 (slow: emulation)")
    probe = emulated(root, site, "-c", PROBE)
    if probe.returncode != 0:
        raise SystemExit(f"the emulated Python cannot import the runtime:\n{probe.stderr[-3000:]}")
    versions = json.loads(probe.stdout.strip().splitlines()[-1])
    start = time.perf_counter()
    cli = CLI_WITH_CHILDREN.format(wrapper=str(child_wrapper(root)))
    detect = emulated(root, site, "-c", cli, "detect", photos, "-m", args.model, "-o", arm_out, "-q")
    seconds = time.perf_counter() - start
    if detect.returncode != 0:
        raise SystemExit(f"andi-edge detect failed under emulation:\n{detect.stderr[-3000:]}")
    comparison = compare(json.loads(x86_out.read_text()), json.loads(arm_out.read_text()))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "qemu": run(QEMU, "--version").stdout.splitlines()[0]},
        "emulated": versions,
        "model": args.model.name,
        "installed_packages": packages,
        "installed_size_mb": {"python_packages": du_mb(site), "userland_with_python": du_mb(root)},
        "detect_seconds_under_emulation": round(seconds, 1),
        "comparison": comparison,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "aarch64_emulation.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "aarch64_emulation.md").write_text(markdown(result))
    log(f"{'agree' if comparison['agree'] else 'DISAGREE'}: max bbox diff {comparison['max_bbox_diff']:.2g}, "
        f"max conf diff {comparison['max_conf_diff']:.2g} over {comparison['boxes_compared']} boxes")  # fmt: skip
    return 0 if comparison["agree"] else 1


def markdown(r: dict[str, Any]) -> str:
    c, e, size = r["comparison"], r["emulated"], r["installed_size_mb"]
    lines = [
        "# The Raspberry Pi path under emulation (aarch64, qemu-user)",
        "",
        f"Run {r['date']} by `make pi-emulation` on {r['host']['machine']} with {r['host']['qemu']}.",
        "",
        f"- Emulated: {e['machine']}, Python {e['python']}, numpy {e['numpy']}, onnxruntime {e['onnxruntime']} "
        f"(pinned: 1.28+ crash at import under this qemu), Pillow {e['pillow']}; torch importable: "
        f"{e['torch_importable']}, ultralytics importable: {e['ultralytics_importable']}.",
        f"- Installed (`pip install --target`, the runtime wheel and its dependencies): {size['python_packages']} MB "
        f"of Python packages ({', '.join(r['installed_packages'])}); Debian's arm64 Python userland "
        f"{size['userland_with_python']} MB.",
        f"- `andi-edge detect` with {r['model']} on {c['photos']} real photos"
        + (
            f" and {c['clips']} video clip(s) (decoded by PyAV's aarch64 wheel, in a process of its own)"
            if c.get("clips")
            else ""
        )
        + " took "
        f"{r['detect_seconds_under_emulation']} s under emulation (speed under emulation means nothing).",
        f"- Against the x86 run: {c['boxes_compared']} boxes (conf >= 0.05) compared, max bbox difference "
        f"{c['max_bbox_diff']:.2g}, max confidence difference {c['max_conf_diff']:.2g} (tolerance {c['tolerance']}) "
        f"-> {'the same boxes' if c['agree'] else 'DIFFERENT'}.",
    ]
    lines += [f"  - {m}" for m in c["mismatches"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
