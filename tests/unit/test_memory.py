"""The daemon's memory budget: the cgroup limit read as systemd sets it (v2 and v1), and each photo's share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from andi_edge.daemon.memory import (
    MIB,
    MIN_PHOTO_BUDGET_BYTES,
    SHIPPED_UNIT,
    cgroup_memory_limit,
    photo_budget_bytes,
    plan_memory,
    planned_bytes,
    refuse_unloadable,
    resident_bytes,
    unit_memory_max,
)
from andi_edge.errors import UsageError
from andi_edge.runtime.detector import Detector


def test_the_limit_is_read_from_either_cgroup_version(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "system.slice" / "andi-edge.service").mkdir(parents=True)
    (v2 / "system.slice" / "andi-edge.service" / "memory.max").write_text(f"{1024 * MIB}\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/system.slice/andi-edge.service\n")
    assert cgroup_memory_limit(proc, v2) == 1024 * MIB
    (v2 / "system.slice" / "andi-edge.service" / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(proc, v2) is None
    v1 = tmp_path / "v1"
    (v1 / "memory" / "box").mkdir(parents=True)
    (v1 / "memory" / "box" / "memory.limit_in_bytes").write_text(f"{512 * MIB}\n")
    proc.write_text("9:name=systemd:/\n4:memory:/box\n0::/\n")
    assert cgroup_memory_limit(proc, v1) == 512 * MIB
    (v1 / "memory" / "box" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert cgroup_memory_limit(proc, v1) is None
    assert cgroup_memory_limit(tmp_path / "absent", v1) is None


def test_each_photo_gets_its_share_of_three_quarters_of_the_limit() -> None:
    assert photo_budget_bytes(1024 * MIB, 368 * MIB, 4) == 100 * MIB
    assert photo_budget_bytes(1024 * MIB, 800 * MIB, 4) < 0


def test_the_shipped_units_throttle_where_watch_plans_to_stop() -> None:
    """MemoryHigh (where the kernel starts to throttle) is the memory watch plans to hold: 3/4 of MemoryMax."""
    for unit in (SHIPPED_UNIT, SHIPPED_UNIT.with_name("andi-edge-card@.service")):
        lines = dict(line.split("=", 1) for line in unit.read_text().splitlines() if line.startswith("Memory"))
        assert (lines["MemoryHigh"], lines["MemoryMax"]) == ("768M", "1G"), unit.name
        assert planned_bytes(unit_memory_max(unit) or 0) == 768 * MIB


def test_a_units_memory_max_is_read_as_systemd_reads_it(tmp_path: Path) -> None:
    assert unit_memory_max(SHIPPED_UNIT) == 1024 * MIB, "the shipped watch unit"
    unit = tmp_path / "u.service"
    unit.write_text("[Service]\nMemoryHigh=600M\nMemoryMax=2G\nMemoryMax=1.5G\n")
    assert unit_memory_max(unit) == int(1.5 * 1024 * MIB), "the last assignment wins"
    unit.write_text("[Service]\nMemoryMax=512000\n")
    assert unit_memory_max(unit) == 512000
    unit.write_text("[Service]\nMemoryMax=infinity\n")
    assert unit_memory_max(unit) is None
    assert unit_memory_max(tmp_path / "absent.service") is None


def test_a_model_fits_a_unit_when_it_and_its_photos_stay_within_the_plan(detector_fast) -> None:  # type: ignore[no-untyped-def]
    """The rule watch applies at its start and check reports: what the process holds with the model run as the
    pipeline runs it (two inferences at once keep two sets of buffers), and each photo in the works its input and the
    least decode budget, within three quarters of MemoryMax."""
    held_mib = resident_bytes() // MIB + 200  # this test process holds more than a daemon would (pytest, torch)
    plan = plan_memory(detector_fast, photos_at_once=2, concurrent_runs=2, limit=4 * held_mib * MIB)
    assert plan.fits and f"planned under the unit's MemoryMax ({4 * held_mib} MiB" in plan.describe()
    assert "run 2 at once" in plan.describe() and not plan.estimated, "measured: two runs at once fit the plan"
    assert plan.needed == plan.footprint + 2 * (detector_fast.stage_bytes + 32 * MIB)
    plan = plan_memory(detector_fast, photos_at_once=2, concurrent_runs=2, limit=held_mib * MIB)
    assert not plan.fits and f"({held_mib} MiB" in plan.describe()
    assert plan.estimated and "would hold about" in plan.describe(), "not run twice at once past the plan"
    assert plan.remedy().startswith(
        "run one inference at a time on every core (pipeline.mode: parallel, pipeline.workers: 1, backend.threads"
    )
    assert "INT8 sibling" in plan.remedy()
    one = plan_memory(detector_fast, photos_at_once=2, concurrent_runs=1, limit=held_mib * MIB)
    assert "pipeline.workers" not in one.remedy()
    split = plan_memory(detector_fast, photos_at_once=2, concurrent_runs=1, limit=4 * held_mib * MIB, tensors_ahead=4)
    assert split.needed == split.footprint + 4 * split.stage_bytes + 2 * (split.stage_bytes + 32 * MIB)
    assert "with 2 photo(s) in the works and 4 input(s) prepared ahead it needs" in split.describe()
    assert split.share == (3 * held_mib * MIB - split.footprint - 4 * split.stage_bytes) // 2, (
        "the split pipeline's inputs waiting for the inference come off the photos' share"
    )


def _limit_for_one_at_a_time(detector: Detector, concurrent_runs: int) -> int:
    """A memory limit under which one inference at a time fits, with 24 MiB to spare, and ``concurrent_runs`` at
    once do not (they need another photo's input and 32 MiB, and more). Measured twice: the second time, ONNX
    Runtime's arena holds what the runs at once grew, and it stays so."""
    for _ in range(2):
        measured = plan_memory(detector, concurrent_runs + 1, concurrent_runs, 64 * 2**30)
    one_needs = measured.one_run_footprint + 2 * (measured.stage_bytes + MIN_PHOTO_BUDGET_BYTES)
    return (one_needs + 24 * MIB) * 4 // 3 + 4


def test_where_two_inferences_at_once_do_not_fit_one_at_a_time_is_offered(detector_fast) -> None:  # type: ignore[no-untyped-def]
    """Left to the machine (``one_at_a_time_photos`` given), a plan whose inferences at once do not fit gives way
    to one inference at a time, with one photo fewer in the works, where that fits; it keeps what it gave up."""
    limit = _limit_for_one_at_a_time(detector_fast, concurrent_runs=2)
    plan = plan_memory(detector_fast, photos_at_once=3, concurrent_runs=2, limit=limit, one_at_a_time_photos=2)
    assert plan.fits and (plan.concurrent_runs, plan.photos_at_once) == (1, 2), plan.describe()
    assert plan.footprint == plan.one_run_footprint and "run 2 at once" not in plan.describe()
    given_up = plan.instead_of
    assert given_up is not None and not given_up.fits and given_up.concurrent_runs == 2
    asked = plan_memory(detector_fast, photos_at_once=3, concurrent_runs=2, limit=limit)
    assert not asked.fits and asked.instead_of is None, "set by hand: the plan asked for, refused"
    roomy = plan_memory(detector_fast, photos_at_once=3, concurrent_runs=2, limit=4 * limit, one_at_a_time_photos=2)
    assert roomy.concurrent_runs == 2 and roomy.instead_of is None, "what fits is run as asked"


def test_a_model_too_big_to_load_under_the_limit_is_refused_before_it_is_loaded(tmp_path: Path) -> None:
    """An MDv5a-sized fp32 model (534 MiB) under the 1 GiB units: the kernel killed watch while ONNX Runtime loaded
    it (about 2.3 times the file), and systemd started it again, to be killed again."""
    model = tmp_path / "md-v5a.onnx"
    with model.open("wb") as sparse:
        sparse.truncate(534 * MIB)
    with pytest.raises(UsageError, match=r"loading md-v5a.onnx \(534 MiB\) takes about 1228 MiB, more than the "):
        refuse_unloadable(model, limit=1024 * MIB)
    refuse_unloadable(model, limit=2048 * MIB)
    with model.open("r+b") as sparse:
        sparse.truncate(142 * MIB)  # its INT8 sibling
    refuse_unloadable(model, limit=1024 * MIB)
    refuse_unloadable(tmp_path / "absent.onnx", limit=MIB)  # the loader says what is wrong with a missing file


def test_check_says_watch_will_run_one_inference_at_a_time_where_it_will(
    tmp_path: Path, model_320: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` applies watch's rule to the installed unit's MemoryMax: where two inferences at once would not fit
    and one does, it says what watch will run instead of warning that watch would refuse. (The unit folder is
    pointed at a temporary one: /etc/systemd/system is not the test's to write.)"""
    from andi_edge.assemble import assemble
    from andi_edge.cli.field import _check_memory
    from andi_edge.service_install import UNITS
    from andi_edge.settings import load_watch_config

    overrides = {"watch": str(tmp_path), "model": str(model_320), "output": str(tmp_path / "out")}
    config = load_watch_config(None, overrides)
    assembled = assemble(config.detection, plan=None)
    if assembled.plan.backend.concurrent_runs < 2:
        pytest.skip("one core: the pipeline runs one inference at a time anyway")
    runs = assembled.plan.backend.concurrent_runs
    limit_mib = _limit_for_one_at_a_time(assembled.detector, runs) // MIB + 1
    monkeypatch.setattr("andi_edge.service_install.UNIT_DIR", tmp_path)
    (tmp_path / UNITS[0]).write_text(f"[Service]\nMemoryHigh=1M\nMemoryMax={limit_mib}M\n")
    _check_memory(config, assembled)
    said = capsys.readouterr()
    assert said.out.startswith(f"memory ok: {runs} inferences at once would not fit"), said
    assert f"watch will run one inference at a time on {len(os.sched_getaffinity(0))} threads" in said.out
    assert said.err == ""
    (tmp_path / UNITS[0]).write_text("[Service]\nMemoryMax=64G\n")
    _check_memory(config, assembled)
    assert capsys.readouterr().out.startswith("memory ok: the model holds"), "what fits is run as configured"
