"""ActivityNet submission files: read, write, and score one against an annotation file.

A submission is ``{"version": str, "results": {video_id: [{"segment": [start, end],
"score": x, "label": name}, ...]}, "external_data": {"used": bool, "details": str}}``,
times in seconds. Reading only requires ``results``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .detection_map import (
    THUMOS14_TIOU_THRESHOLDS,
    DetectionMAP,
    VideoDetections,
    evaluate_detections,
    to_video_detections,
)


def read_submission(path: str | Path) -> dict[str, VideoDetections]:
    """Read and check an ActivityNet submission file.

    Returns:
        ``{video_id: VideoDetections}`` in file order (entries keep their order).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON, has no ``results`` object, or holds a malformed
            entry (the message names the video).
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable JSON submission ({error})") from None
    results_field = content.get("results") if isinstance(content, dict) else None
    if not hasattr(results_field, "items"):
        raise ValueError(
            f'{path}: not an ActivityNet submission; expected {{"results": {{video_id: '
            '[{"segment": [start, end], "score": x, "label": name}, ...]}}'
        )
    results = {}
    for video, entries in results_field.items():
        try:
            results[video] = to_video_detections(video, entries)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return results


def _json_label(label: Hashable) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def submission_entries(detections: Mapping[Hashable, Any]) -> dict[str, list[dict[str, Any]]]:
    """Detections in any form `evaluate_detections` accepts -> the ``results`` object.

    Entries of a video are written in order of decreasing score.
    """
    results = {}
    for video, value in detections.items():
        parsed = to_video_detections(video, value)
        order = (-parsed.scores).argsort(kind="stable")
        results[str(video)] = [
            {
                "label": _json_label(parsed.labels[i]),
                "score": float(parsed.scores[i]),
                "segment": parsed.segments[i].tolist(),
            }
            for i in order
        ]
    return results


def write_submission(
    path: str | Path,
    detections: Mapping[Hashable, Any],
    *,
    version: str = "VERSION 1.3",
    external_data: Mapping[str, Any] | None = None,
) -> None:
    """Write detections as an ActivityNet submission file.

    Args:
        path: the JSON file to write.
        detections: video id -> detections, in any form `evaluate_detections` accepts.
        version: the ``version`` field.
        external_data: the ``external_data`` field; defaults to ``{"used": False, "details": ""}``.
    """
    content = {
        "version": version,
        "results": submission_entries(detections),
        "external_data": dict(external_data) if external_data is not None else {"used": False, "details": ""},
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(content, handle)


@dataclass(frozen=True)
class SubmissionScore:
    """What `score_submission` returns.

    Attributes:
        result: the mAP of the whole submission against the (subset of the) annotations.
        videos_not_annotated: submission videos not in the (subset of the) annotations; as
            in the official evaluation, their detections are false positives.
        detections: detections in the submission.
        detections_not_annotated: the detections of the videos not annotated.
        videos_without_detections: subset name (``(none)`` where the file has none) -> how
            many of its videos with ground truth the submission has no detection for: every
            segment of theirs is missed.
    """

    result: DetectionMAP
    detections: int
    videos_not_annotated: int
    detections_not_annotated: int
    videos_without_detections: dict[str, int]


def score_submission(
    annotations: str | Path,
    submission: str | Path,
    *,
    subset: str | None = None,
    video_info: str | Path | None = None,
    tiou_thresholds: Sequence[float] = THUMOS14_TIOU_THRESHOLDS,
) -> SubmissionScore:
    """Score a submission file against an annotation file, ActivityNet protocol.

    Every detection of the submission is scored, as the official evaluation does: those of
    videos outside the (subset of the) annotations are false positives.

    Args:
        annotations: any annotation file `selfdetr_hf.data.load_annotations` reads; its
            segments are scored as written (no clipping to the video).
        submission: an ActivityNet submission file.
        subset: score against the videos of this subset only (e.g. ``Test``, ``validation``).
        video_info: the video-info CSV a BSN-style annotation file needs for subsets.
        tiou_thresholds: ``(T,)`` tIoU thresholds.

    Raises:
        FileNotFoundError, ValueError: unreadable or malformed files (naming the video).
    """
    from ..data import load_annotations

    ground_truth = load_annotations(annotations, subset=subset, video_info=video_info, invalid_segments="keep")
    detections = read_submission(submission)
    result = evaluate_detections(ground_truth, detections, tiou_thresholds)
    not_annotated = [found for video, found in detections.items() if video not in ground_truth]
    detected = {video for video, found in detections.items() if len(found.scores)}
    missed = [truth for video, truth in ground_truth.items() if truth.labels and video not in detected]
    return SubmissionScore(
        result=result,
        detections=sum(len(found.scores) for found in detections.values()),
        videos_not_annotated=len(not_annotated),
        detections_not_annotated=sum(len(found.scores) for found in not_annotated),
        videos_without_detections=dict(Counter(str(truth.subset or "(none)") for truth in missed)),
    )
