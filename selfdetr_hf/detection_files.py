"""Detection files written video by video: an ActivityNet submission (``.json``) or a CSV
(``video,start,end,label,score``).

Each video's detections go to ``<output>.partial`` as soon as they exist, so a long run
holds one video's detections at a time and an interrupted run keeps what it found; the
file takes its final name when the run closes it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from .evaluation.submission import submission_entries

CSV_HEADER = ("video", "start", "end", "label", "score")


def check_writable(path: str | Path, *, overwrite: bool = False) -> Path:
    """Check, before any compute, that a file can be written at ``path``.

    Raises:
        ValueError: ``path`` is a folder, exists and ``overwrite`` is False, or its folder
            does not exist or is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: a folder; give the file to write")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists: replace it with --overwrite, or choose another file")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"{path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{path}: not writable")
    return path


def check_output_folder(path: str | Path, files: Iterable[str] = (), *, overwrite: bool = False) -> Path:
    """Check, before any compute, that ``path`` is or can be made a writable folder in which
    the ``files`` (names or glob patterns) a command writes may be written.

    Raises:
        ValueError: ``path`` is a file, holds some of ``files`` and ``overwrite`` is False
            (naming them), or the folder (or its first existing parent) is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: a file, not a folder")
    found = sorted({found.name for pattern in files for found in path.glob(pattern)}) if path.is_dir() else []
    if found and not overwrite:
        raise ValueError(
            f"{path} already holds {', '.join(found)}: replace them with --overwrite, or choose another folder"
        )
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot write there ({existing} is not a writable folder)")
    return path


class DetectionWriter:
    """Writes detections one video at a time, as JSON (default) or CSV (``.csv`` suffix).

    The output path is checked when the writer is made (before any compute; an existing
    file is replaced only with ``overwrite``); ``with
    writer.open():`` writes, and on leaving normally moves ``<output>.partial`` to
    ``output``; leaving on an error keeps the partial file (a complete file holding every
    video written so far) and leaves ``output`` untouched.
    """

    def __init__(self, output: str | Path, *, overwrite: bool = False, version: str = "VERSION 1.3"):
        self.output = check_writable(output, overwrite=overwrite)
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.is_csv = self.output.suffix.lower() == ".csv"
        self.version = version
        self.videos = 0
        self.detections = 0
        self._handle: IO[str] | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[DetectionWriter]:
        """Write into ``<output>.partial``; on leaving without error, move it to ``output``."""
        with self.partial.open("w", newline="" if self.is_csv else None, encoding="utf-8") as handle:
            self._handle = handle
            if self.is_csv:
                csv.writer(handle).writerow(CSV_HEADER)
            else:
                handle.write(f'{{"version": {json.dumps(self.version)}, "results": {{')
            try:
                yield self
            finally:
                if not self.is_csv:
                    handle.write('}, "external_data": {"used": false, "details": ""}}')
                self._handle = None
        os.replace(self.partial, self.output)

    def write(self, video_id: str, detections: Mapping[str, Any]) -> None:
        """Append one video's detections (``segments``, ``scores``, ``labels`` as class names)."""
        assert self._handle is not None, "write inside `with writer.open():`"
        entries = submission_entries({video_id: detections})[video_id]
        if self.is_csv:
            writer = csv.writer(self._handle)
            for entry in entries:
                writer.writerow([video_id, *entry["segment"], entry["label"], entry["score"]])
        else:
            separator = ", " if self.videos else ""
            self._handle.write(f"{separator}{json.dumps(video_id)}: {json.dumps(entries)}")
        self._handle.flush()
        self.videos += 1
        self.detections += len(entries)


__all__ = ["CSV_HEADER", "DetectionWriter", "check_output_folder", "check_writable"]
