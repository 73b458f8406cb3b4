"""Detection with a trained model: feature sequences in, detections in seconds out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .data import FeatureFolder, check_finite
from .data.checks import check_positive, short_input_limit
from .data.dataset import FeatureSource, open_features
from .feature_files import check_feature_shape
from .processing_self_detr import SelfDetrProcessor


def read_features(
    folder: FeatureFolder, video_ids: Sequence[str], *, feature_dim: int | None = None
) -> dict[str, np.ndarray]:
    """``{video_id: (T, C) float32}`` of ``video_ids`` in memory, each checked
    (`check_video_features`); a bad one is an error naming its file."""
    features = {}
    for video_id in video_ids:
        array, source = open_features(folder, video_id)
        features[video_id] = np.array(check_video_features(array, video_id, source, feature_dim))  # not a memmap
    return features


def feature_files(path: str | Path, folder: FeatureFolder) -> tuple[FeatureFolder, list[str]]:
    """The folder and video ids behind ``path``: one feature file, or every video of ``folder``.

    ``path`` is a file (its folder, extension and video id are used with ``folder``'s
    other settings) or ``folder``'s first folder.

    Raises:
        FileNotFoundError: no such file or folder, or a folder without feature files.
    """
    path = Path(path)
    if path.is_file():
        name = path.stem
        if not (name.startswith(folder.prefix) and name.endswith(folder.suffix)):
            raise ValueError(
                f"{path}: the file name does not start with {folder.prefix!r} and end with {folder.suffix!r}"
            )
        single = dataclasses.replace(folder, folders=path.parent, extension=path.suffix)
        return single, [name[len(folder.prefix) : len(name) - len(folder.suffix)]]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such feature file or folder")
    return folder, folder.video_ids()


def check_video_features(array: Any, video_id: str, source: str, feature_dim: int | None) -> np.ndarray:
    """``(T, C)`` float32 features read into memory and checked: `check_feature_shape`, then finite.

    Raises:
        FeatureError: naming the video and ``source`` (its file).
    """
    check_feature_shape(array, video_id, source, feature_dim)
    return check_finite(np.asarray(array, dtype=np.float32), video_id, source)


@dataclasses.dataclass
class DetectionReport:
    """What `iter_detections` met besides detections.

    Attributes:
        strict: raise at the first video that cannot be used instead of recording it.
        failures: ``{video_id: message}`` of the videos that could not be used.
        short_videos: ids of the videos with fewer steps than `short_input_limit`.
    """

    strict: bool = False
    failures: dict[str, str] = dataclasses.field(default_factory=dict)
    short_videos: list[str] = dataclasses.field(default_factory=list)


WindowProgress = Callable[[int, int], None]
"""Called with (windows done, windows in all) of one video."""


class VideoTiming(NamedTuple):
    """How a video's feature steps map to seconds."""

    feature_fps: float
    time_offset: float = 0.0
    duration: float | None = None
    """Video length in seconds; None: the span of the features."""


