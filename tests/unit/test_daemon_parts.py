"""The daemon's parts hold only what they use: each gets its few collaborators by keyword, at most six."""

from __future__ import annotations

import inspect

from andi_edge.daemon.context import DaemonContext, DaemonPaths
from andi_edge.daemon.ingest import Ingest
from andi_edge.daemon.processing import Processor
from andi_edge.daemon.rendering import Renderer
from andi_edge.daemon.service import RunOptions, WatchService
from andi_edge.daemon.space import SpacePolicy
from andi_edge.daemon.watcher import Discovery

PARTS = (Processor, Renderer, Ingest, WatchService, SpacePolicy)


def _parameters(cls: type) -> list[inspect.Parameter]:
    return list(inspect.signature(cls).parameters.values())


def test_each_part_takes_at_most_six_collaborators_by_keyword() -> None:
    for part in PARTS:
        parameters = _parameters(part)
        assert len(parameters) <= 6, f"{part.__name__}: {len(parameters)} parameters"
        positional = [p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        assert positional == [], f"{part.__name__} takes {positional} by position"
    for shared in (DaemonContext, DaemonPaths, RunOptions, Discovery):
        assert len(_parameters(shared)) <= 6, shared.__name__


def test_only_the_loop_composes_the_renderer() -> None:
    """Ingest and processing do not hold the renderer: the loop hands it what changed."""
    for part in (Processor, Ingest):
        names = {p.name for p in _parameters(part)}
        assert "renderer" not in names, part.__name__
        annotations = " ".join(str(p.annotation) for p in _parameters(part))
        assert "Renderer" not in annotations, part.__name__
