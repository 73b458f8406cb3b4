"""Checks on inputs before any compute: positive rates, the span of a video's features
against its annotated duration, and many problems reported at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..feature_files import FeatureError

if TYPE_CHECKING:
    from ..processing_self_detr import SelfDetrProcessor

SPAN_TOLERANCE = 0.05
"""Relative difference between the features' span and the annotated duration beyond which a warning is given."""

SPAN_LIMIT = 2.0
"""Ratio (either way) between the features' span and the annotated duration beyond which the timing is refused."""

SHORT_INPUT_FRACTION = 4
"""A video with fewer than ``1 / SHORT_INPUT_FRACTION`` of a window's steps gets a warning."""


def check_positive(**values: float | None) -> None:
    """Raise naming the first given value that is not a finite number above 0 (None is skipped)."""
    for name, value in values.items():
        if value is not None and not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a positive number; got {value}")


def check_feature_span(
    video_id: str, source: str, num_steps: int, feature_fps: float, time_offset: float, duration: float
) -> bool:
    """Compare the seconds a video's features cover with its annotated duration.

    The features' steps reach ``time_offset + num_steps / feature_fps`` seconds; clip
    features (``time_offset`` = half a clip) also see up to another ``2 * time_offset``
    seconds of video beyond it, which counts as covered.

    Returns:
        True when they differ by more than `SPAN_TOLERANCE` (worth a warning), else False.

    Raises:
        FeatureError: they differ by more than a factor `SPAN_LIMIT`; the message names the
            video, the file and the feature rate that would fit the duration.
    """
    span = time_offset + num_steps / feature_fps
    covered = min(span + 2 * time_offset, duration) if span < duration else span
    ratio = covered / duration
    if ratio > SPAN_LIMIT or ratio < 1 / SPAN_LIMIT:
        fitting = num_steps / max(duration - time_offset, 1e-9)
        raise FeatureError(
            f"video {video_id!r} ({source}): {num_steps} feature steps at {feature_fps:g} steps/s span {span:.1f} s, "
            f"but the annotated duration is {duration:.1f} s; a feature fps of {fitting:.4g} would fit"
        )
    return abs(ratio - 1) > SPAN_TOLERANCE


def short_input_limit(processor: SelfDetrProcessor) -> int:
    """Feature steps below which a video is much shorter than the processor's window
    (``window_size`` or ``resize_length``) and mostly padding or stretched."""
    return (processor.window_size or processor.resize_length) // SHORT_INPUT_FRACTION


def short_videos_message(video_ids: Sequence[str], total: int, processor: SelfDetrProcessor) -> str:
    """The warning about ``video_ids``, shorter than `short_input_limit`, among ``total`` videos."""
    return (
        f"{len(video_ids)} of {total} videos have fewer than {short_input_limit(processor)} feature steps, "
        f"a window holds {processor.window_size or processor.resize_length}: {shown(video_ids)}"
    )


def shown(names: Sequence[str], count: int = 5) -> str:
    """The first ``count`` names and how many more, for one-line messages."""
    more = f" and {len(names) - count} more" if len(names) > count else ""
    return ", ".join(names[:count]) + more


def raise_all(problems: Sequence[Exception], total: int) -> None:
    """Raise every problem at once: the error itself when there is one, else one
    `FeatureError` with a count followed by one line per problem."""
    if len(problems) == 1:
        raise problems[0]
    lines = "\n".join(f"  {problem}" for problem in problems)
    raise FeatureError(f"{len(problems)} of {total} videos cannot be used:\n{lines}")


__all__ = [
    "SPAN_LIMIT",
    "SPAN_TOLERANCE",
    "check_feature_span",
    "check_positive",
    "raise_all",
    "short_input_limit",
    "short_videos_message",
    "shown",
]
