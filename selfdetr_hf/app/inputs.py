"""What the demo detects on: uploaded feature files (timed by a feature rate or by their
extraction JSON), uploaded videos (features extracted by a backbone), or videos of the
built-in synthetic dataset. Gradio-free: every function takes paths and numbers."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data import FeatureFolder, VideoAnnotation, load_annotations, make_synthetic_videos
from ..data.dataset import FeatureSource
from ..feature_files import EXTENSIONS
from ..features.metadata import metadata_path
from ..inference import VideoTiming

DEFAULT_MAX_UPLOAD_MB = 512
METADATA_EXTENSION = ".json"


@dataclass
class DemoVideos:
    """Videos ready for detection.

    Attributes:
        features: a `FeatureFolder` or ``{video_id: (T, C) array-like}``.
        video_ids: which videos, in order.
        timing: one `VideoTiming` for every video, or a function of the video id giving it.
        ground_truth: ``{video_id: VideoAnnotation}`` of the videos whose ground truth is known.
        failures: ``{video_id: message}`` of uploaded videos that could not be read.
    """

    features: FeatureSource
    video_ids: list[str]
    timing: VideoTiming | Callable[[str], VideoTiming]
    ground_truth: dict[str, VideoAnnotation] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def stage_uploads(paths: Sequence[str | Path], folder: str | Path, allowed: Sequence[str], *, max_mb: float) -> Path:
    """Link uploaded files into ``folder`` (created) under their own names, so that a
    feature file and its extraction JSON sit side by side as `extract-features` writes them.

    Raises:
        ValueError: a file above ``max_mb`` MiB, of another type than ``allowed``
            (extensions), or two files of one name; the message names the file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for path in map(Path, paths):
        if path.suffix.lower() not in allowed:
            raise ValueError(f"{path.name}: not a file the demo reads here ({', '.join(allowed)})")
        size_mb = path.stat().st_size / 2**20
        if size_mb > max_mb:
            raise ValueError(f"{path.name}: {size_mb:.0f} MiB, above the upload limit of {max_mb:g} MiB")
        target = folder / path.name
        if target.exists():
            raise ValueError(f"two uploaded files are named {path.name}: upload one of them")
        os.symlink(path.resolve(), target)
    return folder


def uploaded_features(
    paths: Sequence[str | Path], folder: str | Path, *, feature_fps: float | None, max_mb: float = DEFAULT_MAX_UPLOAD_MB
) -> DemoVideos:
    """Feature files (``.npy``, ``.npz``, ``.pt``, read without unpickling) and, for
    features of ``selfdetr extract-features``, their ``<video_id>.json`` (which times them).

    Args:
        paths: the uploaded files; the file name without extension is the video id.
        folder: an empty folder of this request, where the files are linked.
        feature_fps: feature steps per second of every video; None: each video is timed by
            its extraction JSON.
        max_mb: the largest file accepted, in MiB.

    Raises:
        ValueError: no feature file, a file too large or of another type, two of one name,
            or a feature rate that is not positive.
    """
    if feature_fps is not None and not feature_fps > 0:
        raise ValueError(f"the feature fps must be a positive number, got {feature_fps:g}")
    staged = stage_uploads(paths, folder, (*EXTENSIONS, METADATA_EXTENSION), max_mb=max_mb)
    features = FeatureFolder(staged)
    if not any(Path(path).suffix.lower() in EXTENSIONS for path in paths):
        raise ValueError(f"upload at least one feature file ({', '.join(EXTENSIONS)})")
    video_ids = features.video_ids()
    if feature_fps is not None:
        return DemoVideos(features, video_ids, VideoTiming(feature_fps))

    def timing(video_id: str) -> VideoTiming:
        from ..features.pipeline import extraction_timing

        if not metadata_path(staged, video_id).is_file():
            raise ValueError(
                f"video {video_id!r}: give the feature fps, or upload {video_id}{METADATA_EXTENSION}, "
                "the extraction metadata written with its features"
            )
        return extraction_timing(staged)(video_id)

    return DemoVideos(features, video_ids, timing)


def uploaded_videos(
    paths: Sequence[str | Path], folder: str | Path, backbone, *, clip_len: int, stride: int, max_mb: float
) -> DemoVideos:
    """Features of uploaded video files, extracted into ``folder`` by ``backbone`` (a
    `VideoBackbone`) and timed by their metadata; unreadable videos are listed in
    ``failures``.

    Raises:
        ValueError: a file above ``max_mb`` MiB or not a video, or no readable video.
    """
    from ..features.extract import extract_features
    from ..features.pipeline import extraction_timing
    from ..features.video import VIDEO_EXTENSIONS

    staged = stage_uploads(paths, Path(folder) / "videos", VIDEO_EXTENSIONS, max_mb=max_mb)
    features = Path(folder) / "features"
    summary = extract_features(staged, features, backbone=backbone, clip_len=clip_len, stride=stride, progress=False)
    if not summary.completed:
        raise ValueError("no uploaded video could be read: " + "; ".join(summary.failed.values()))
    return DemoVideos(
        FeatureFolder(features, extension=".npy"),
        summary.completed,
        extraction_timing(features),
        failures=summary.failed,
    )


def synthetic_videos(feature_dim: int) -> Mapping[str, DemoVideos]:
    """``{video_id: DemoVideos}`` of each video of the built-in synthetic dataset
    (`make_synthetic_videos` with its defaults, the data of ``selfdetr demo``, at
    ``feature_dim`` channels), test videos first; its ground truth is known."""
    videos = make_synthetic_videos(feature_dim=feature_dim)
    order = sorted(videos.annotations, key=lambda video_id: (videos.annotations[video_id].subset != "test", video_id))
    return {
        video_id: DemoVideos(
            videos.features,
            [video_id],
            VideoTiming(videos.feature_fps, duration=videos.annotations[video_id].duration),
            ground_truth={video_id: videos.annotations[video_id]},
        )
        for video_id in order
    }


def with_annotations(videos: DemoVideos, path: str | Path) -> DemoVideos:
    """``videos`` with the ground truth of an annotation file (any form `load_annotations`
    reads) for those of its videos the file holds; segments kept as written."""
    annotations = load_annotations(path, invalid_segments="keep")
    known = {video_id: annotations[video_id] for video_id in videos.video_ids if video_id in annotations}
    return DemoVideos(
        videos.features, videos.video_ids, videos.timing, {**videos.ground_truth, **known}, videos.failures
    )


__all__ = [
    "DEFAULT_MAX_UPLOAD_MB",
    "DemoVideos",
    "stage_uploads",
    "synthetic_videos",
    "uploaded_features",
    "uploaded_videos",
    "with_annotations",
]
