"""Per-video feature files: ``.npy`` (memory-mapped), ``.npz`` and ``.pt``, one file per video
per feature folder; several folders (e.g. RGB and flow) are concatenated along channels."""

from __future__ import annotations

import pickle
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .windows import resize_features

EXTENSIONS = (".npy", ".npz", ".pt")
LAYOUTS = ("TC", "CT")
NPZ_KEY = "feats"
READ_ERRORS = (OSError, EOFError, ValueError, RuntimeError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)


class FeatureError(ValueError):
    """Features of a video that cannot be used (unreadable or truncated file, wrong shape,
    no time step, NaN/Inf); the message names the video and/or the file."""


def load_feature_file(path: str | Path, *, layout: Literal["TC", "CT"] = "TC", key: str | None = None) -> np.ndarray:
    """Read one feature file as a ``(T, C)`` array.

    ``.npy`` files are memory-mapped (slicing reads only the rows asked for); ``.npz`` files
    take the array ``key``, else ``feats``, else their only array; ``.pt`` files hold a tensor
    or a dict with one of those keys. Values are not checked for NaN/Inf here (see
    `check_finite`), so opening a long video stays cheap.

    Args:
        path: the file.
        layout: ``TC`` (time first, the default) or ``CT`` (channels first, transposed here).
        key: array name inside an ``.npz`` / dict ``.pt`` file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable or truncated file, unknown extension, a missing key, or an
            array that is not 2-D or has no time step; the message names the file.
    """
    path = Path(path)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise FeatureError(f"{path}: unknown feature file extension; expected one of {', '.join(EXTENSIONS)}")
    try:
        array = _read_array(path, suffix, key)
    except FeatureError:
        raise
    except READ_ERRORS as error:
        raise FeatureError(f"{path}: unreadable or truncated feature file ({error})") from None
    if array.ndim != 2:
        raise FeatureError(f"{path}: features must be a 2-D (time, channels) array; got shape {array.shape}")
    if layout == "CT":
        array = array.T
    if array.shape[0] == 0:
        raise FeatureError(f"{path}: zero-length features (shape {array.shape})")
    return array


def check_finite(features: np.ndarray, video_id: str, source: str) -> np.ndarray:
    """Return ``features`` unchanged; raise naming the video and ``source`` on NaN/Inf."""
    finite = np.isfinite(features)
    if not finite.all():
        step = int(np.flatnonzero(~finite.all(axis=-1))[0])
        raise FeatureError(f"video {video_id!r}: NaN or Inf in the features ({source}), first at time step {step}")
    return features


def _read_array(path: Path, suffix: str, key: str | None) -> np.ndarray:
    if suffix == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return archive[_pick_key(list(archive.keys()), key, path)]
    content = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(content, dict):
        content = content[_pick_key(list(content), key, path)]
    if not isinstance(content, torch.Tensor):
        raise FeatureError(f"{path}: expected a tensor or a dict of tensors, got {type(content).__name__}")
    return content.float().numpy()


def _pick_key(keys: list[str], key: str | None, path: Path) -> str:
    if key is not None:
        if key not in keys:
            raise FeatureError(f"{path}: no array named {key!r}; arrays present: {keys}")
        return key
    if NPZ_KEY in keys:
        return NPZ_KEY
    if len(keys) == 1:
        return keys[0]
    raise FeatureError(f"{path}: {len(keys)} arrays ({keys}); name the features with key=")


@dataclass(frozen=True)
class FeatureFolder:
    """Where and how the feature files of a dataset are stored.

    The file of video ``vid`` in folder ``f`` is ``f / (prefix + vid + suffix + extension)``.
    With several folders the per-folder arrays are concatenated along channels, each
    linearly resampled to the longest one's length when their lengths differ.

    Args:
        folders: one folder, or several whose features are concatenated (in this order).
        prefix / suffix: text around the video id in the file name.
        extension: ``.npy``, ``.npz`` or ``.pt``; None takes the first of these that exists.
        layout: ``TC`` (time, channels) or ``CT``.
        key: array name inside ``.npz`` / ``.pt`` files (default ``feats`` or the only one).
    """

    folders: str | Path | Sequence[str | Path]
    prefix: str = ""
    suffix: str = ""
    extension: str | None = None
    layout: Literal["TC", "CT"] = "TC"
    key: str | None = None

    def __post_init__(self) -> None:
        folders = (self.folders,) if isinstance(self.folders, (str, Path)) else tuple(self.folders)
        if not folders:
            raise ValueError("FeatureFolder needs at least one folder")
        if self.extension is not None and self.extension.lower() not in EXTENSIONS:
            raise ValueError(f"extension must be one of {', '.join(EXTENSIONS)}; got {self.extension!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {self.layout!r}")
        object.__setattr__(self, "folders", tuple(Path(folder) for folder in folders))

    def paths(self, video_id: str) -> list[Path]:
        """The feature file of ``video_id`` in every folder.

        Raises:
            FileNotFoundError: naming the video and the path(s) tried in the first folder
                that lacks it.
        """
        stem = f"{self.prefix}{video_id}{self.suffix}"
        extensions = (self.extension,) if self.extension else EXTENSIONS
        paths = []
        for folder in self.folders:
            found = [folder / (stem + extension) for extension in extensions if (folder / (stem + extension)).is_file()]
            if not found:
                tried = ", ".join(str(folder / (stem + extension)) for extension in extensions)
                raise FileNotFoundError(f"video {video_id!r}: feature file not found (tried {tried})")
            paths.append(found[0])
        return paths

    def load(self, video_id: str) -> np.ndarray:
        """``(T, C)`` features of ``video_id``; memory-mapped for a single ``.npy`` folder."""
        try:
            arrays = [load_feature_file(path, layout=self.layout, key=self.key) for path in self.paths(video_id)]
        except FeatureError as error:
            raise FeatureError(f"video {video_id!r}: {error}") from None
        if len(arrays) == 1:
            return arrays[0]
        length = max(len(array) for array in arrays)
        arrays = [array if len(array) == length else resize_features(np.asarray(array), length) for array in arrays]
        return np.concatenate(arrays, axis=1, dtype=np.float32)

    def describe(self, video_id: str) -> str:
        """The file name(s) of ``video_id``, for messages."""
        return ", ".join(str(path) for path in self.paths(video_id))


__all__ = ["FeatureError", "FeatureFolder", "check_finite", "load_feature_file"]
