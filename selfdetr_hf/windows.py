"""Windows over a video's feature sequence, and the ground truth each window sees.

Time is measured in three units. Seconds ``t``; feature position ``p`` (continuous, in
feature steps), with ``p = (t - time_offset) * feature_fps`` (ActionFormer's
``(t * fps - 0.5 * clip_frames) / stride`` when ``feature_fps = fps / stride`` and
``time_offset = 0.5 * clip_frames / fps``); and the window coordinate ``x = (p - offset) / length``
in ``[0, 1]`` over the ``length`` valid steps of a window starting at step ``offset``, the
frame of the model's normalised ``(center, width)`` segments.

A sliding window covers ``length <= size`` steps and is zero-padded to ``size`` with an
attention mask; a resized window covers the whole video and is linearly interpolated to a
fixed length. Both are ``(offset, length)`` pairs; only the feature extraction differs.

A top-level module, as every module the processor imports: a saved model's code is one flat
folder of modules (see `SelfDetrPreTrainedModel.save_pretrained`).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Times = TypeVar("Times", float, np.ndarray, torch.Tensor)

WINDOW_METADATA_KEYS = ("video_id", "window_offset", "window_length", "feature_fps", "time_offset", "duration")
"""What maps a window's outputs back to its video: the video, the window's first step and
number of valid steps, the feature rate and time offset (`position_to_seconds`), and the
video's duration in seconds (detections are clipped to it)."""


def seconds_to_position(seconds: Times, feature_fps: Times, time_offset: Times | float = 0.0) -> Times:
    """Seconds -> continuous feature position (NumPy arrays, tensors or floats, broadcast)."""
    return (seconds - time_offset) * feature_fps


def position_to_seconds(position: Times, feature_fps: Times, time_offset: Times | float = 0.0) -> Times:
    """Continuous feature position -> seconds; the inverse of `seconds_to_position`."""
    return position / feature_fps + time_offset


def sliding_windows(num_steps: int, size: int, stride: int) -> np.ndarray:
    """Windows of ``size`` steps every ``stride`` steps, the last one reaching the end.

    Args:
        num_steps: length T of the feature sequence.
        size: window length W.
        stride: step between window starts (W * (1 - overlap)).

    Returns:
        ``(n, 2)`` int64 ``(offset, length)``: offsets ``0, stride, ...`` until a window
        reaches step T; ``length = min(W, T - offset)`` (the last may be shorter and is padded).
    """
    if num_steps < 1 or size < 1 or stride < 1:
        raise ValueError(f"num_steps, size and stride must be positive; got {num_steps}, {size}, {stride}")
    last_offset = max(num_steps - size, 0)
    offsets = np.arange(-(-last_offset // stride) + 1, dtype=np.int64) * stride
    return np.stack((offsets, np.minimum(size, num_steps - offsets)), axis=1)


def window_targets(
    segments: np.ndarray, labels: np.ndarray, offset: float, length: float, min_coverage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of one window: segments mostly inside it, clipped and normalised.

    Args:
        segments: ``(n, 2)`` (start, end) feature positions, end > start.
        labels: ``(n,)`` class ids.
        offset / length: the window covers positions ``[offset, offset + length]``.
        min_coverage: keep a segment when at least this fraction of it lies inside.

    Returns:
        ``(m, 2)`` float32 (center, width) in window coordinates and ``(m,)`` int64 labels.
    """
    start = np.maximum(segments[:, 0], offset)
    end = np.minimum(segments[:, 1], offset + length)
    coverage = np.clip(end - start, 0, None) / (segments[:, 1] - segments[:, 0])
    keep = (coverage >= min_coverage) & (end > start)
    start, end = (start[keep] - offset) / length, (end[keep] - offset) / length
    centers_widths = np.stack(((start + end) / 2, end - start), axis=1).astype(np.float32)
    return centers_widths.reshape(-1, 2), np.asarray(labels)[keep].astype(np.int64)


def pad_window(window: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(L, C)`` -> zero-padded ``(size, C)`` float32 and its ``(size,)`` int64 mask (1 = valid)."""
    padded = np.zeros((size, window.shape[1]), dtype=np.float32)
    padded[: len(window)] = window
    mask = np.zeros(size, dtype=np.int64)
    mask[: len(window)] = 1
    return padded, mask


def resize_features(features: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation along time, ``(T, C)`` -> ``(length, C)`` float32.

    Sample centres are aligned (``align_corners=False``): output step ``i`` reads input
    position ``(i + 0.5) * T / length - 0.5``, clamped to ``[0, T - 1]``; this equals
    ``torch.nn.functional.interpolate(mode="linear", align_corners=False)``.
    """
    num_steps = len(features)
    position = np.clip((np.arange(length) + 0.5) * (num_steps / length) - 0.5, 0, num_steps - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, num_steps - 1)
    weight = (position - low)[:, None]
    return (features[low] * (1 - weight) + features[high] * weight).astype(np.float32)


__all__ = [
    "WINDOW_METADATA_KEYS",
    "pad_window",
    "position_to_seconds",
    "resize_features",
    "seconds_to_position",
    "sliding_windows",
    "window_targets",
]
