"""The daemon's memory budget: the cgroup limit read as systemd sets it (v2 and v1), and each photo's share."""

from __future__ import annotations

from pathlib import Path

from andi_edge.daemon.memory import cgroup_memory_limit, photo_budget_bytes

MIB = 2**20


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


def test_each_photo_gets_its_share_of_half_the_limit() -> None:
    assert photo_budget_bytes(1024 * MIB, 112 * MIB, 4) == 100 * MIB
    assert photo_budget_bytes(1024 * MIB, 600 * MIB, 4) < 0
