from __future__ import annotations

import pytest

from andi_edge.config import BackendSettings, PipelineSettings
from andi_edge.errors import ConfigError
from andi_edge.pipeline import (
    backend_options_for,
    left_to_the_machine,
    one_inference_at_a_time,
    plan_pipeline,
    prefetch_ordered,
)


def test_auto_threads_leave_the_decoders_their_cores() -> None:
    auto = backend_options_for(0, (), PipelineSettings(decode_workers=1), cpus=2)
    assert auto.intra_op_threads == 1 and not auto.allow_spinning
    big = backend_options_for(0, ("CUDAExecutionProvider",), PipelineSettings(decode_workers=2), cpus=8)
    assert big.intra_op_threads == 6 and big.providers == ("CUDAExecutionProvider",)
    inline = backend_options_for(0, (), PipelineSettings(decode_workers=0), cpus=4)
    assert inline.intra_op_threads == 4 and inline.allow_spinning
    assert backend_options_for(3, (), PipelineSettings(decode_workers=1), cpus=2).intra_op_threads == 3


def test_prefetch_keeps_order_and_carries_errors() -> None:
    def prepare(i: int) -> int:
        if i == 3:
            raise ValueError("bad photo")
        return i * 10

    for workers in (0, 1, 3):
        out = list(prefetch_ordered(range(7), prepare, PipelineSettings(decode_workers=workers, max_in_flight=2)))
        assert [item for item, _ in out] == list(range(7))
        assert [f.result() for i, f in out if i != 3] == [0, 10, 20, 40, 50, 60]
        assert isinstance(out[3][1].exception(), ValueError)


PLAN_ROWS = {
    # (mode, threads, providers, backend, cpus) -> (parallel, workers, inference threads, max_in_flight)
    "auto on 2 CPU cores: parallel, one worker and one thread per core": (("auto", 0, (), "ort", 2), (True, 2, 1, 4)),
    "auto on 8 cores: 8 workers, two photos in flight each": (("auto", 0, (), "ort", 8), (True, 8, 1, 16)),
    "auto on 1 core: nothing to run beside": (("auto", 0, (), "ort", 1), (False, 1, 1, 4)),
    "auto with threads set by hand: split, as asked": (("auto", 3, (), "ort", 4), (False, 1, 3, 4)),
    "auto on a GPU: split": (("auto", 0, ("CUDAExecutionProvider",), "ort", 4), (False, 1, 3, 4)),
    "auto with CPU named explicitly: parallel": (("auto", 0, ("CPUExecutionProvider",), "ort", 2), (True, 2, 1, 4)),
    "auto on OpenVINO's CPU: parallel, one stream per worker": (("auto", 0, (), "openvino", 4), (True, 4, 1, 8)),
    "OpenVINO's CPU named explicitly: parallel": (("parallel", 0, ("CPU",), "openvino", 2), (True, 2, 1, 4)),
    "auto on OpenVINO's GPU: split": (("auto", 0, ("GPU",), "openvino", 4), (False, 1, 3, 4)),
    "parallel asked for on OpenVINO's GPU: split": (("parallel", 0, ("GPU",), "openvino", 4), (False, 1, 3, 4)),
    "parallel on 1 core, as asked": (("parallel", 0, (), "ort", 1), (True, 1, 1, 4)),
    "parallel with 2 threads each": (("parallel", 2, (), "ort", 4), (True, 4, 2, 8)),
    "split as asked": (("split", 0, (), "ort", 4), (False, 1, 3, 4)),
}


