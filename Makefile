# Two commands do all the set-up on a fresh clone:  `make demo`  and  `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED ?= ../shared
PHOTOS ?= $(SHARED)/data/camera_trap_images
BUILD ?= build
IMGSZ ?= 320
MODEL ?= $(BUILD)/yolov5n-$(IMGSZ).onnx
# The toolchain's torch: pinned to the release that lies on this project's machines (no multi-GB download).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Tests only: the classic YOLOv5 model definitions (P6 yamls, s-x), without its requirements (they pin old torch).
YOLOV5_SPEC ?= yolov5==7.0.14
# Tests only: MegaDetector's batch-file validator, without its requirements (torch, opencv, ...).
MEGADETECTOR_SPEC ?= megadetector==10.0.28

export ANDI_EDGE_MODELS_DIR ?= $(SHARED)/models
# the tests and benchmarks find ../shared through this (a clone elsewhere: make test SHARED=/path/to/shared)
export ANDI_EDGE_SHARED ?= $(abspath $(SHARED))
export ANDI_EDGE_CACHE_DIR ?= $(CURDIR)/$(BUILD)/cache
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := false

.PHONY: venv model demo test lint typecheck unit help clean bench accuracy tools mutate pi-emulation classifier-bench \
	kill-soak cli-reference docs video-bench alerts-bench bench-md bench-md6

help:
	@echo "make demo   - set up, export yolov5n to ONNX, detect on the sample camera-trap photos, write the report"
	@echo "make test   - set up, then lint, type-check, import contracts, the demo as the README runs it, the docs"
	@echo "             and the suite"
	@echo "make bench  - the benchmark suite -> benchmarks/results/ (about 10 minutes)"
	@echo "make accuracy - agreement with MDv5a: categories, input size, decode, fine-tuning (20-30 minutes)"
	@echo "make mutate - mutation testing (mutmut) of runtime geometry, heads, NMS, batch JSON, Camtrap DP, journal"
	@echo "              -> benchmarks/results/mutation.md (about 10 minutes on 2 cores)"
	@echo "make pi-emulation - the device install and detect in an aarch64 userland under qemu, boxes vs x86"
	@echo "              -> benchmarks/results/aarch64_emulation.md (a few minutes; downloads arm64 packages once)"
	@echo "make classifier-bench - species classifiers (ResNeXt50, AlexNet, VGG19, MobileNetV3, EfficientNet-B0)"
	@echo "              trained on the sample photos' crops: scores and cost per photo -> benchmarks/results/classifier.md"
	@echo "              (about 25 minutes on 2 cores)"
	@echo "make kill-soak - kill -9 the daemon 24 times mid-batch on a 1,000-photo card, classifier on; checks every"
	@echo "              photo exactly once -> benchmarks/results/kill_soak.md (about 2 minutes)"
	@echo "make video-bench - video clips: 1080p H.264/MJPEG at 320/640 px, 4K memory, PyAV's size (a few minutes)"
	@echo "make alerts-bench - live alerts: delay from a photo's commit to its MQTT alert while watch is busy (p95"
	@echo "              goal 2 s), the alerts process's CPU and memory (a few minutes)"
	@echo "make bench-md - an MDv5a-shaped model on this CPU: MegaDetector's own pipeline against andi-edge fp32,"
	@echo "              INT8 and bf16, with box parity, the well-posed checks and watch's memory (about 35 minutes)"
	@echo "make bench-md6 - MegaDetector v6's layouts (YOLOv9, YOLOv10, RT-DETR): Ultralytics' own pipeline against"
	@echo "              andi-edge, with box parity (about 20 minutes)"
	@echo "make docs   - the documentation site in $(BUILD)/site (mkdocs --strict), with the report's pictures"
	@echo "make cli-reference - the generated pages made again: docs/cli.md (parsers), the config reference"
	@echo "             (declarations), docs/benchmarks.md (benchmarks/results): tests check they are current"
	@echo "make model  - only build $(MODEL)"
	@echo "make clean  - remove build outputs (keeps the virtualenv)"

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[toolchain,ray,openvino,dev]'
	$(PY) -m pip install --quiet --no-deps $(YOLOV5_SPEC) $(MEGADETECTOR_SPEC)
	touch $@

venv: $(STAMP)

$(MODEL): $(STAMP)
	$(BIN)/andi-edge export yolov5n --imgsz $(IMGSZ) -o $@