@torch.no_grad()
def detect_video(
    model: torch.nn.Module, processor: SelfDetrProcessor, features: np.ndarray, video_id: str, timing: VideoTiming,
    *, batch_size: int = 16, on_windows: WindowProgress | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Detections of one video's checked ``(T, C)`` features, in seconds (only its windows are held).

    ``on_windows(done, total)`` is called after each forward pass with the video's windows
    done so far and their number.

    Returns:
        ``{"video_id", "segments", "scores", "labels", "label_names"}`` as
        `SelfDetrProcessor.post_process_action_detection` returns for one video.
    """
    check_positive(feature_fps=timing.feature_fps, batch_size=batch_size)
    model.eval()
    device = next(model.parameters()).device
    durations = None if timing.duration is None else [timing.duration]
    inputs = processor(
        features, feature_fps=timing.feature_fps, time_offset=timing.time_offset, durations=durations,
        video_ids=[video_id], return_tensors="pt",
    )  # fmt: skip
    logits, segments = [], []
    for start in range(0, len(inputs["input_features"]), batch_size):
        outputs = model(
            input_features=inputs["input_features"][start : start + batch_size].to(device),
            attention_mask=inputs["attention_mask"][start : start + batch_size].to(device),
            return_dict=True,
        )
        logits.append(outputs.logits.float().cpu())
        segments.append(outputs.pred_segments.float().cpu())
        if on_windows is not None:
            on_windows(min(start + batch_size, len(inputs["input_features"])), len(inputs["input_features"]))
    predictions = {"logits": torch.cat(logits), "pred_segments": torch.cat(segments)}
    found = processor.post_process_action_detection(
        predictions, inputs["window_metadata"], id2label=model.config.id2label
    )
    return found[0]


def iter_detections(
    model: torch.nn.Module,
    processor: SelfDetrProcessor,
    features: FeatureSource,
    video_ids: Iterable[str],
    timing: VideoTiming | Callable[[str], VideoTiming],
    *,
    batch_size: int = 16,
    report: DetectionReport | None = None,
    on_windows: Callable[[str], WindowProgress] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Detections video by video: each video is read, checked and detected, then dropped.

    Args:
        model / processor / batch_size: as `detect`.
        features: a `FeatureFolder` or ``{video_id: (T, C) array-like}``.
        video_ids: which videos, in order.
        timing: one `VideoTiming` for every video, or a function of the video id giving it
            (it may raise an error naming the video).
        report: when given, videos much shorter than a window are listed in it, and (unless
            ``report.strict``) a video that cannot be used (unreadable, wrong shape, NaN, no
            timing) is recorded in ``report.failures`` and skipped; else its error is raised.
        on_windows: the video id -> the ``on_windows`` progress callback of `detect_video`.

    Yields:
        ``(video_id, detections)`` as `detect_video` returns.
    """
    for video_id in video_ids:
        try:
            array, source = open_features(features, video_id)
            array = check_video_features(array, video_id, source, model.config.feature_dim)
            if report is not None and len(array) < short_input_limit(processor):
                report.short_videos.append(video_id)
            found = detect_video(
                model, processor, array, video_id, timing(video_id) if callable(timing) else timing,
                batch_size=batch_size, on_windows=None if on_windows is None else on_windows(video_id),
            )  # fmt: skip
        except (ValueError, OSError) as error:
            if report is None or report.strict:
                raise
            report.failures[video_id] = str(error)
            continue
        yield video_id, found


def detect(
    model: torch.nn.Module,
    processor: SelfDetrProcessor,
    features: FeatureSource,
    *,
    feature_fps: float | Mapping[str, float],
    video_ids: Sequence[str] | None = None,
    time_offset: float = 0.0,
    durations: Mapping[str, float] | None = None,
    batch_size: int = 16,
) -> dict[str, dict[str, Any]]:
    """Detections of every video, in seconds.

    Args:
        model: a `SelfDetrForActionDetection` (put in eval mode here).
        processor: its windowing and post-processing settings.
        features: ``{video_id: (T, C)}`` arrays, or a `FeatureFolder`.
        feature_fps: feature steps per second (positive), one value or one per video.
        video_ids: which videos (default: every key of ``features``, every video of a `FeatureFolder`).
        time_offset: seconds of feature position 0 (half a clip for clip features).
        durations: video lengths in seconds (default: the span of the features).
        batch_size: windows per forward pass.

    Returns:
        ``{video_id: {"segments", "scores", "labels", "label_names"}}`` as
        `SelfDetrProcessor.post_process_action_detection(..., by_video=True)` returns.

    Raises:
        FeatureError: the first video that cannot be used, naming it and its file.
    """
    if video_ids is None:
        video_ids = features.video_ids() if isinstance(features, FeatureFolder) else list(features)

    def timing(video_id: str) -> VideoTiming:
        fps = feature_fps[video_id] if isinstance(feature_fps, Mapping) else feature_fps
        return VideoTiming(fps, time_offset, None if durations is None else durations[video_id])

    return dict(iter_detections(model, processor, features, video_ids, timing, batch_size=batch_size))


def as_submission(detections: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Processor output -> the form `write_submission` and `evaluate_detections` take
    (labels as class names)."""
    return {
        video_id: {"segments": found["segments"], "scores": found["scores"], "labels": found["label_names"]}
        for video_id, found in detections.items()
    }