@pytest.mark.parametrize("row", list(PLAN_ROWS))
def test_the_plan_uses_the_cores_the_way_the_backend_can(row: str) -> None:
    (mode, threads, providers, backend, cpus), (parallel, workers, intra, in_flight) = PLAN_ROWS[row]
    plan = plan_pipeline(PipelineSettings(mode=mode), threads, providers, backend, cpus=cpus, precision="bf16")
    got = (plan.parallel, plan.settings.decode_workers, plan.backend.intra_op_threads, plan.settings.max_in_flight)
    assert got == (parallel, workers, intra, in_flight)
    assert plan.backend.providers == providers
    assert plan.backend.precision == "bf16", "the precision reaches the backend whatever the plan"
    assert plan.backend.concurrent_runs == (workers if parallel else 1), "one request/stream per worker"
    if parallel:
        assert not plan.backend.allow_spinning, "a spinning thread would steal the other workers' cores"
        assert not plan.backend.memory_pattern, "each concurrent run would keep a planned block of its own"
        named = "1 worker" if workers == 1 else f"{workers} workers"
        assert plan.describe() == f"parallel: {named}, {intra} inference thread(s) each"
    else:
        assert plan.describe() == f"split: {workers} decode worker(s), {intra} inference thread(s)"
        assert plan.backend.memory_pattern


def test_a_chosen_worker_count_and_bad_settings() -> None:
    plan = plan_pipeline(PipelineSettings(mode="parallel", workers=3, max_in_flight=10), 0, (), cpus=2)
    assert (plan.settings.decode_workers, plan.settings.max_in_flight) == (3, 10)
    with pytest.raises(ConfigError, match=r"pipeline\.mode must be one of auto, parallel, split, got 'fast'"):
        PipelineSettings(mode="fast")
    with pytest.raises(ConfigError, match=r"pipeline\.workers must be at least 0, got -1"):
        PipelineSettings(workers=-1)


def test_an_item_that_hangs_is_given_up_on_and_the_others_go_on() -> None:
    """A read stuck on a card that stopped answering (D state: no signal ends it) must not hold the loop until
    the watchdog kills the daemon: past the timeout the item fails with ItemTimeoutError, the rest are done."""
    import threading
    import time

    from andi_edge.config import PipelineSettings
    from andi_edge.daemon.retry import fault_of
    from andi_edge.pipeline import ItemTimeoutError, prefetch_ordered

    release = threading.Event()

    def prepare(item: int) -> int:
        if item == 2:
            release.wait(30)  # the stuck read
        return item * 10

    started = time.monotonic()
    try:
        results = []
        for item, future in prefetch_ordered(range(6), prepare, PipelineSettings(decode_workers=2), timeout_s=0.3):
            error = future.exception()
            results.append((item, type(error).__name__ if error else future.result()))
        assert results == [(0, 0), (1, 10), (2, "ItemTimeoutError"), (3, 30), (4, 40), (5, 50)]
        assert time.monotonic() - started < 10, "the run did not wait for the stuck item"
    finally:
        release.set()
    fault = fault_of(ItemTimeoutError("no answer within 60 s"), "DCIM/IMG_0001.JPG")
    assert fault.transient and fault.message.startswith("read_timeout: DCIM/IMG_0001.JPG: no answer within 60 s")


def test_one_inference_at_a_time_on_every_core_where_the_machine_chooses() -> None:
    """What a memory limit too tight for several inferences at once makes of the defaults: one worker decoding
    a photo, then inferring it on every core (nothing prepared ahead), as the memory refusal's remedy says. Only
    the shape left to the machine is changed: workers, threads or a mode set by hand are the user's choice."""
    defaults, backend = PipelineSettings(), BackendSettings()
    assert left_to_the_machine(defaults, backend)
    assert not left_to_the_machine(PipelineSettings(workers=2), backend)
    assert not left_to_the_machine(defaults, BackendSettings(threads=1))
    assert not left_to_the_machine(PipelineSettings(mode="parallel"), backend)
    assert plan_pipeline(defaults, backend.threads, (), cpus=4).backend.concurrent_runs == 4
    pipeline, single = one_inference_at_a_time(defaults, backend, cpus=4)
    plan = plan_pipeline(pipeline, single.threads, (), cpus=4)
    assert plan.describe() == "parallel: 1 worker, 4 inference thread(s) each", "it decodes, then infers"
    assert plan.backend.concurrent_runs == 1 and (pipeline.mode, pipeline.workers, single.threads) == ("parallel", 1, 4)
