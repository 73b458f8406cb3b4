"""Ground-truth annotation files: one reader for the three shapes in use.

* ActionFormer / ActivityNet style: ``{"database": {video_id: {"subset", "duration"?, "fps"?,
  "annotations": [{"label", "segment": [start, end]}]}}}`` (seconds; values may be strings).
* BSN style: ``{video_id: {"duration_second", "feature_frame"?, "duration_frame"?,
  "annotations": [...]}}`` with subsets and frame rates in a separate ``video_info`` CSV
  (``video,numFrame,seconds,fps,rfps,subset,featureFrame``).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

FORMATS = ("actionformer", "activitynet", "bsn")
INVALID_SEGMENT_POLICIES = ("clip", "error", "keep")


@dataclass
class VideoAnnotation:
    """The ground truth of one video.

    Attributes:
        subset: split name as written in the file (e.g. ``"Validation"``), None when absent.
        duration: video length in seconds, None when the file has none.
        fps: video frame rate, None when absent.
        segments: ``(n, 2)`` float64 ``(start, end)`` in seconds.
        labels: ``n`` class names, one per segment.
        feature_duration: seconds covered by the features when the file says so (BSN
            ``feature_frame``), else None.
    """

    subset: str | None
    duration: float | None
    fps: float | None
    segments: np.ndarray
    labels: list[str]
    feature_duration: float | None = field(default=None)

    def __post_init__(self) -> None:
        self.segments = np.asarray(self.segments, dtype=np.float64).reshape(-1, 2)
        if len(self.labels) != len(self.segments):
            raise ValueError(f"{len(self.labels)} labels for {len(self.segments)} segments")


def load_annotations(
    path: str | Path,
    *,
    subset: str | Sequence[str] | None = None,
    video_info: str | Path | None = None,
    format: Literal["actionformer", "activitynet", "bsn"] | None = None,
    invalid_segments: Literal["clip", "error", "keep"] = "clip",
) -> dict[str, VideoAnnotation]:
    """Read an annotation file into ``{video_id: VideoAnnotation}``.

    Args:
        path: the JSON file.
        subset: keep only videos of this subset (or these subsets); case-insensitive.
        video_info: BSN-style CSV giving each video's ``subset`` and ``fps``.
        format: ``actionformer``, ``activitynet`` (both the ``database`` shape) or ``bsn``;
            detected from the file when None.
        invalid_segments: what to do with a segment whose end is not after its start or
            that leaves ``[0, duration]``: ``clip`` it to the video (dropping it when
            nothing is left) with one warning per file, raise (``error``), or ``keep`` it
            as written (for evaluation against the file exactly).

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a file is not readable JSON/CSV, has an unknown shape, or (with
            ``invalid_segments="error"``) holds an invalid segment; the message names the
            file, the video and the field.
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    if invalid_segments not in INVALID_SEGMENT_POLICIES:
        raise ValueError(
            f"invalid_segments must be one of {', '.join(INVALID_SEGMENT_POLICIES)}; got {invalid_segments!r}"
        )
    content = _read_json(path)
    format = format or detect_format(content, path)
    info = _read_video_info(Path(video_info)) if video_info is not None else {}
    if format == "bsn":
        videos = _parse_bsn(content, path, info)
    else:
        videos = _parse_database(content, path, info)
    if subset is not None:
        videos = _select_subsets(videos, subset, path, has_subsets=format != "bsn" or bool(info))
    if invalid_segments != "keep":
        videos = _check_segments(videos, path, clip=invalid_segments == "clip")
    return videos


def label_names(annotations: Mapping[str, VideoAnnotation]) -> list[str]:
    """Sorted distinct class names of ``annotations`` (the default label order)."""
    return sorted({label for video in annotations.values() for label in video.labels})


def detect_format(content: Any, path: Path) -> str:
    """Name the format of a parsed annotation file; raise naming ``path`` if it is none."""
    if isinstance(content, dict) and isinstance(content.get("database"), dict):
        entries = content["database"].values()
        if all(isinstance(entry, dict) for entry in entries):
            return "actionformer" if _has_any(entries, "fps", "duration") else "activitynet"
    elif (
        isinstance(content, dict)
        and all(isinstance(entry, dict) for entry in content.values())
        and _has_any(content.values(), "duration_second")
    ):
        return "bsn"
    raise ValueError(
        f"{path}: unknown annotation format; expected ActionFormer/ActivityNet style "
        '({"database": {video_id: {"subset", "annotations": [{"label", "segment"}]}}}) or BSN style '
        '({video_id: {"duration_second", "annotations": [...]}} with a video_info CSV)'
    )


def _has_any(entries: Iterable[dict], *keys: str) -> bool:
    return any(key in entry for entry in entries for key in keys)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable JSON annotation file ({error})") from None


