"""The one route from settings to a running detector, for `detect`, `batch` (each of its workers, local or on Ray),
`bench`, `watch` and `check`: a ``DetectionConfig`` (from flags, a config file, or both) -> the pipeline plan for
this machine -> the model files to run (the configured ones, or their gated INT8) -> the classifier -> the detector.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from andi_edge.pipeline import PipelinePlan, plan_pipeline
from andi_edge.runtime.classifier import load_classifier
from andi_edge.runtime.detector import Detector
from andi_edge.runtime.model_choice import choose_model
from andi_edge.settings import DetectionConfig, build_strict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assembled:
    detector: Detector
    plan: PipelinePlan
    #: why the detector runs the file it runs (as configured, or its gated INT8 sibling), and the classifier
    model_reason: str
    classifier_reason: str | None = None


def plan_for(config: DetectionConfig, cpus: int | None = None) -> PipelinePlan:
    """How the run uses this machine (``cpus``: the cores it may use; None: all)."""
    backend = config.backend
    return plan_pipeline(
        config.pipeline, backend.threads, backend.providers, backend.name, cpus=cpus, precision=backend.precision
    )


def assemble(
    config: DetectionConfig, plan: PipelinePlan | None = None, before_load: Callable[[Path], None] | None = None
) -> Assembled:
    """The detector ``config`` asks for, threaded for ``plan`` (``plan_for(config)`` when not given). Raises the
    runtime's typed errors (a missing or unreadable model, an unknown backend) before any photo is read.
    ``before_load`` sees the chosen model file before it is loaded (and may refuse it)."""
    plan = plan or plan_for(config)
    log.debug("pipeline %s", plan.describe())
    choice = choose_model(Path(config.model), config.backend.prefer_int8)
    classifier_settings = config.classifier
    classifier_reason = None
    if classifier_settings.model:
        chosen = choose_model(Path(classifier_settings.model), config.backend.prefer_int8)
        classifier_settings = dataclasses.replace(classifier_settings, model=str(chosen.path))
        classifier_reason = chosen.reason
    if before_load is not None:
        before_load(choice.path)
    detector = Detector(
        choice.path,
        settings=config.detector,
        backend=config.backend.name,
        backend_options=plan.backend,
        classifier=load_classifier(classifier_settings, plan.backend),
    )
    return Assembled(detector, plan, choice.reason, classifier_reason)


def with_absolute_paths(config: DetectionConfig) -> DetectionConfig:
    """The same settings with the model files as absolute paths (for workers that run elsewhere)."""
    classifier = config.classifier
    if classifier.model:
        classifier = dataclasses.replace(
            classifier,
            model=str(Path(classifier.model).resolve()),
            card=str(Path(classifier.card).resolve()) if classifier.card else "",
        )
    return dataclasses.replace(config, model=str(Path(config.model).resolve()), classifier=classifier)


def config_to_data(config: DetectionConfig) -> dict[str, Any]:
    """Plain data that crosses process and machine boundaries (``config_from_data`` reads it back)."""
    data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(config)))  # lists, as a config file has them
    data["pipeline"].pop("parallel", None)  # resolved per machine by plan_for, never sent
    return data


def config_from_data(data: dict[str, Any]) -> DetectionConfig:
    config: DetectionConfig = build_strict(DetectionConfig, data, "a worker's settings")
    return config
