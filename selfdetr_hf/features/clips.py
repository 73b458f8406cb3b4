"""Clip sampling: which frames of a video make each feature step.

Feature step ``t`` comes from the clip of ``clip_len`` frames starting at frame
``t * stride``; only whole clips are taken, so a video of ``N >= clip_len`` frames gives
``(N - clip_len) // stride + 1`` steps. The backbone sees ``num_frames`` of the clip's
frames, spread evenly over it. Step ``t`` is timed at the clip's centre,
``(t * stride + clip_len / 2) / fps`` seconds: ``feature_fps = fps / stride`` and
``time_offset = 0.5 * clip_len / fps``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

FrameT = TypeVar("FrameT")


@dataclass(frozen=True)
class Clip(Generic[FrameT]):
    """One feature step's clip.

    Attributes:
        index: the feature step.
        start: the clip's first frame.
        frames: ``(frame index, frame)`` of the frames the backbone sees, in order.
    """

    index: int
    start: int
    frames: list[tuple[int, FrameT]]


def sampled_offsets(clip_len: int, num_frames: int) -> list[int]:
    """Offsets in a clip of the ``num_frames`` frames the backbone sees: evenly spread over
    ``clip_len`` frames (all of them when equal; some repeated when the clip is shorter)."""
    return np.linspace(0, clip_len - 1, num_frames).round().astype(int).tolist()


def num_clips(num_frames: int, clip_len: int, stride: int) -> int:
    """Feature steps of a video of ``num_frames`` frames."""
    return 0 if num_frames < clip_len else (num_frames - clip_len) // stride + 1


def iter_clips(frames: Iterable[FrameT], clip_len: int, stride: int, offsets: list[int]) -> Iterator[Clip[FrameT]]:
    """Clips of a frame stream, each yielded as soon as its last frame arrives.

    Holds at most ``clip_len`` frames, however long the stream.
    """
    window: deque[FrameT] = deque(maxlen=clip_len)
    for index, frame in enumerate(frames):
        window.append(frame)
        start = index - clip_len + 1
        if start >= 0 and start % stride == 0:
            yield Clip(start // stride, start, [(start + offset, window[offset]) for offset in offsets])


__all__ = ["Clip", "iter_clips", "num_clips", "sampled_offsets"]
