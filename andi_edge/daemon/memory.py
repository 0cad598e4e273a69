"""The daemon's memory: the one owner of how much the model and one photo may take, so that ``watch`` stays within
three quarters of its unit's ``MemoryMax`` (the shipped units set ``MemoryHigh``, where the kernel starts to throttle,
to that) for any accepted config on any photo.

A photo's decode is bounded by ``detector.max_decode_mb`` (JPEGs too big for it are decoded at a reduced DCT
scale, crops cut at a smaller scale, anything else fails as ``too_large``); the model's input tensor and a chunk
of classifier crops count against that same budget (``Detector.decode_budget_bytes``). Under a memory limit (the
cgroup's: systemd's ``MemoryMax``, v2 or v1), the model's footprint is measured at start: the process's resident
memory once the model has run at its largest input as many times at once as the pipeline runs it (each concurrent
run keeps the buffers of its own). The photos decoded at once (the pipeline's decode workers and the writer
cutting crops) share what is left of three quarters of the limit, once the inputs the split pipeline prepares
ahead are counted; a model whose footprint leaves a photo too little is refused before any photo is touched,
unless how many inferences run at once was left to the machine and one at a time fits: then it runs one at a
time. ``check`` applies the same rule (``plan_memory``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from andi_edge.errors import UsageError
from andi_edge.runtime.detector import Detector

log = logging.getLogger(__name__)

MIB = 2**20
#: a limit at or above this is "no limit" (cgroup v1 writes 2^63 rounded down to a page)
_UNLIMITED = 2**62
#: the least a photo's decode is given: below it, the limit is too tight for this model and these workers
MIN_PHOTO_BUDGET_BYTES = 32 * MIB
#: the share of the limit the daemon plans to hold: the rest is the margin for what is not planned (the journal,
#: the writer's buffers, the allocator's fragmentation). The shipped units' MemoryHigh is this share of MemoryMax.
PLANNED_NUMERATOR, PLANNED_DENOMINATOR = 3, 4


def cgroup_memory_limit(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """This process's cgroup memory limit in bytes (v2 ``memory.max``, v1 ``memory.limit_in_bytes``); None for
    none or when it cannot be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # v2: one hierarchy
            candidate = root / relative / "memory.max"
        elif "memory" in controllers.split(","):
            candidate = root / "memory" / relative / "memory.limit_in_bytes"
        else:
            continue
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _UNLIMITED:
            return int(text)
    return None