model: $(MODEL)

demo: $(MODEL)
	$(BIN)/andi-edge detect $(PHOTOS) --model $(MODEL) -o $(BUILD)/demo/results.json
	$(BIN)/andi-edge report $(BUILD)/demo/results.json -o $(BUILD)/demo/report.html
	@echo "Open $(BUILD)/demo/report.html in a browser to review the run, and $(BUILD)/demo/results.json in"
	@echo "Timelapse or AddaxAI (image folder: $(PHOTOS))."

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The unit-file tests need systemd-analyze, the HTML-report test renders in headless Chromium, the card-trigger
# test formats a FAT card image and the alerts' tests run a real MQTT broker with TLS certificates made by openssl:
# install them (Debian packages systemd, chromium-headless-shell, dosfstools, mosquitto, openssl) when the machine
# lacks them. The broker is started by the tests on a loopback port, never as a system service.
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
tools:
	@command -v systemd-analyze >/dev/null || { echo "installing systemd-analyze (package systemd) for the unit-file tests"; \
	  $(APT_INSTALL) systemd >/dev/null; }
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || { \
	  echo "installing headless Chromium (package chromium-headless-shell) for the HTML report test"; \
	  $(APT_INSTALL) chromium-headless-shell >/dev/null; }
	@command -v mkfs.vfat >/dev/null || { echo "installing mkfs.vfat (package dosfstools) for the card-trigger test"; \
	  $(APT_INSTALL) dosfstools >/dev/null; }
	@{ command -v mosquitto || test -x /usr/sbin/mosquitto; } >/dev/null && command -v openssl >/dev/null || { \
	  echo "installing an MQTT broker (package mosquitto) and openssl for the alerts' tests"; \
	  $(APT_INSTALL) mosquitto openssl >/dev/null; }

test: lint typecheck tools demo docs
	$(BIN)/pytest

# The documentation site: the report's pictures made from the demo's run, then every page built; --strict makes a
# broken link or a page missing from the navigation an error (not with --quiet, which hides them). Open
# build/site/index.html.
docs: demo
	$(PY) docs/scripts/screenshots.py $(BUILD)/demo/report.html docs/img
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(BUILD)/site

clean:
	rm -rf $(BUILD) .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)
	$(PY) benchmarks/suite.py

# The Raspberry Pi path without a Pi: Debian's arm64 Python and the runtime's aarch64 wheels under qemu-user.
pi-emulation: $(MODEL)
	@command -v qemu-aarch64-static >/dev/null || { echo "installing qemu-user-static"; \
	  $(APT_INSTALL) qemu-user-static >/dev/null; }
	@dpkg --print-foreign-architectures | grep -qx arm64 || { echo "adding dpkg's arm64 architecture"; \
	  dpkg --add-architecture arm64 && apt-get update -qq; }
	$(PY) benchmarks/aarch64_emulation.py --model $(MODEL)

# Not in `make test`: it runs the unit tests once per mutant (thousands of runs).
mutate: $(STAMP)
	$(PY) benchmarks/mutation.py

accuracy: $(STAMP)
	$(PY) benchmarks/camera_trap_accuracy.py --finetune

cli-reference: $(STAMP)
	$(PY) -m andi_edge.cli.reference cli > docs/cli.md
	$(PY) -m andi_edge.cli.reference config > docs/field/config-reference.md
	$(PY) -m benchmarks.pages > docs/benchmarks.md

video-bench: $(STAMP)
	$(PY) -m benchmarks.video

alerts-bench: $(STAMP) tools
	$(PY) -m benchmarks.alerts

# Not in `make test`: MegaDetector's own pipeline (its virtualenv made once in build/md-venv) against andi-edge
# fp32, INT8 and bf16 on an MDv5a-shaped model (about 25 minutes on 2 cores).
bench-md: $(STAMP)
	$(PY) -m benchmarks.megadetector_cpu

# Not in `make test`: MegaDetector v6's Ultralytics layouts, Ultralytics' own predict against andi-edge.
bench-md6: $(STAMP)
	$(PY) -m benchmarks.megadetector_v6

kill-soak: $(STAMP)
	$(PY) benchmarks/kill_soak.py

classifier-bench: $(STAMP)
	$(PY) benchmarks/classifier.py --epochs 8
