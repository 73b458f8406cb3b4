"""Command-line options every ``selfdetr`` command shares: where the feature files are and
how they are named and laid out, and how many CPU threads torch uses."""

from __future__ import annotations

import argparse
import os

import torch

from .data import FeatureFolder
from .feature_files import EXTENSIONS, LAYOUTS
from .inference import feature_files

MAX_DEFAULT_THREADS = 8


def _finite_number(text: str, *, zero_allowed: bool) -> float:
    """A finite number above 0 (or at 0 with ``zero_allowed``), else an argparse error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 <= value if zero_allowed else 0 < value) or not value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"must be a {'finite number >= 0' if zero_allowed else 'positive number'}, got {text}"
        )
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    return _finite_number(text, zero_allowed=False)


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number at or above 0."""
    return _finite_number(text, zero_allowed=True)


def positive_int(text: str) -> int:
    """An argparse type: an integer above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_feature_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> argparse._ArgumentGroup:
    """The feature files of a command: folders (or one file), naming, layout, rate."""
    group = parser.add_argument_group("features")
    group.add_argument(
        "--features", nargs="+", required=required, metavar="DIR",
        help="feature folder(s), one file per video (several are concatenated along channels), or one feature file",
    )  # fmt: skip
    group.add_argument("--feature-prefix", default="", help="text before the video id in feature file names")
    group.add_argument("--feature-suffix", default="", help="text after the video id in feature file names")
    group.add_argument(
        "--feature-extension", choices=EXTENSIONS, help="read only files of this type (default: any, one per video)"
    )
    group.add_argument("--feature-layout", choices=LAYOUTS, default="TC", help="array layout (default: TC)")
    group.add_argument("--feature-key", help="array name inside .npz/.pt files (default: feats or the only one)")
    group.add_argument(
        "--resample-features", action="store_true",
        help="with several folders, resample each video's features to the longest folder's length "
        "(default: different lengths are an error)",
    )  # fmt: skip
    group.add_argument("--feature-fps", type=positive_float, help="feature steps per second")
    return group


def add_overwrite_argument(parser: argparse.ArgumentParser, replaced: str) -> None:
    """``--overwrite``: replace the ``replaced`` files of an earlier run (else they are refused)."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {replaced} (default: refuse)")


def feature_folder(args: argparse.Namespace) -> FeatureFolder:
    """The `FeatureFolder` the feature options describe."""
    return FeatureFolder(
        args.features, prefix=args.feature_prefix, suffix=args.feature_suffix, extension=args.feature_extension,
        layout=args.feature_layout, key=args.feature_key, resample=args.resample_features,
    )  # fmt: skip


def selected_features(args: argparse.Namespace) -> tuple[FeatureFolder, list[str]]:
    """The folder and video ids of ``--features``: one file, or every video of the folders.

    Raises:
        FileNotFoundError: no such file or folder, or no feature file in the first folder.
    """
    folder = feature_folder(args)
    if len(args.features) == 1:
        return feature_files(args.features[0], folder)
    return folder, folder.video_ids()


def default_threads() -> int:
    """Half the CPU cores this process may use (at least 1, at most `MAX_DEFAULT_THREADS`):
    torch's default of every core slows a machine shared with other jobs many times over."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, cores // 2))


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=positive_int, default=default_threads(), metavar="N",
        help=f"CPU threads of torch (default: half the cores, at most {MAX_DEFAULT_THREADS}; here {default_threads()})",
    )  # fmt: skip


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch's operators."""
    torch.set_num_threads(threads)


__all__ = [
    "add_feature_arguments",
    "add_overwrite_argument",
    "add_threads_argument",
    "default_threads",
    "feature_folder",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "selected_features",
    "set_threads",
]
