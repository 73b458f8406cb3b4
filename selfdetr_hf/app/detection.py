"""The demo's detection run: the processor's post-processing with the page's settings,
video by video, with the windows done reported as they are processed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..evaluation.submission import write_submission
from ..inference import DetectionReport, as_submission, iter_detections
from ..processing_self_detr import SelfDetrProcessor
from .inputs import DemoVideos

Progress = Callable[[float, str], None]
"""Called with the fraction done and what is being done."""


@dataclass
class DemoDetections:
    """The detections of one run of the demo.

    Attributes:
        videos: what was detected on.
        detections: ``{video_id: {"segments", "scores", "labels", "label_names"}}`` as
            `SelfDetrProcessor.post_process_action_detection` returns (videos that could
            not be used are left out).
        failures: ``{video_id: message}`` of the videos that could not be used.
        submission: the ActivityNet JSON file of every video's detections.
    """

    videos: DemoVideos
    detections: dict[str, dict[str, Any]]
    submission: Path
    failures: dict[str, str] = field(default_factory=dict)


def detection_processor(
    processor: SelfDetrProcessor, *, threshold: float, top_k: int, nms_method: str
) -> SelfDetrProcessor:
    """``processor`` with the page's score threshold, detections per video and merging
    method (checked as the processor checks its settings).

    Raises:
        ValueError: a threshold outside [0, 1], a top-k below 1, an unknown NMS method.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the score threshold must lie in [0, 1], got {threshold:g}")
    if top_k != int(top_k):
        raise ValueError(f"top-k must be a whole number, got {top_k:g}")
    settings = {**processor.to_dict(), "min_score": float(threshold), "top_k_per_video": int(top_k)}
    return SelfDetrProcessor(**{**settings, "nms_method": nms_method})


def run_detection(
    model: torch.nn.Module,
    processor: SelfDetrProcessor,
    videos: DemoVideos,
    submission: str | Path,
    *,
    progress: Progress | None = None,
    batch_size: int = 16,
) -> DemoDetections:
    """Detect on every video (each read, checked and detected in turn) and write the
    submission; a video that cannot be used is recorded with the CLI's message.

    Raises:
        ValueError: no video could be used (the message holds each video's error).
    """
    report = DetectionReport()
    total = len(videos.video_ids)

    def on_windows(video_id: str) -> Callable[[int, int], None]:
        index = videos.video_ids.index(video_id)

        def update(done: int, windows: int) -> None:
            if progress is not None:
                progress((index + done / windows) / total, f"video {video_id}: window {done} of {windows}")

        return update

    found = dict(
        iter_detections(
            model, processor, videos.features, videos.video_ids, videos.timing,
            batch_size=batch_size, report=report, on_windows=on_windows,
        )
    )  # fmt: skip
    failures = {**videos.failures, **report.failures}
    if not found:
        raise ValueError("; ".join(failures.values()) or "no video to detect on")
    write_submission(submission, as_submission(found))
    return DemoDetections(videos=videos, detections=found, submission=Path(submission), failures=failures)


__all__ = ["DemoDetections", "detection_processor", "run_detection"]