def resident_bytes() -> int:
    """What this process holds in memory now (its resident set)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def planned_bytes(limit: int) -> int:
    """What the daemon plans to hold under a memory limit (three quarters of it)."""
    return limit * PLANNED_NUMERATOR // PLANNED_DENOMINATOR


def photo_budget_bytes(limit: int, footprint: int, photos_at_once: int) -> int:
    """Each photo's share of the planned memory, once the model's footprint is counted."""
    return (planned_bytes(limit) - footprint) // max(photos_at_once, 1)


@dataclasses.dataclass(frozen=True)
class Footprint:
    """What the process holds with the model loaded and run."""

    one_run_bytes: int
    at_once_bytes: int
    #: ``at_once_bytes`` was measured (the runs at once were run), not estimated from one run's
    measured: bool = True


def model_footprint_bytes(detector: Detector, concurrent_runs: int, ceiling: int | None = None) -> Footprint:
    """What the process holds once the model has run at its largest input ``concurrent_runs`` times at once, as
    the pipeline will run it: the weights and every run's buffers (ONNX Runtime's arena keeps what its runs grew).

    One run first; the runs at once only when what one run added, times the runs, stays within ``ceiling``:
    otherwise that estimate is given, so measuring never takes the process past a limit it would be refused
    under anyway."""
    import numpy as np

    tensor = np.zeros(detector.largest_input_shape, np.float32)
    loaded = resident_bytes()
    detector.backend.run(tensor)
    held = resident_bytes()
    runs = max(concurrent_runs, 1)
    if runs == 1:
        return Footprint(held, held)
    estimate = held + (runs - 1) * max(held - loaded, 0)
    if ceiling is not None and estimate > ceiling:
        return Footprint(held, estimate, measured=False)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(runs, thread_name_prefix="andi-warmup") as pool:
        for future in [pool.submit(detector.backend.run, tensor) for _ in range(runs)]:
            future.result()
    return Footprint(held, resident_bytes())


def release_freed_memory() -> None:
    """Hand what the allocator holds but nothing uses back to the system (glibc's ``malloc_trim``; elsewhere
    nothing), so that a model let go of is not counted in the next one's measured footprint."""
    import ctypes
    import gc

    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: glibc's, where it is glibc
    except (OSError, AttributeError):  # not glibc (musl, macOS): the allocator keeps what it keeps
        return
    trim(0)


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """The model's measured footprint and the photos in the works, against a limit."""

    limit: int
    footprint: int
    photos_at_once: int
    concurrent_runs: int
    stage_bytes: int
    int8: bool = False
    #: the footprint of the runs at once was estimated from one run's (it would have passed the plan)
    estimated: bool = False
    #: what the process held after one run (the same as ``footprint`` where one run at a time is planned)
    one_run_footprint: int = 0
    #: the plan asked for, where it did not fit and this one, one inference at a time, does (``plan_memory``)
    instead_of: MemoryPlan | None = None
    #: input tensors prepared ahead of the inference (the split pipeline's ``max_in_flight``), each ``stage_bytes``
    tensors_ahead: int = 0

    @property
    def share(self) -> int:
        """Each photo's decode budget under this plan."""
        ahead = self.tensors_ahead * self.stage_bytes
        return photo_budget_bytes(self.limit, self.footprint + ahead, self.photos_at_once)

    @property
    def fits(self) -> bool:
        return self.share - self.stage_bytes >= MIN_PHOTO_BUDGET_BYTES

    @property
    def needed(self) -> int:
        ahead = self.tensors_ahead * self.stage_bytes
        return self.footprint + ahead + self.photos_at_once * (self.stage_bytes + MIN_PHOTO_BUDGET_BYTES)

    def describe(self) -> str:
        runs = f", run {self.concurrent_runs} at once" if self.concurrent_runs > 1 else ""
        holds = "would hold about" if self.estimated else "holds"
        ahead = f" and {self.tensors_ahead} input(s) prepared ahead" if self.tensors_ahead else ""
        return (
            f"the model {holds} {self.footprint // MIB} MiB once run at its largest input{runs}; with "
            f"{self.photos_at_once} photo(s) in the works{ahead} it needs at least {self.needed // MIB} MiB of the "
            f"{planned_bytes(self.limit) // MIB} MiB planned under the unit's MemoryMax ({self.limit // MIB} MiB; "
            "the rest is the margin MemoryHigh keeps)"
        )

    def one_inference_at_a_time(self, photos_at_once: int) -> MemoryPlan:
        """The same model run one inference at a time by one worker that decodes and infers (nothing prepared
        ahead), with ``photos_at_once`` photos in the works."""
        return dataclasses.replace(
            self,
            footprint=self.one_run_footprint,
            photos_at_once=photos_at_once,
            concurrent_runs=1,
            tensors_ahead=0,
            estimated=False,
            instead_of=self,
        )

    def remedy(self) -> str:
        from andi_edge.pipeline import available_cpus, one_inference_at_a_time_words

        steps = (
            [
                f"run one inference at a time on every core ({one_inference_at_a_time_words(available_cpus())}; "
                "each inference at once keeps buffers of its own, and for a model this size one photo on all cores "
                "is about as fast)"
            ]
            if self.concurrent_runs > 1
            else []
        )
        if not self.int8:
            steps.append("run the model's INT8 sibling (andi-edge quantize; backend.prefer_int8)")
        steps += ["use a smaller input size or model", "raise the unit's MemoryMax and MemoryHigh"]
        return ", ".join(steps[:-1]) + " or " + steps[-1]


