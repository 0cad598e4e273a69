"""Prometheus text-format metrics, written atomically to a file for node_exporter's textfile collector."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from andi_edge.detections import STAGES
from andi_edge.sinks.atomic import write_bytes_atomic


@dataclass
class DaemonMetrics:
    photos: dict[str, int] = field(default_factory=dict)  # journal counts by state
    processed_total: int = 0
    failed_total: int = 0
    retried_total: int = 0
    stage_ms_sum: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    paused_disk: bool = False
    paused_card: bool = False
    free_bytes: int = 0
    started_at: float = 0.0
    #: when this run finished its first photo (time.monotonic), whence the progress line's rate
    first_finished_at: float | None = None

    def observe(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage_ms_sum[stage] = self.stage_ms_sum.get(stage, 0.0) + ms

    def render(self) -> str:
        lines = [
            "# HELP andi_edge_photos Photos in the journal by state.",
            "# TYPE andi_edge_photos gauge",
            *(f'andi_edge_photos{{state="{state}"}} {n}' for state, n in sorted(self.photos.items())),
            "# HELP andi_edge_processed_total Photos processed by this daemon run.",
            "# TYPE andi_edge_processed_total counter",
            f"andi_edge_processed_total {self.processed_total}",
            "# HELP andi_edge_failed_total Photos recorded as failures by this daemon run.",
            "# TYPE andi_edge_failed_total counter",
            f"andi_edge_failed_total {self.failed_total}",
            "# HELP andi_edge_read_retries_total Reads that failed and were scheduled again by this daemon run.",
            "# TYPE andi_edge_read_retries_total counter",
            f"andi_edge_read_retries_total {self.retried_total}",
            "# HELP andi_edge_stage_seconds_total Time spent per pipeline stage by this daemon run.",
            "# TYPE andi_edge_stage_seconds_total counter",
            *(
                f'andi_edge_stage_seconds_total{{stage="{stage}"}} {ms / 1000:.6f}'
                for stage, ms in sorted(self.stage_ms_sum.items())
            ),
            "# HELP andi_edge_paused Whether processing is paused, by reason.",
            "# TYPE andi_edge_paused gauge",
            f'andi_edge_paused{{reason="disk_full"}} {int(self.paused_disk)}',
            f'andi_edge_paused{{reason="card_missing"}} {int(self.paused_card)}',
            "# HELP andi_edge_output_free_bytes Free space where outputs are written.",
            "# TYPE andi_edge_output_free_bytes gauge",
            f"andi_edge_output_free_bytes {self.free_bytes}",
            "# HELP andi_edge_start_time_seconds When this daemon run started (Unix time).",
            "# TYPE andi_edge_start_time_seconds gauge",
            f"andi_edge_start_time_seconds {self.started_at:.3f}",
        ]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        write_bytes_atomic(path, self.render().encode("utf-8"))
