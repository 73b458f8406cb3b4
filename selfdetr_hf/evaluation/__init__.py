"""Evaluation: ActivityNet-protocol detection mAP, submission files, attention diversity.

Plots live in `selfdetr_hf.evaluation.plots` (needs matplotlib, the ``plot`` extra) and
the model-facing attention diagnostics in `selfdetr_hf.evaluation.diagnostics`.
"""

from pathlib import Path

from .detection_map import (
    ACTIVITYNET_TIOU_THRESHOLDS,
    THUMOS14_TIOU_THRESHOLDS,
    DetectionMAP,
    VideoDetections,
    evaluate_detections,
    ground_truth_arrays,
    interpolated_average_precision,
    to_video_detections,
)
from .diversity import LayerDiversity, attention_diversity, norm_1_inf, summarize_layer_diversity
from .metric import build_compute_metrics
from .submission import (
    SubmissionScore,
    read_submission,
    score_submission,
    submission_entries,
    write_submission,
)

SELF_DETR_MAP_METRIC = Path(__file__).resolve().parent / "self_detr_map"
"""Directory of the `evaluate` metric: ``evaluate.load(str(SELF_DETR_MAP_METRIC))``."""

__all__ = [
    "ACTIVITYNET_TIOU_THRESHOLDS",
    "SELF_DETR_MAP_METRIC",
    "THUMOS14_TIOU_THRESHOLDS",
    "DetectionMAP",
    "LayerDiversity",
    "SubmissionScore",
    "VideoDetections",
    "attention_diversity",
    "build_compute_metrics",
    "evaluate_detections",
    "ground_truth_arrays",
    "interpolated_average_precision",
    "norm_1_inf",
    "read_submission",
    "score_submission",
    "submission_entries",
    "summarize_layer_diversity",
    "to_video_detections",
    "write_submission",
]
