"""The JSON written beside each video's feature file: how the features were made and how
their steps map to seconds.

``<out>/<video_id>.npy`` holds the ``(T, C)`` float32 features and ``<out>/<video_id>.json``
this record; the JSON is written last, so its presence (with a feature file of the shape
it states) marks a complete output.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeatureMetadata:
    """How one video's features were extracted.

    Attributes:
        video: the source video file.
        backbone: the backbone's name or path.
        pooling: ``mean_tokens`` or ``video_embedding`` (see `VideoBackbone`).
        clip_len: video frames per clip (per feature step).
        stride: video frames between consecutive clips.
        backbone_frames: frames of each clip the backbone sees (spread evenly over it).
        dtype: the compute precision (``float32``, ``float16``, ``bfloat16``).
        fps: the video's frame rate.
        num_frames: frames decoded from the video.
        num_steps: feature steps ``T``.
        feature_dim: channels ``C``.
    """

    video: str
    backbone: str
    pooling: str
    clip_len: int
    stride: int
    backbone_frames: int
    dtype: str
    fps: float
    num_frames: int
    num_steps: int
    feature_dim: int

    @property
    def feature_fps(self) -> float:
        """Feature steps per second, ``fps / stride``."""
        return self.fps / self.stride

    @property
    def time_offset(self) -> float:
        """Seconds of feature step 0 (the centre of the first clip), ``0.5 * clip_len / fps``."""
        return 0.5 * self.clip_len / self.fps

    @property
    def duration(self) -> float:
        """The video's length in seconds, ``num_frames / fps``."""
        return self.num_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        """Every field plus ``feature_fps``, ``time_offset`` and ``duration``."""
        derived = {"feature_fps": self.feature_fps, "time_offset": self.time_offset, "duration": self.duration}
        return {**dataclasses.asdict(self), **derived}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureMetadata:
        return cls(**{field.name: values[field.name] for field in dataclasses.fields(cls)})


def metadata_path(out_dir: str | Path, video_id: str) -> Path:
    return Path(out_dir) / f"{video_id}.json"


def features_path(out_dir: str | Path, video_id: str) -> Path:
    return Path(out_dir) / f"{video_id}.npy"


def read_metadata(path: str | Path) -> FeatureMetadata:
    """Read one sidecar JSON.

    Raises:
        ValueError: the file is not a complete metadata record; the message names it.
    """
    try:
        return FeatureMetadata.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a feature metadata file ({error!r})") from None


def load_feature_metadata(out_dir: str | Path) -> dict[str, FeatureMetadata]:
    """``{video_id: FeatureMetadata}`` of every complete output in a feature folder.

    Raises:
        FileNotFoundError: the folder holds no complete output.
    """
    out_dir = Path(out_dir)
    found = {}
    for path in sorted(out_dir.glob("*.json")):
        metadata = complete_metadata(out_dir, path.stem)
        if metadata is not None:
            found[path.stem] = metadata
    if not found:
        raise FileNotFoundError(f"{out_dir}: no extracted features (<video_id>.npy with <video_id>.json)")
    return found


def complete_metadata(out_dir: str | Path, video_id: str) -> FeatureMetadata | None:
    """The metadata of a complete output of ``video_id``, None when it is missing, unreadable
    or does not match its feature file's shape."""
    try:
        return checked_metadata(out_dir, video_id)
    except (OSError, ValueError):
        return None


def checked_metadata(out_dir: str | Path, video_id: str) -> FeatureMetadata:
    """The metadata of ``video_id``'s features, checked against its feature file.

    Raises:
        FileNotFoundError: no ``<video_id>.json`` beside ``<video_id>.npy`` (or no ``.npy``).
        ValueError: an unreadable JSON or feature file, or a JSON whose shape, dtype or
            timing does not match; the message names the files.
    """
    json_path, npy_path = metadata_path(out_dir, video_id), features_path(out_dir, video_id)
    if not json_path.is_file():
        raise FileNotFoundError(
            f"video {video_id!r}: no extraction metadata {json_path} beside its features to time them; "
            "give their feature fps (--feature-fps)"
        )
    metadata = read_metadata(json_path)
    try:
        features = np.load(npy_path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"video {video_id!r}: {json_path} has no feature file {npy_path}") from None
    except ValueError as error:
        raise ValueError(f"video {video_id!r}: {npy_path}: unreadable or truncated feature file ({error})") from None
    if features.shape != (metadata.num_steps, metadata.feature_dim) or features.dtype != np.float32:
        raise ValueError(
            f"video {video_id!r}: {npy_path} holds {features.dtype} {features.shape}, its metadata {json_path} "
            f"states float32 {(metadata.num_steps, metadata.feature_dim)}"
        )
    if not (metadata.fps > 0 and metadata.stride > 0 and metadata.clip_len > 0):
        raise ValueError(f"{json_path}: fps, stride and clip_len must be positive")
    return metadata


__all__ = ["FeatureMetadata", "checked_metadata", "complete_metadata", "load_feature_metadata", "read_metadata"]
