"""From videos (or extracted features) to detections in seconds, each video timed by the
metadata written with its features."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from ..data import FeatureFolder
from ..inference import VideoTiming, feature_files, iter_detections
from ..processing_self_detr import SelfDetrProcessor
from .backbone import DEFAULT_BACKBONE, VideoBackbone
from .extract import extract_features
from .metadata import checked_metadata


def extraction_timing(folder: str | Path) -> Callable[[str], VideoTiming]:
    """Each video's timing from the metadata beside its features in ``folder``
    (`checked_metadata`: a missing or mismatching JSON is an error naming the files)."""

    def timing(video_id: str) -> VideoTiming:
        metadata = checked_metadata(folder, video_id)
        return VideoTiming(metadata.feature_fps, metadata.time_offset, metadata.duration)

    return timing


def detect_extracted(
    model: torch.nn.Module,
    processor: SelfDetrProcessor,
    features: str | Path,
    *,
    video_ids: Sequence[str] | None = None,
    batch_size: int = 16,
) -> dict[str, dict[str, Any]]:
    """Detections for features written by `extract_features`.

    Each video's ``feature_fps``, ``time_offset`` and ``duration`` come from its metadata.

    Args:
        model: a `SelfDetrForActionDetection` whose ``feature_dim`` is the backbone's.
        processor: its windowing and post-processing settings.
        features: a feature folder, or one ``<video_id>.npy`` with its JSON beside it.
        video_ids: which videos of the folder (default: every ``.npy`` file).
        batch_size: windows per forward pass.

    Returns:
        ``{video_id: {"segments", "scores", "labels", "label_names"}}`` as `detect` returns.

    Raises:
        FileNotFoundError: a video has no metadata beside its features (or no features).
        ValueError: metadata that does not match its feature file, or unusable features.
    """
    path = Path(features)
    folder, found = feature_files(path, FeatureFolder(path if path.is_dir() else path.parent, extension=".npy"))
    timing = extraction_timing(folder.folders[0])
    return dict(iter_detections(model, processor, folder, video_ids or found, timing, batch_size=batch_size))


def detect_videos(
    model: torch.nn.Module,
    processor: SelfDetrProcessor,
    videos: str | Path | Sequence[str | Path],
    *,
    feature_dir: str | Path | None = None,
    backbone: str | Path | VideoBackbone = DEFAULT_BACKBONE,
    clip_len: int = 16,
    stride: int = 4,
    batch_size: int = 16,
    dtype: str = "float32",
    on_error: Literal["skip", "error"] = "skip",
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Extract features of ``videos`` with ``backbone``, then detect actions in them.

    Args:
        model: a `SelfDetrForActionDetection` trained on features of this backbone (same
            ``clip_len`` and ``stride``); the backbone runs on the model's device.
        processor: its windowing and post-processing settings.
        videos: video files and/or folders.
        feature_dir: where the features are kept (reused by later calls); default a
            temporary folder removed afterwards.
        backbone / clip_len / stride / dtype / on_error / progress: as `extract_features`.
        batch_size: clips, then windows, per forward pass.

    Returns:
        ``{video_id: {"segments", "scores", "labels", "label_names"}}`` of every readable video.

    Raises:
        ValueError: the backbone's feature size is not the model's, or no video is readable.
    """
    if not isinstance(backbone, VideoBackbone):
        device = next(model.parameters()).device
        backbone = VideoBackbone.from_pretrained(backbone, device=device, dtype=dtype)
    if backbone.feature_dim != model.config.feature_dim:
        raise ValueError(
            f"the backbone {backbone.name} gives {backbone.feature_dim}-d features; "
            f"the model expects {model.config.feature_dim}-d"
        )
    with contextlib.ExitStack() as stack:
        if feature_dir is None:
            feature_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="selfdetr-features-"))
        summary = extract_features(
            videos, feature_dir, backbone=backbone, clip_len=clip_len, stride=stride, batch_size=batch_size,
            on_error=on_error, progress=progress,
        )  # fmt: skip
        if not summary.completed:
            raise ValueError(f"none of the {len(summary.failed)} videos could be read")
        return detect_extracted(model, processor, feature_dir, video_ids=summary.completed, batch_size=batch_size)


__all__ = ["detect_extracted", "detect_videos", "extraction_timing"]
