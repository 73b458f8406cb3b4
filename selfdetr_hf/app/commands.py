"""``selfdetr app``: serve the web demo on this machine (loopback by default)."""

from __future__ import annotations

import argparse
import importlib.util
import os

from ..command_options import positive_float, positive_int
from . import APP_EXTRA_HINT
from .inputs import DEFAULT_MAX_UPLOAD_MB


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="NAME_OR_DIR", help="a saved model (with its processor)")
    parser.add_argument(
        "--compare-model", metavar="NAME_OR_DIR", help="a second model shown beside it, e.g. without self-feedback"
    )
    parser.add_argument("--port", type=positive_int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument(
        "--max-upload-mb", type=positive_float, default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest uploaded file in MiB (default: {DEFAULT_MAX_UPLOAD_MB})",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=16, help="windows per forward pass (default: 16)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    videos = parser.add_argument_group("video uploads (the video extra)")
    videos.add_argument(
        "--backbone", metavar="NAME_OR_PATH", help="transformers video model giving the model's features: allows videos"
    )
    videos.add_argument("--clip-len", type=positive_int, default=16, help="video frames per clip (default: 16)")
    videos.add_argument("--stride", type=positive_int, default=4, help="video frames between clips (default: 4)")


def run_app(args: argparse.Namespace) -> int:
    """Load the models, then serve the demo until Ctrl-C."""
    if importlib.util.find_spec("gradio") is None:
        raise ValueError(f"selfdetr app needs the app extra: {APP_EXTRA_HINT}")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from .demo import build_demo

    demo = build_demo(
        args.model, compare_model=args.compare_model, backbone=args.backbone, clip_len=args.clip_len,
        stride=args.stride, max_upload_mb=args.max_upload_mb, batch_size=args.batch_size, device=args.device,
    )  # fmt: skip
    print(f"serving {args.model} on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    demo.queue().launch(
        server_name=args.host, server_port=args.port, share=False, max_file_size=f"{args.max_upload_mb:g}mb",
        quiet=True, footer_links=[],
    )  # fmt: skip
    return 0


__all__ = ["add_app_arguments", "run_app"]
