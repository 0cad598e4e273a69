from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from andi_edge.errors import ConfigError
from andi_edge.settings import WatchConfig, config_keys, load_watch_config

EXAMPLE = Path(__file__).resolve().parents[2] / "andi_edge" / "assets" / "config.example.yaml"


def _flatten(mapping: dict, prefix: str = "") -> set[str]:  # type: ignore[type-arg]
    keys: set[str] = set()
    for k, v in mapping.items():
        keys |= _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return keys


def test_example_config_is_valid_complete_and_shows_the_defaults() -> None:
    config = load_watch_config(EXAMPLE)
    assert _flatten(yaml.safe_load(EXAMPLE.read_text())) == set(config_keys(WatchConfig)), "every key, no more"
    defaults = WatchConfig()
    for section in (
        "detector",
        "classifier",
        "backend",
        "discovery",
        "outputs",
        "disk",
        "pipeline",
        "video",
        "metrics",
        "events",
        "repeats",
        "logging",
        "alerts",
    ):
        assert getattr(config, section) == getattr(defaults, section), f"the example must show {section} defaults"


def test_errors_name_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    base = "watch: /x\nmodel: m.onnx\noutput: /o\n"
    cases = {
        "outputs:\n  crop_treshold: 0.3\n": "unknown key 'outputs.crop_treshold'",
        "detector:\n  conf_threshold: 2\n": "detector.conf_threshold must be between 0 and 1, got 2.0",
        "discovery:\n  inotify: maybe\n": "'discovery.inotify' .* must be bool",
        "disk: 5\n": "'disk' .* must be a mapping",
        "logging:\n  format: xml\n": "logging.format must be one of plain, json, got 'xml'",
        "repeats:\n  action: delete\n": "repeats.action must be one of flag, suppress",
        "repeats:\n  min_photos: 1\n": "repeats.min_photos must be at least 2, got 1",
        "events:\n  gap_s: -1\n": "events.gap_s must be at least 0, got -1.0",
        "retry:\n  read_timeout_s: 200\n": "retry.read_timeout_s must be positive and at most 110, got 200.0",
        "retry:\n  backoff_s: 60\n  max_backoff_s: 30\n": "retry.backoff_s must be at most retry.max_backoff_s",
        "pipeline:\n  parallel: true\n": "unknown key 'pipeline.parallel'",
        "backend:\n  providers: [1]\n": "'backend.providers\\[0\\]' .* must be str",
        "backend:\n  precision: fp16\n": "backend.precision must be one of f32, bf16, got 'fp16'",
        "backend:\n  precision: bf16\n": "backend.precision bf16 needs backend.name: openvino",
    }
    for extra, message in cases.items():
        path.write_text(base + extra)
        with pytest.raises(ConfigError, match=message) as err:
            load_watch_config(path)
        assert str(path) in str(err.value)
    path.write_text("model: m.onnx\n")
    with pytest.raises(ConfigError, match="'watch' is not set"):
        load_watch_config(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of settings"):
        load_watch_config(path)


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("watch: /x\nmodel: m.onnx\noutput: /o\nbackend:\n  threads: 4\n")
    config = load_watch_config(path, {"watch": "/card", "backend.threads": 2, "state": None})
    assert config.watch == "/card" and config.backend.threads == 2 and config.state == ""


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused(tmp_path: Path, value: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"watch: /w\nmodel: /m.onnx\noutput: /o\ndiscovery:\n  poll_interval_s: {value}\n")
    with pytest.raises(ConfigError, match=r"discovery\.poll_interval_s.*finite"):
        load_watch_config(config)


@pytest.mark.parametrize("profile", sorted(p.name for p in (EXAMPLE.parent / "profiles").glob("*.yaml")))
def test_the_device_profiles_load_and_plan_their_pipeline(profile: str) -> None:
    """Each profile is a valid config, and the pipeline it asks for is the one the device gets: parallel on a
    CPU, split on the Jetson's GPU providers."""
    from andi_edge.pipeline import plan_pipeline

    path = EXAMPLE.parent / "profiles" / profile
    config = load_watch_config(path, {"watch": "/card", "output": "/out", "model": "/m.onnx"})
    plan = plan_pipeline(config.pipeline, config.backend.threads, config.backend.providers, config.backend.name, cpus=4)
    assert plan.parallel == (profile != "jetson.yaml"), plan.describe()
