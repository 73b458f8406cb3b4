"""Video files read with PyAV, one decoded frame at a time (a whole video is never held).

PyAV (``av``) comes with the ``video`` extra: ``pip install "selfdetr_hf[video]"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


class VideoError(ValueError):
    """A video that cannot be used (unreadable, truncated, no video stream, too few frames);
    the message names the file."""


def _import_av() -> ModuleType:
    try:
        import av
    except ImportError as error:
        raise ImportError('reading videos needs PyAV: pip install "selfdetr_hf[video]" (or pip install av)') from error
    return av


def find_videos(paths: str | Path | Sequence[str | Path]) -> dict[str, Path]:
    """``{video_id: file}`` for video files and folders of them (not recursive), sorted by id.

    The video id is the file name without its extension; it names the feature files.

    Raises:
        FileNotFoundError: a path does not exist, or nothing found is a video.
        ValueError: two videos share an id (e.g. ``a/x.mp4`` and ``b/x.avi``).
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such video file or folder")
    if not files:
        raise FileNotFoundError(
            f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {', '.join(str(path) for path in paths)}"
        )
    videos: dict[str, Path] = {}
    for file in files:
        if file.stem in videos and videos[file.stem] != file:
            raise ValueError(f"two videos with the id {file.stem!r}: {videos[file.stem]} and {file}; rename one")
        videos[file.stem] = file
    return dict(sorted(videos.items()))


class VideoReader:
    """The first video stream of a file, decoded frame by frame.

    Attributes:
        path: the file.
        fps: frames per second (the stream's average rate).
        expected_frames: the length the file declares, in frames (its frame count, else its
            stream's duration, else, with a single stream, the container's), None when unknown.
        decoded_frames: frames yielded so far by `frames`.

    Close it with `close` (or ``contextlib.closing``).

    Raises:
        VideoError: the file cannot be opened, has no video stream or no frame rate.
    """

    def __init__(self, path: str | Path):
        av = _import_av()
        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as error:
            raise VideoError(f"{self.path}: unreadable video ({error})") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self.path}: no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        if not rate:
            self._container.close()
            raise VideoError(f"{self.path}: the video stream has no frame rate")
        self.fps = float(rate)
        self.expected_frames = self._declared_frames()
        self.decoded_frames = 0

    def _declared_frames(self) -> int | None:
        if self._stream.frames:
            return self._stream.frames
        if self._stream.duration and self._stream.time_base:
            return round(float(self._stream.duration * self._stream.time_base) * self.fps)
        if self._container.duration and len(self._container.streams) == 1:
            return round(self._container.duration / 1_000_000 * self.fps)
        return None

    def frames(self) -> Iterator[av.VideoFrame]:
        """Every frame in display order, decoded lazily (convert with `to_rgb`).

        Raises:
            VideoError: decoding fails part way, or ends short of the declared length by more
                than 1% of it (at least 3 frames, at most one second): a truncated or corrupt file.
        """
        av = _import_av()
        try:
            for frame in self._container.decode(self._stream):
                self.decoded_frames += 1
                yield frame
        except (av.FFmpegError, EOFError) as error:
            raise VideoError(
                f"{self.path}: truncated or corrupt video, decoding failed after {self.decoded_frames} frames ({error})"
            ) from None
        expected = self.expected_frames
        if expected is not None and expected - self.decoded_frames > min(self.fps, max(3, 0.01 * expected)):
            raise VideoError(
                f"{self.path}: truncated video, {self.decoded_frames} frames decoded of the {expected} it declares"
            )

    def close(self) -> None:
        self._container.close()


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of a decoded frame."""
    return frame.to_ndarray(format="rgb24")


__all__ = ["VIDEO_EXTENSIONS", "VideoError", "VideoReader", "find_videos", "to_rgb"]
