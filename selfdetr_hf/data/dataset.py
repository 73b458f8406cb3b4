"""A `datasets.Dataset` of windows, ready for `Trainer`.

Each row is one window of one video. What the dataset stores is small metadata (the
video, the window, the feature rate, and the window's ground truth); the features are
read on access by a transform (`datasets.Dataset.with_transform`), so a 20,000-video set
never holds its features in memory. Rows read from the dataset hold:

* ``video_id``, ``duration`` (seconds), ``feature_fps``, ``time_offset`` (seconds of feature
  position 0), ``window_offset`` and ``window_length`` (first step and valid steps of the
  window, in the video's feature steps): the `WINDOW_METADATA_KEYS` the post-processor needs;
* ``class_labels`` ``(n,)`` and ``segments`` ``(n, 2)`` normalised (center, width) in the window;
* ``input_features`` ``(R, C)`` float32 and ``attention_mask`` ``(R,)``, added on access.

Metadata stays out of the model's inputs: `SelfDetrDataCollator` keeps only tensors the
model takes, and the post-processor gets the metadata of the same rows, in the same order,
from `window_metadata(dataset)`.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import datasets
import numpy as np

from ..feature_files import FeatureFolder, check_feature_shape, check_finite
from ..windows import WINDOW_METADATA_KEYS, seconds_to_position, window_targets
from .annotations import VideoAnnotation, label_names
from .checks import (
    SPAN_TOLERANCE,
    check_feature_span,
    check_positive,
    raise_all,
    short_input_limit,
    short_videos_message,
    shown,
)

if TYPE_CHECKING:
    from ..processing_self_detr import SelfDetrProcessor

FeatureSource = FeatureFolder | Mapping[str, Any]
"""Feature files, or a mapping from video id to a ``(T, C)`` array-like (sliceable, with ``shape``)."""


def build_dataset(
    annotations: Mapping[str, VideoAnnotation],
    features: FeatureSource,
    processor: SelfDetrProcessor,
    *,
    training: bool = True,
    label_names: Sequence[str] | None = None,
    class_agnostic: bool = False,
    feature_dim: int | None = None,
    feature_fps: float | None = None,
    feature_stride: float | None = None,
    clip_frames: float = 0.0,
    missing_features: Literal["error", "skip"] = "error",
) -> datasets.Dataset:
    """Windows of every annotated video, with their ground truth, features read lazily.

    Args:
        annotations: ``{video_id: VideoAnnotation}``, e.g. from `load_annotations`.
        features: a `FeatureFolder`, or ``{video_id: (T, C) array-like}``.
        processor: the windowing settings, e.g. ``SelfDetrProcessor.thumos14()``.
        training: training windows (training stride, windows without ground truth
            dropped) or test windows (test stride, every window kept).
        label_names: class names in id order (e.g. the model's ``id2label`` values);
            default the sorted names found in ``annotations``.
        class_agnostic: map every label to class 0 (``label_names`` default ``["action"]``).
        feature_dim: expected channels; default those of the first video.
        feature_fps: feature steps per second, the same for every video.
        feature_stride / clip_frames: alternatively, video frames per feature step and per
            clip: ``feature_fps = fps / feature_stride`` and ``time_offset = 0.5 * clip_frames
            / fps`` with each video's ``fps`` (ActionFormer's mapping). With neither, the
            features span the video: ``feature_fps = T / duration``.
        missing_features: ``error`` (default) or ``skip`` videos without features, with one
            warning that counts them.

    Every feature file is read once here and checked (shape, channels, finite values,
    the span against the annotated duration), so a bad file surfaces before any training
    step; every problem found is reported together. Features that span more than 5% more
    or less than a video's annotated duration get a warning, more than a factor 2 an error
    naming the feature rate that would fit; videos much shorter than a window get a warning.

    Raises:
        FeatureError: naming every video that cannot be used and why: a missing feature file
            (``missing_features="error"``), unreadable features, wrong channel count,
            zero-length features, NaN/Inf (at a step of the whole video), an unknown label,
            no timing, or features whose span does not fit the duration.
        ValueError: a non-positive ``feature_fps`` / ``feature_stride``.
    """
    if feature_fps is not None and feature_stride is not None:
        raise ValueError("give feature_fps or feature_stride (with clip_frames), not both")
    check_positive(feature_fps=feature_fps, feature_stride=feature_stride)
    if clip_frames < 0:
        raise ValueError(f"clip_frames must be >= 0; got {clip_frames}")
    if missing_features not in ("error", "skip"):
        raise ValueError(f"missing_features must be 'error' or 'skip'; got {missing_features!r}")
    if label_names is None:
        label_names = ["action"] if class_agnostic else _annotation_label_names(annotations)
    label_ids = {name: index for index, name in enumerate(label_names)}

    rows: dict[str, list] = {key: [] for key in (*WINDOW_METADATA_KEYS, "class_labels", "segments")}
    skipped, problems, off_span, short = [], [], [], []
    channels = feature_dim  # unless given, the first usable video fixes the channel count
    for video_id, video in annotations.items():
        try:
            array, source = open_features(features, video_id)
            num_steps, channels = check_feature_shape(array, video_id, source, channels)
            check_finite(np.asarray(array), video_id, source)  # every value, once, before any step
            rate, time_offset = _video_timing(video, video_id, num_steps, feature_fps, feature_stride, clip_frames)
            timed = feature_fps is not None or feature_stride is not None  # else the span is the duration
            if (
                timed
                and video.duration
                and check_feature_span(video_id, source, num_steps, rate, time_offset, video.duration)
            ):
                off_span.append(video_id)
            labels = _label_ids(video, video_id, label_ids, class_agnostic)
        except FileNotFoundError as error:
            if missing_features == "error":
                problems.append(error)
            else:
                skipped.append(video_id)
            continue
        except ValueError as error:
            problems.append(error)
            continue
        if num_steps < short_input_limit(processor):
            short.append(video_id)
        positions = seconds_to_position(video.segments, rate, time_offset)
        duration = video.duration if video.duration is not None else time_offset + num_steps / rate
        for offset, length in processor.windows(num_steps, training=training):
            segments, classes = window_targets(positions, labels, offset, length, processor.min_segment_coverage)
            if training and len(classes) == 0:
                continue
            values = (video_id, int(offset), int(length), rate, time_offset, float(duration), classes, segments)
            for key, value in zip(rows, values):
                rows[key].append(value)
    if problems:
        raise_all(problems, len(annotations))
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} of {len(annotations)} videos without features: {shown(skipped)}", stacklevel=2
        )
    if off_span:
        warnings.warn(
            f"{len(off_span)} of {len(annotations)} videos: features span more than {SPAN_TOLERANCE:.0%} more or "
            f"less than the annotated duration (check the feature timing): {shown(off_span)}",
            stacklevel=2,
        )
    if short:
        warnings.warn(short_videos_message(short, len(annotations), processor), stacklevel=2)

    schema = datasets.Features(
        video_id=datasets.Value("string"),
        window_offset=datasets.Value("int64"),
        window_length=datasets.Value("int64"),
        feature_fps=datasets.Value("float64"),
        time_offset=datasets.Value("float64"),
        duration=datasets.Value("float64"),
        class_labels=datasets.List(datasets.ClassLabel(names=list(label_names))),
        segments=datasets.List(datasets.List(datasets.Value("float32"), length=2)),
    )
    rows["segments"] = [segments.tolist() for segments in rows["segments"]]
    rows["class_labels"] = [classes.tolist() for classes in rows["class_labels"]]
    dataset = datasets.Dataset.from_dict(rows, features=schema)
    return dataset.with_transform(
        WindowFeatureLoader(features, processor), columns=list(WindowFeatureLoader.columns), output_all_columns=True
    )


def window_metadata(dataset: datasets.Dataset) -> list[dict[str, Any]]:
    """The `WINDOW_METADATA_KEYS` of every row, in the dataset's order, without reading features."""
    return dataset.with_format(None).select_columns(list(WINDOW_METADATA_KEYS)).to_list()


