"""The ``selfdetr`` command line: one console script, one subcommand per task.

Each subcommand is a pair ``(add_arguments, run)``; ``run`` returns the exit status.
Errors a user can fix (bad files, bad options) are printed as one line, without a
traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def _run_demo(args: argparse.Namespace) -> int:
    """Forward pass and loss of the default THUMOS14-sized model on random features."""
    import torch

    from . import SelfDetrConfig, SelfDetrForActionDetection

    torch.manual_seed(args.seed)
    model = SelfDetrForActionDetection(SelfDetrConfig())
    features = torch.randn(2, 128, model.config.feature_dim)
    labels = [
        {"class_labels": torch.tensor([3, 7]), "segments": torch.tensor([[0.3, 0.1], [0.7, 0.25]])},
        {"class_labels": torch.tensor([0]), "segments": torch.tensor([[0.5, 0.4]])},
    ]
    outputs = model(input_features=features, labels=labels)
    print(f"Self-DETR, {sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"logits {tuple(outputs.logits.shape)}, pred_segments {tuple(outputs.pred_segments.shape)}")
    for name, value in outputs.loss_dict.items():
        print(f"{name:28s} {value.item():.6f}")
    print(f"{'loss (Eq. 9)':28s} {outputs.loss.item():.6f}")
    return 0


def _add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="original checkpoint (.pth) of the authors' Self-DETR code")
    parser.add_argument("output_dir", help="directory to write with save_pretrained")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--num-labels", type=int, help="number of classes (checked against the checkpoint)")
    labels.add_argument(
        "--id2label", help="class names: a JSON file or inline JSON, a list or an {id: name} object"
    )
    parser.add_argument("--num-heads", type=int, help="attention heads, when the checkpoint does not record them")


def _parse_id2label(args: argparse.Namespace) -> dict[int, str] | None:
    if args.num_labels is not None:
        return {i: f"LABEL_{i}" for i in range(args.num_labels)}
    if args.id2label is None:
        return None
    text = args.id2label
    if not text.lstrip().startswith(("[", "{")):
        with open(text, encoding="utf-8") as handle:
            text = handle.read()
    names = json.loads(text)
    return dict(enumerate(names)) if isinstance(names, list) else {int(k): v for k, v in names.items()}


def _run_convert(args: argparse.Namespace) -> int:
    from .convert import convert_original_checkpoint

    model = convert_original_checkpoint(
        args.checkpoint, args.output_dir, id2label=_parse_id2label(args), num_attention_heads=args.num_heads
    )
    config = model.config
    print(
        f"converted {args.checkpoint} -> {args.output_dir}: {config.encoder_layers} encoder / "
        f"{config.decoder_layers} decoder layers, {config.num_queries} queries, {config.num_labels} classes, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    return 0


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "demo": ("run the main job on the built-in default", _add_demo_arguments, _run_demo),
    "convert": ("convert an original Self-DETR checkpoint", _add_convert_arguments, _run_convert),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfdetr", description="Self-DETR temporal action detection")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(subparsers.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = COMMANDS[args.command][2]
    try:
        return run(args)
    except (ValueError, OSError) as error:
        print(f"selfdetr {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
