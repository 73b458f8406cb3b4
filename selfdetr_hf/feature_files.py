"""Per-video feature files: ``.npy`` (memory-mapped), ``.npz`` and ``.pt``, one file per video
per feature folder; several folders (e.g. RGB and flow) are concatenated along channels.

A top-level module, as every module the processor and the pipeline import: a saved model's
code is one flat folder of modules (see `SelfDetrPreTrainedModel.save_pretrained`).
"""

from __future__ import annotations

import pickle
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
    except pickle.UnpicklingError:  # torch's message is many lines, and suggests loading unsafely
        raise FeatureError(
            f"{path}: not a tensor or a dict of tensors that torch.load(weights_only=True) can read"
        ) from None
    except READ_ERRORS as error:
        raise FeatureError(f"{path}: unreadable or truncated feature file ({error})") from None
    if array.ndim != 2:
        raise FeatureError(f"{path}: features must be a 2-D (time, channels) array; got shape {array.shape}")
    if layout == "CT":
        array = array.T
    if array.shape[0] == 0:
        raise FeatureError(f"{path}: zero-length features (shape {array.shape})")
    return array


def check_feature_shape(array: Any, video_id: str, source: str, feature_dim: int | None) -> tuple[int, int]:
    """``(T, C)`` of a video's array-like features, checked without reading them: 2-D,
    ``T > 0``, ``C == feature_dim`` when given.

    Raises:
        FeatureError: naming the video and ``source`` (its file).
    """
    shape = tuple(getattr(array, "shape", ()))
    if len(shape) != 2:
        raise FeatureError(f"video {video_id!r}: features must be (time, channels); got shape {shape} ({source})")
    if shape[0] == 0:
        raise FeatureError(f"video {video_id!r}: zero-length features ({source})")
    if feature_dim is not None and shape[1] != feature_dim:
        hint = " (channels first? use layout='CT', or --feature-layout CT)" if shape[0] == feature_dim else ""
        raise FeatureError(
            f"video {video_id!r}: features have {shape[1]} channels, expected {feature_dim} ({source}){hint}"
        )
    return shape


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
    With several folders the per-folder arrays are concatenated along channels; their
    lengths must agree unless ``resample=True``, which linearly resamples each to the
    longest one's length.

    Args:
        folders: one folder, or several whose features are concatenated (in this order).
        prefix / suffix: text around the video id in the file name.
        extension: ``.npy``, ``.npz`` or ``.pt``; None takes the one file that exists (two
            files of one video with different extensions are an error).
        layout: ``TC`` (time, channels) or ``CT``.
        key: array name inside ``.npz`` / ``.pt`` files (default ``feats`` or the only one).
        resample: resample folders of different lengths to the longest instead of refusing.
    """

    folders: str | Path | Sequence[str | Path]
    prefix: str = ""
    suffix: str = ""
    extension: str | None = None
    layout: Literal["TC", "CT"] = "TC"
    key: str | None = None
    resample: bool = False

    def __post_init__(self) -> None:
        folders = (self.folders,) if isinstance(self.folders, (str, Path)) else tuple(self.folders)
        if not folders:
            raise ValueError("FeatureFolder needs at least one folder")
        if self.extension is not None and self.extension.lower() not in EXTENSIONS:
            raise ValueError(f"extension must be one of {', '.join(EXTENSIONS)}; got {self.extension!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {self.layout!r}")
        object.__setattr__(self, "folders", tuple(Path(folder) for folder in folders))

    @property
    def extensions(self) -> tuple[str, ...]:
        """The extensions looked for."""
        return (self.extension,) if self.extension else EXTENSIONS

    def video_ids(self) -> list[str]:
        """Sorted ids of every video with a feature file in the first folder.

        Raises:
            FileNotFoundError: the folder does not exist or holds no matching file.
        """
        folder = self.folders[0]
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such feature folder")
        ids = set()
        for path in folder.iterdir():
            name = path.name[: -len(path.suffix)] if path.suffix else path.name
            matches = name.startswith(self.prefix) and name.endswith(self.suffix)
            if path.suffix.lower() in self.extensions and matches and len(name) > len(self.prefix + self.suffix):
                ids.add(name[len(self.prefix) : len(name) - len(self.suffix)])
        if not ids:
            pattern = f"{self.prefix}<video_id>{self.suffix}"
            raise FileNotFoundError(f"{folder}: no feature files {pattern} with extension {', '.join(self.extensions)}")
        return sorted(ids)

    def paths(self, video_id: str) -> list[Path]:
        """The feature file of ``video_id`` in every folder.

        Raises:
            FileNotFoundError: naming the video and the path(s) tried in the first folder
                that lacks it.
            FeatureError: several files of the video in one folder (e.g. ``v.npy`` and
                ``v.pt``) and no ``extension`` to choose between them.
        """
        stem = f"{self.prefix}{video_id}{self.suffix}"
        paths = []
        for folder in self.folders:
            candidates = [folder / (stem + extension) for extension in self.extensions]
            found = [path for path in candidates if path.is_file()]
            if not found:
                tried = ", ".join(str(path) for path in candidates)
                raise FileNotFoundError(f"video {video_id!r}: feature file not found (tried {tried})")
            if len(found) > 1:
                raise FeatureError(
                    f"video {video_id!r}: several feature files ({', '.join(map(str, found))}); "
                    "keep one or choose the extension (--feature-extension)"
                )
            paths.append(found[0])
        return paths

    def load(self, video_id: str) -> np.ndarray:
        """``(T, C)`` features of ``video_id``; memory-mapped for a single ``.npy`` folder.

        Raises:
            FeatureError: an unusable file, or folders of different lengths without
                ``resample``; the message names the video and the files.
        """
        paths = self.paths(video_id)
        try:
            arrays = [load_feature_file(path, layout=self.layout, key=self.key) for path in paths]
        except FeatureError as error:
            raise FeatureError(f"video {video_id!r}: {error}") from None
        if len(arrays) == 1:
            return arrays[0]
        lengths = [len(array) for array in arrays]
        if len(set(lengths)) > 1 and not self.resample:
            found = ", ".join(f"{path} {array.shape}" for path, array in zip(paths, arrays))
            raise FeatureError(
                f"video {video_id!r}: feature folders of different lengths ({found}); check --feature-layout, "
                "or resample them to the longest with resample=True (--resample-features)"
            )
        length = max(lengths)
        arrays = [array if len(array) == length else resize_features(np.asarray(array), length) for array in arrays]
        return np.concatenate(arrays, axis=1, dtype=np.float32)

    def describe(self, video_id: str) -> str:
        """The file name(s) of ``video_id``, for messages."""
        return ", ".join(str(path) for path in self.paths(video_id))


__all__ = ["FeatureError", "FeatureFolder", "check_feature_shape", "check_finite", "load_feature_file"]