def _read_video_info(path: Path) -> dict[str, dict[str, str]]:
    """BSN ``video_info`` CSV -> ``{video_id: row}``."""
    if not path.is_file():
        raise FileNotFoundError(f"video_info file not found: {path}")
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (csv.Error, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable CSV file ({error})") from None
    missing = {"video", "subset"} - set(rows[0] if rows else ())
    if missing:
        raise ValueError(f"{path}: video_info CSV needs the columns video and subset; missing {sorted(missing)}")
    return {row["video"]: row for row in rows}


def _number(value: Any, path: Path, video_id: str, field_name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: video {video_id!r}, field {field_name}: not a number ({value!r})") from None
    if not math.isfinite(number):
        raise ValueError(f"{path}: video {video_id!r}, field {field_name}: not finite ({value!r})")
    return number


def _optional_number(entry: Mapping, key: str, path: Path, video_id: str) -> float | None:
    value = entry.get(key)
    return None if value is None or value == "" else _number(value, path, video_id, key)


def _parse_instances(entry: Mapping, path: Path, video_id: str) -> tuple[np.ndarray, list[str]]:
    instances = entry.get("annotations", [])
    if not isinstance(instances, list):  # a malformed file is a bad value, not a bad argument type
        raise ValueError(f"{path}: video {video_id!r}, field annotations: expected a list")  # noqa: TRY004
    segments, labels = [], []
    for index, instance in enumerate(instances):
        where = f"annotations[{index}]"
        complete = isinstance(instance, dict) and "segment" in instance and "label" in instance
        if not complete:
            raise ValueError(f"{path}: video {video_id!r}, field {where}: expected an object with segment and label")
        segment = instance["segment"]
        if not isinstance(segment, (list, tuple)) or len(segment) != 2:
            raise ValueError(f"{path}: video {video_id!r}, field {where}.segment: expected [start, end]")
        segments.append([_number(value, path, video_id, f"{where}.segment") for value in segment])
        labels.append(str(instance["label"]))
    return np.asarray(segments, dtype=np.float64).reshape(-1, 2), labels


def _parse_database(content: dict, path: Path, info: Mapping[str, Mapping[str, str]]) -> dict[str, VideoAnnotation]:
    videos = {}
    for video_id, entry in content["database"].items():
        segments, labels = _parse_instances(entry, path, video_id)
        row = info.get(video_id, {})
        fps = _optional_number(entry, "fps", path, video_id)
        videos[video_id] = VideoAnnotation(
            subset=entry.get("subset", row.get("subset")),
            duration=_optional_number(entry, "duration", path, video_id),
            fps=fps if fps is not None else _optional_number(row, "fps", path, video_id),
            segments=segments,
            labels=labels,
        )
    return videos


def _parse_bsn(content: dict, path: Path, info: Mapping[str, Mapping[str, str]]) -> dict[str, VideoAnnotation]:
    videos = {}
    for video_id, entry in content.items():
        segments, labels = _parse_instances(entry, path, video_id)
        duration = _optional_number(entry, "duration_second", path, video_id)
        frames = _optional_number(entry, "duration_frame", path, video_id)
        feature_frames = _optional_number(entry, "feature_frame", path, video_id)
        feature_duration = None
        if duration is not None and frames and feature_frames is not None:
            feature_duration = duration * feature_frames / frames
        row = info.get(video_id, {})
        videos[video_id] = VideoAnnotation(
            subset=row.get("subset"),
            duration=duration,
            fps=_optional_number(row, "fps", path, video_id),
            segments=segments,
            labels=labels,
            feature_duration=feature_duration,
        )
    return videos


def _select_subsets(
    videos: dict[str, VideoAnnotation], subset: str | Sequence[str], path: Path, has_subsets: bool
) -> dict[str, VideoAnnotation]:
    if not has_subsets:
        raise ValueError(f"{path}: a BSN-style file has no subsets; pass video_info= (the CSV) to select {subset!r}")
    wanted = {subset.lower()} if isinstance(subset, str) else {name.lower() for name in subset}
    selected = {vid: video for vid, video in videos.items() if (video.subset or "").lower() in wanted}
    if not selected:
        present = sorted({video.subset for video in videos.values() if video.subset})
        raise ValueError(f"{path}: no video of subset {subset!r}; subsets present: {present}")
    return selected


def _check_segments(videos: dict[str, VideoAnnotation], path: Path, clip: bool) -> dict[str, VideoAnnotation]:
    """Clip segments to ``[0, duration]`` and drop empty ones (one warning), or raise."""
    changed: list[str] = []
    dropped = clipped = 0
    for video_id, video in videos.items():
        start, end = video.segments[:, 0], video.segments[:, 1]
        upper = np.inf if video.duration is None else video.duration
        bad = (end <= start) | (start < 0) | (end > upper)
        if not bad.any():
            continue
        if not clip:
            index = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{path}: video {video_id!r}, field annotations[{index}].segment: {video.segments[index].tolist()} "
                f"is empty or outside the video [0, {video.duration}] s"
            )
        new_segments = np.stack((start.clip(0, upper), end.clip(0, upper)), axis=1)
        keep = new_segments[:, 1] > new_segments[:, 0]
        dropped += int((~keep).sum())
        clipped += int((bad & keep).sum())
        changed.append(video_id)
        video.segments = new_segments[keep]
        video.labels = [label for label, kept in zip(video.labels, keep) if kept]
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        warnings.warn(
            f"{path}: {clipped} segment(s) clipped to the video and {dropped} empty or outside segment(s) "
            f"dropped, in {len(changed)} video(s): {shown}",
            stacklevel=3,
        )
    return videos


__all__ = ["VideoAnnotation", "detect_format", "label_names", "load_annotations"]
