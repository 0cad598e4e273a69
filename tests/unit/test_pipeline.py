from __future__ import annotations

from andi_edge.pipeline import PipelineSettings, backend_options_for, prefetch_ordered


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
