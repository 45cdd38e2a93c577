"""Experiment trackers: the :class:`Tracker` contract and core's trackers (TensorBoard, MLflow,
Weights & Biases), each importing its library only when a run uses it.

``tracker.py`` (the contract, :class:`RunInfo`), ``resolve.py`` (``logging.trackers`` and the
``[trackers.<name>]`` tables checked when a config loads), ``session.py`` (what the trainer does
with them on rank 0), one module per built-in tracker. Guide: docs/tracking.md.
"""

from deepseek.tracking.tracker import (
    ARTIFACT_KINDS,
    RunInfo,
    Tracker,
    TrackerWarning,
    require_library,
)

__all__ = ["ARTIFACT_KINDS", "RunInfo", "Tracker", "TrackerWarning", "require_library"]
