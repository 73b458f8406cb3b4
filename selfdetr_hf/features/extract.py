"""Feature extraction: videos in, one ``(T, C)`` ``.npy`` and one JSON per video out.

Each video is decoded as a stream; clips of ``clip_len`` frames every ``stride`` frames
(see `clips`) go through the backbone in batches and are pooled to one vector each.
Outputs are written to temporary files and renamed, the metadata last, so an interrupted
run leaves no output that looks complete, and a rerun skips the videos already done.
With several processes (``accelerate launch``) the videos are split between them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from .backbone import DEFAULT_BACKBONE, VideoBackbone
from .clips import iter_clips, num_clips, sampled_offsets
from .metadata import FeatureMetadata, complete_metadata, features_path, metadata_path
from .video import VideoError, VideoReader, find_videos, to_rgb

T = TypeVar("T")


@dataclass
class ExtractionSummary:
    """What one `extract_features` call did (over all processes).

    Attributes:
        extracted: ids of the videos whose features were written.
        skipped: ids of the videos whose complete outputs already existed.
        failed: ``{video_id: reason}`` of the videos that could not be read.
    """

    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def completed(self) -> list[str]:
        """Ids of every video that now has features, sorted."""
        return sorted(self.extracted + self.skipped)


def extract_features(
    videos: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    backbone: str | Path | VideoBackbone = DEFAULT_BACKBONE,
    clip_len: int = 16,
    stride: int = 4,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    on_error: Literal["skip", "error"] = "skip",
    progress: bool = True,
) -> ExtractionSummary:
    """Extract clip features of every video into ``out_dir``.

    Writes ``<out_dir>/<video_id>.npy`` ``(T, C)`` float32, ``T = (frames - clip_len) // stride + 1``,
    and ``<out_dir>/<video_id>.json`` (`FeatureMetadata`: ``fps``, ``stride``, ``clip_len``,
    ``feature_dim``, frame counts, ``feature_fps = fps / stride``, ``time_offset = 0.5 *
    clip_len / fps``). Videos whose complete outputs exist (same backbone, ``clip_len`` and
    ``stride``) are skipped.

    Args:
        videos: video files and/or folders of videos; the file name without extension is
            the video id.
        out_dir: the feature folder (created).
        backbone: a checkpoint name or folder (loaded with `VideoBackbone.from_pretrained`),
            or a loaded `VideoBackbone`.
        clip_len: video frames per clip.
        stride: video frames between clip starts.
        batch_size: clips per forward pass.
        device: where a backbone loaded by name runs; default this process's device as
            Accelerate sees it (with several processes, each its own GPU).
        dtype: ``float32``, or ``float16`` / ``bfloat16`` under autocast (backbone loaded by name).
        on_error: ``skip`` an unreadable, truncated, zero-frame or too short video (reported
            by name, counted at the end) or raise (``error``).
        progress: show progress bars over videos and clips (on the main process).

    Raises:
        VideoError: a bad video with ``on_error="error"``; the message names the file.
        FileNotFoundError: a video path does not exist or no video is found.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object, parse_flag_from_env

    if min(clip_len, stride, batch_size) < 1:
        raise ValueError(f"clip_len, stride and batch_size must be >= 1; got {clip_len}, {stride}, {batch_size}")
    if on_error not in ("skip", "error"):
        raise ValueError(f"on_error must be 'skip' or 'error'; got {on_error!r}")
    video_files = find_videos(videos)
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    if not isinstance(backbone, VideoBackbone):
        backbone = VideoBackbone.from_pretrained(backbone, device=device or state.device, dtype=dtype)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    show = progress and state.is_main_process

    summary = ExtractionSummary()
    with state.split_between_processes(list(video_files.items())) as shard:
        for video_id, path in tqdm(shard, desc="videos", unit="video", disable=not show):
            if _already_extracted(out_dir, video_id, backbone.name, clip_len, stride):
                summary.skipped.append(video_id)
                continue
            try:
                features, metadata = extract_video(path, backbone, clip_len, stride, batch_size, show)
            except VideoError as error:
                if on_error == "error":
                    raise
                summary.failed[video_id] = str(error)
                tqdm.write(f"skipped video {video_id}: {error}", file=sys.stderr)
                continue
            write_features(out_dir, video_id, features, metadata)
            summary.extracted.append(video_id)

    if state.num_processes > 1:
        summary = _merge(gather_object([summary]))
    if summary.failed and state.is_main_process:
        names = ", ".join(sorted(summary.failed))
        warnings.warn(
            f"skipped {len(summary.failed)} of {len(video_files)} videos that could not be read: {names}", stacklevel=2
        )
    return summary