def open_features(features: FeatureSource, video_id: str) -> tuple[Any, str]:
    """``((T, C) array-like, description for messages)`` of ``video_id``.

    Raises:
        FileNotFoundError: naming the video (and the files tried) when it has no features.
    """
    if isinstance(features, FeatureFolder):
        return features.load(video_id), features.describe(video_id)
    if video_id not in features:
        raise FileNotFoundError(f"video {video_id!r}: no features in the given mapping")
    return features[video_id], "in-memory features"


class WindowFeatureLoader:
    """The dataset transform: reads the features of each requested row's window.

    Keeps the most recently opened videos (memory-mapped ``.npy`` files cost nothing to
    keep). It is read-only, so copies of a dataset (``shuffle``, ``select``, ``with_format``
    deep-copy their transform) share one loader instead of copying in-memory features.
    """

    columns = ("video_id", "window_offset", "window_length")

    def __init__(self, features: FeatureSource, processor: SelfDetrProcessor, cache_size: int = 8):
        self.features = features
        self.processor = processor
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Any] = OrderedDict()

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        inputs, masks = [], []
        for video_id, offset, length in zip(*(batch[key] for key in self.columns)):
            array = self._open(video_id)
            window, mask = self.processor.window_inputs(array, offset, length)
            inputs.append(window)
            masks.append(mask)
        return {**batch, "input_features": inputs, "attention_mask": masks}

    def _open(self, video_id: str) -> Any:
        if video_id in self._cache:
            self._cache.move_to_end(video_id)
        else:
            self._cache[video_id] = open_features(self.features, video_id)[0]
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return self._cache[video_id]

    def __deepcopy__(self, memo: dict) -> WindowFeatureLoader:
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": OrderedDict()}


