"""The ``selfdetr`` command line: one console script, one subcommand per task.

Each subcommand is a pair ``(add_arguments, run)``; ``run`` returns the exit status.
Errors a user can fix (bad files, bad options) are printed as one line, without a
traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from huggingface_hub.errors import StrictDataclassError

from .evaluation.commands import add_diagnose_arguments, add_score_arguments, run_diagnose, run_score
from .features.commands import add_extract_arguments, add_extraction_arguments, run_extract
from .training.commands import add_data_arguments, add_demo_arguments, add_train_arguments, run_demo, run_train


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR_OR_NAME", help="a saved model (with its processor)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default: 16)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def _load_model(args: argparse.Namespace):
    from . import SelfDetrForActionDetection
    from .processing_self_detr import SelfDetrProcessor

    model = SelfDetrForActionDetection.from_pretrained(args.model).to(args.device).eval()
    try:
        processor = SelfDetrProcessor.from_pretrained(args.model)
    except OSError:
        print(
            f"selfdetr: {args.model} has no preprocessor_config.json; using the THUMOS14 windowing and "
            "post-processing (save the processor next to the model to choose others)",
            file=sys.stderr,
        )
        processor = SelfDetrProcessor.thumos14()
    return model, processor


def _add_detect_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", metavar="FILE_OR_DIR", help="one feature file or a folder")
    source.add_argument(
        "--videos", nargs="+", metavar="DIR_OR_FILE", help="video files and/or folders: extract features, then detect"
    )
    parser.add_argument(
        "--feature-fps", type=float, help="feature steps per second (default: from extract-features' metadata)"
    )
    parser.add_argument(
        "--time-offset", type=float, default=0.0, help="seconds of feature step 0, with --feature-fps (default: 0)"
    )
    parser.add_argument("--feature-layout", choices=("TC", "CT"), default="TC", help="array layout (default: TC)")
    parser.add_argument("--output", required=True, metavar="OUT", help="detections: .json (ActivityNet) or .csv")
    parser.add_argument("--plot", metavar="PNG", help="timeline plot of the first video's top detections")
    extraction = add_extraction_arguments(parser, "feature extraction (with --videos; clips batched by --batch-size)")
    extraction.add_argument("--feature-dir", metavar="DIR", help="keep the features here (default: a temporary folder)")


def _run_detect(args: argparse.Namespace) -> int:
    """Detections in seconds for one feature file, every file of a folder, or videos.

    Features from `extract-features` (and those of ``--videos``) are timed by their metadata;
    others need ``--feature-fps``.
    """
    from .evaluation import submission_entries, write_submission
    from .features.pipeline import detect_extracted, detect_videos
    from .inference import as_submission, detect, read_features

    if args.videos:
        model, processor = _load_model(args)
        found = detect_videos(
            model, processor, args.videos, feature_dir=args.feature_dir, backbone=args.backbone,
            clip_len=args.clip_len, stride=args.stride, batch_size=args.batch_size, dtype=args.dtype,
            on_error="error" if args.strict else "skip",
        )  # fmt: skip
    elif args.feature_fps is None:
        model, processor = _load_model(args)
        found = detect_extracted(model, processor, args.features, batch_size=args.batch_size)
    else:
        features = read_features(args.features, layout=args.feature_layout)
        model, processor = _load_model(args)
        found = detect(
            model, processor, features, feature_fps=args.feature_fps, time_offset=args.time_offset,
            batch_size=args.batch_size,
        )  # fmt: skip
    detections = as_submission(found)
    output = Path(args.output)
    if output.suffix.lower() == ".csv":
        with output.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["video", "start", "end", "label", "score"])
            for video, entries in submission_entries(detections).items():
                for entry in entries:
                    writer.writerow([video, *entry["segment"], entry["label"], entry["score"]])
    else:
        write_submission(output, detections)
    count = sum(len(found["scores"]) for found in detections.values())
    print(f"{count} detections in {len(detections)} video(s) -> {output}")
    if args.plot:
        from .evaluation.plots import plot_detection_timeline

        video, found = next(iter(detections.items()))
        empty = {"segments": np.zeros((0, 2)), "labels": []}
        print(f"timeline plot: {plot_detection_timeline(empty, found, args.plot, title=video)}")
    return 0


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--subset", help="subset to evaluate (e.g. Test, validation); default: every video")
    parser.add_argument("--tiou", default="thumos14", help="thresholds: thumos14, activitynet or a list 0.3,0.5")
    parser.add_argument("--output-dir", required=True, help="where submission.json and metrics.json are written")


def _run_evaluate(args: argparse.Namespace) -> int:
    """Model + features + annotations -> mAP table, submission and metrics files."""
    from accelerate import Accelerator

    from .data import window_metadata
    from .evaluation import evaluate_detections, write_submission
    from .evaluation.commands import parse_tiou_thresholds
    from .inference import as_submission
    from .training.accelerate_loop import predict_windows
    from .training.commands import EVERY_SUBSET, load_data

    model, processor = _load_model(args)
    data = load_data(
        args, processor, train_subset=None, eval_subset=args.subset or EVERY_SUBSET,
        label_names=[model.config.id2label[i] for i in range(model.config.num_labels)],
    )  # fmt: skip
    predictions = predict_windows(model, data.eval_dataset, Accelerator(), args.batch_size)
    detections = as_submission(
        processor.post_process_action_detection(
            predictions, window_metadata(data.eval_dataset), id2label=model.config.id2label, by_video=True
        )
    )
    result = evaluate_detections(data.eval_annotations, detections, parse_tiou_thresholds(args.tiou))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_submission(output_dir / "submission.json", detections)
    (output_dir / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    print(result.table())
    print(f"submission: {output_dir / 'submission.json'}, metrics: {output_dir / 'metrics.json'}")
    return 0


def _add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="original checkpoint (.pth) of the authors' Self-DETR code")
    parser.add_argument("output_dir", help="directory to write with save_pretrained")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--num-labels", type=int, help="number of classes (checked against the checkpoint)")
    labels.add_argument("--id2label", help="class names: a JSON file or inline JSON, a list or an {id: name} object")
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
    from .convert import (
        convert_original_checkpoint,
        load_original_checkpoint,
        recorded_hyperparameters,
        recorded_training_settings,
    )

    checkpoint = load_original_checkpoint(args.checkpoint)
    model = convert_original_checkpoint(
        checkpoint, args.output_dir, id2label=_parse_id2label(args), num_attention_heads=args.num_heads
    )
    config = model.config
    print(
        f"converted {args.checkpoint} -> {args.output_dir}: {config.encoder_layers} encoder / "
        f"{config.decoder_layers} decoder layers, {config.num_queries} queries, {config.num_labels} classes, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    settings = recorded_training_settings(recorded_hyperparameters(checkpoint))
    found = ", ".join(f"{original}={value} -> {field}" for field, (original, value) in settings.items())
    print(f"training settings from the checkpoint: {found or 'none recorded, defaults kept'}")
    return 0


def _add_push_arguments(parser: argparse.ArgumentParser) -> None:
    from .model_card import available_templates

    parser.add_argument("model_dir", help="directory written by save_pretrained (model, processor)")
    parser.add_argument("repo_id", help="Hub model repository, namespace/name (created when missing)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument(
        "--card-template",
        metavar="NAME_OR_PATH",
        help=f"model card template, a Markdown file or one of {', '.join(available_templates())} "
        "(default: keep MODEL_DIR/README.md, else custom_dataset)",
    )
    parser.add_argument(
        "--metrics",
        metavar="FILE",
        help="JSON metrics of an evaluation run for the card (average_mAP, tiou_thresholds, mAP)",
    )
    parser.add_argument(
        "--dataset-name", metavar="NAME", help="dataset named in the card (default: the template's benchmark)"
    )
    parser.add_argument(
        "--commit-message", metavar="TEXT", default="Upload Self-DETR model", help="message of the commit"
    )


def _run_push(args: argparse.Namespace) -> int:
    """Render the model card when asked (or when the directory has none), then upload."""
    from pathlib import Path

    from . import SelfDetrConfig
    from .hub import check_model_dir, push_model
    from .model_card import DEFAULT_DATASET_NAMES, render_model_card

    model_dir = Path(args.model_dir)
    check_model_dir(model_dir)
    model_card = None
    if args.card_template or args.metrics or args.dataset_name or not (model_dir / "README.md").is_file():
        template = args.card_template or "custom_dataset"
        dataset_name = args.dataset_name or DEFAULT_DATASET_NAMES.get(Path(template).stem)
        if dataset_name is None:
            raise ValueError(f"--dataset-name is required with the {template} model card template")
        metrics = None
        if args.metrics:
            with open(args.metrics, encoding="utf-8") as handle:
                metrics = json.load(handle)
        model_card = render_model_card(
            template,
            repo_id=args.repo_id,
            config=SelfDetrConfig.from_pretrained(model_dir),
            metrics=metrics,
            dataset_name=dataset_name,
        )
    url = push_model(
        model_dir, args.repo_id, model_card=model_card, private=args.private, commit_message=args.commit_message
    )
    print(f"pushed {model_dir} to {args.repo_id}: {url}")
    return 0


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "demo": ("train, evaluate, save, reload and detect on the built-in synthetic data", add_demo_arguments, run_demo),
    "train": ("train with Accelerate (the paper's recipes; DDP with accelerate launch)", add_train_arguments, run_train),
    "evaluate": ("mAP of a model on annotated features, and its submission file", _add_evaluate_arguments, _run_evaluate),
    "extract-features": ("features of videos from a transformers video model", add_extract_arguments, run_extract),
    "detect": ("detections in seconds for feature files or videos (JSON or CSV)", _add_detect_arguments, _run_detect),
    "convert": ("convert an original Self-DETR checkpoint", _add_convert_arguments, _run_convert),
    "push": ("upload a saved model with its model card to the Hub", _add_push_arguments, _run_push),
    "score": ("score an ActivityNet submission (mAP, ActivityNet protocol)", add_score_arguments, run_score),
    "diagnose": ("attention diversity per layer and attention plots", add_diagnose_arguments, run_diagnose),
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
    except StrictDataclassError as error:  # a config field out of range, e.g. in a model's config.json
        print(f"selfdetr {args.command}: error: invalid configuration: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