def extract_video(
    path: str | Path, backbone: VideoBackbone, clip_len: int, stride: int, batch_size: int, progress: bool = False
) -> tuple[np.ndarray, FeatureMetadata]:
    """Features ``(T, C)`` float32 of one video and their metadata.

    Memory is bounded by one batch, whatever the video's length: the frames of ``batch_size``
    clips (about ``batch_size * stride + clip_len``), decoded and preprocessed.

    Raises:
        VideoError: the video is unreadable, truncated, or shorter than one clip.
    """
    offsets = sampled_offsets(clip_len, backbone.num_frames)
    with contextlib.closing(VideoReader(path)) as reader:
        expected_clips = num_clips(reader.expected_frames, clip_len, stride) if reader.expected_frames else None
        features: list[torch.Tensor] = []
        processed: dict[int, torch.Tensor] = {}  # frame index -> (3, h, w)
        clips = iter_clips(reader.frames(), clip_len, stride, offsets)
        with tqdm(total=expected_clips, desc=Path(path).stem, unit="clip", leave=False, disable=not progress) as bar:
            for batch in _batched(clips, batch_size):
                new_frames = {index: frame for clip in batch for index, frame in clip.frames if index not in processed}
                if new_frames:
                    pixels = backbone.pixel_values([to_rgb(frame) for frame in new_frames.values()])
                    processed.update(zip(new_frames, pixels))
                pixel_values = torch.stack(
                    [torch.stack([processed[index] for index, _ in clip.frames]) for clip in batch]
                )  # (B, num_frames, 3, h, w)
                features.append(backbone(pixel_values))  # (B, C)
                next_start = batch[-1].start + stride
                processed = {index: values for index, values in processed.items() if index >= next_start}
                bar.update(len(batch))
        if reader.decoded_frames == 0:
            raise VideoError(f"{path}: the video has no frame")
        if not features:
            raise VideoError(f"{path}: {reader.decoded_frames} frames, fewer than one clip of {clip_len}")
        metadata = FeatureMetadata(
            video=str(path),
            backbone=backbone.name,
            pooling=backbone.pooling,
            clip_len=clip_len,
            stride=stride,
            backbone_frames=backbone.num_frames,
            dtype=backbone.dtype,
            fps=reader.fps,
            num_frames=reader.decoded_frames,
            num_steps=sum(len(chunk) for chunk in features),
            feature_dim=backbone.feature_dim,
        )
    return torch.cat(features).numpy(), metadata


def write_features(out_dir: str | Path, video_id: str, features: np.ndarray, metadata: FeatureMetadata) -> None:
    """Write ``<video_id>.npy`` then ``<video_id>.json``, each atomically (temporary file + rename)."""
    metadata_path(out_dir, video_id).unlink(missing_ok=True)
    _write_atomically(features_path(out_dir, video_id), lambda handle: np.save(handle, features.astype(np.float32)))
    text = json.dumps(metadata.to_dict(), indent=2).encode("utf-8")
    _write_atomically(metadata_path(out_dir, video_id), lambda handle: handle.write(text))


def _already_extracted(out_dir: Path, video_id: str, backbone: str, clip_len: int, stride: int) -> bool:
    existing = complete_metadata(out_dir, video_id)
    if existing is None:
        return False
    return (existing.backbone, existing.clip_len, existing.stride) == (backbone, clip_len, stride)


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _merge(summaries: list[ExtractionSummary]) -> ExtractionSummary:
    merged = ExtractionSummary()
    for summary in summaries:
        merged.extracted.extend(summary.extracted)
        merged.skipped.extend(summary.skipped)
        merged.failed.update(summary.failed)
    merged.extracted.sort()
    merged.skipped.sort()
    return merged


__all__ = ["ExtractionSummary", "extract_features", "extract_video", "write_features"]