def _annotation_label_names(annotations: Mapping[str, VideoAnnotation]) -> list[str]:
    names = label_names(annotations)
    if not names:
        raise ValueError("the annotations name no class; pass label_names=")
    return names


def _video_timing(
    video: VideoAnnotation,
    video_id: str,
    num_steps: int,
    feature_fps: float | None,
    feature_stride: float | None,
    clip_frames: float,
) -> tuple[float, float]:
    """``(feature steps per second, seconds of feature position 0)`` of one video."""
    if feature_fps is not None:
        return float(feature_fps), 0.0
    if feature_stride is not None:
        if not video.fps:
            raise ValueError(f"video {video_id!r}: field fps is missing; feature_stride needs it (or give feature_fps)")
        if video.fps < 0:
            raise ValueError(f"video {video_id!r}: field fps is {video.fps}; it must be positive")
        return video.fps / feature_stride, 0.5 * clip_frames / video.fps
    span = video.feature_duration or video.duration
    if not span:
        raise ValueError(
            f"video {video_id!r}: field duration is missing; give feature_fps or feature_stride to time the features"
        )
    return num_steps / span, 0.0


def _label_ids(video: VideoAnnotation, video_id: str, label_ids: Mapping[str, int], class_agnostic: bool) -> np.ndarray:
    if class_agnostic:
        return np.zeros(len(video.labels), dtype=np.int64)
    unknown = sorted(set(video.labels) - set(label_ids))
    if unknown:
        raise ValueError(
            f"video {video_id!r}: field label {unknown[0]!r} is not a known class; known: {sorted(label_ids)}"
        )
    return np.array([label_ids[label] for label in video.labels], dtype=np.int64)


__all__ = [
    "FeatureSource",
    "WindowFeatureLoader",
    "build_dataset",
    "open_features",
    "window_metadata",
]