def plan_memory(
    detector: Detector,
    photos_at_once: int,
    concurrent_runs: int,
    limit: int,
    one_at_a_time_photos: int | None = None,
    tensors_ahead: int = 0,
) -> MemoryPlan:
    """Run the model as the pipeline will and set its footprint against ``limit`` (``tensors_ahead``: inputs
    the pipeline prepares ahead of the inference).

    ``one_at_a_time_photos``: how many photos are in the works when the pipeline runs one inference at a time,
    where it may (how many run at once was left to the machine): when the runs at once do not fit and one run
    does, that plan is given, its ``instead_of`` the one asked for. The caller then runs one inference at a time
    on every core (``pipeline.one_inference_at_a_time``)."""
    footprint = model_footprint_bytes(detector, concurrent_runs, ceiling=planned_bytes(limit))
    plan = MemoryPlan(
        limit=limit,
        footprint=footprint.at_once_bytes,
        estimated=not footprint.measured,
        photos_at_once=photos_at_once,
        concurrent_runs=concurrent_runs,
        stage_bytes=detector.stage_bytes,
        int8=detector.card.precision == "int8",
        one_run_footprint=footprint.one_run_bytes,
        tensors_ahead=tensors_ahead,
    )
    if plan.fits or one_at_a_time_photos is None or concurrent_runs <= 1:
        return plan
    single = plan.one_inference_at_a_time(one_at_a_time_photos)
    return single if single.fits else plan


def fit_to_memory(detector: Detector, plan: MemoryPlan) -> None:
    """Lower ``detector``'s per-photo budget where ``plan`` asks for it (see the module's docstring). UsageError
    where the limit leaves a photo too little, with what to change."""
    if not plan.fits:
        raise UsageError(f"too little memory for this model: {plan.describe()}", hint=plan.remedy())
    limit = plan.limit
    settings = detector.settings
    if plan.share >= settings.max_decode_bytes:
        log.info("memory limit %d MiB: the model holds %d MiB", limit // MIB, plan.footprint // MIB)
        return
    detector.settings = dataclasses.replace(settings, max_decode_mb=plan.share // MIB)
    log.info(
        "memory limit %d MiB: the model holds %d MiB; each photo's decode within %d MiB (detector.max_decode_mb "
        "%d), %d photo(s) at once",
        limit // MIB,
        plan.footprint // MIB,
        plan.share // MIB,
        settings.max_decode_mb,
        plan.photos_at_once,
    )


#: ONNX Runtime holds about this many times a model file's size while it loads it (the file's protobuf and the
#: initialisers made from it): 2.3 measured on MDv5a-sized fp32 and INT8 models (benchmarks/megadetector_cpu.py)
LOAD_FACTOR = 2.3


def refuse_unloadable(model: Path, limit: int | None = None) -> None:
    """UsageError, before the model is loaded, where loading it alone would pass the memory limit: the kernel
    would kill the daemon while it loads (under systemd, again at every restart) without a word."""
    limit = cgroup_memory_limit() if limit is None else limit
    try:
        size = model.stat().st_size
    except OSError:
        return  # the loader says what is wrong with the file
    if limit is None or size * LOAD_FACTOR <= limit:
        return
    raise UsageError(
        f"too little memory for this model: loading {model.name} ({size // MIB} MiB) takes about "
        f"{int(size * LOAD_FACTOR) // MIB} MiB, more than the memory limit of {limit // MIB} MiB",
        hint="run the model's INT8 sibling (andi-edge quantize; backend.prefer_int8) or a smaller model, or raise "
        "the unit's MemoryMax and MemoryHigh",
    )


#: the shipped watch unit, whose MemoryMax= holds where no unit is installed
SHIPPED_UNIT = Path(__file__).resolve().parents[1] / "assets" / "systemd" / "andi-edge.service"
_SIZE_SUFFIXES = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def unit_memory_max(unit: Path) -> int | None:
    """The ``MemoryMax=`` of a unit file in bytes (K, M, G, T suffixes, base 1024); None when it sets none."""
    try:
        lines = unit.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):  # the last assignment wins
        key, _, value = line.strip().partition("=")
        if key != "MemoryMax":
            continue
        value = value.strip()
        factor = _SIZE_SUFFIXES.get(value[-1:].upper(), 1)
        number = value[:-1] if factor != 1 else value
        return int(float(number) * factor) if number.replace(".", "", 1).isdigit() else None
    return None
