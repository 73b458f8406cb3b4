"""`selfdetr extract-features`, and the extraction options `selfdetr detect --videos` shares."""

from __future__ import annotations

import argparse

from .backbone import DEFAULT_BACKBONE, DTYPES


def add_extraction_arguments(parser: argparse.ArgumentParser, title: str = "feature extraction"):
    """The backbone and clip sampling options; returns their argument group."""
    group = parser.add_argument_group(title)
    group.add_argument(
        "--backbone", default=DEFAULT_BACKBONE, metavar="NAME_OR_PATH",
        help=f"transformers video model with its processor (default: {DEFAULT_BACKBONE})",
    )  # fmt: skip
    group.add_argument("--clip-len", type=int, default=16, help="video frames per clip (default: 16)")
    group.add_argument("--stride", type=int, default=4, help="video frames between clips (default: 4)")
    group.add_argument(
        "--dtype", choices=tuple(DTYPES), default="float32", help="compute precision, autocast (default: float32)"
    )
    group.add_argument("--strict", action="store_true", help="stop at an unreadable video instead of skipping it")
    return group


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--videos", nargs="+", required=True, metavar="DIR_OR_FILE", help="video files and/or folders of videos"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="feature folder: <video_id>.npy and .json")
    group = add_extraction_arguments(parser)
    group.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default: 8)")
    group.add_argument(
        "--device", help="torch device (default: cuda when available, else cpu; one GPU per process with accelerate)"
    )
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run_extract(args: argparse.Namespace) -> int:
    """Extract features of every video; print what was written, skipped and unreadable."""
    from accelerate import PartialState

    from ..detection_files import check_output_folder
    from .extract import extract_features

    check_output_folder(args.out)  # before the backbone is loaded
    summary = extract_features(
        args.videos, args.out, backbone=args.backbone, clip_len=args.clip_len, stride=args.stride,
        batch_size=args.batch_size, device=args.device, dtype=args.dtype,
        on_error="error" if args.strict else "skip", progress=not args.no_progress,
    )  # fmt: skip
    if PartialState().is_main_process:
        print(
            f"{len(summary.extracted)} videos extracted, {len(summary.skipped)} already complete, "
            f"{len(summary.failed)} unreadable and skipped -> {args.out}"
        )
    return 0


__all__ = ["add_extract_arguments", "add_extraction_arguments", "run_extract"]
