"""The ``selfdetr`` command line: one console script, one subcommand per task.

Each subcommand is a pair ``(add_arguments, run)``; ``run`` returns the exit status.
Errors a user can fix (bad files, bad options) are printed as one line, without a
traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from huggingface_hub.errors import StrictDataclassError

from .app.commands import add_app_arguments, run_app
from .command_options import (
    add_feature_arguments,
    add_overwrite_argument,
    add_threads_argument,
    non_negative_float,
    positive_int,
    selected_features,
    set_threads,
)
from .evaluation.commands import add_diagnose_arguments, add_score_arguments, run_diagnose, run_score
from .features.commands import add_extract_arguments, add_extraction_arguments, run_extract
from .training.commands import add_data_arguments, add_demo_arguments, add_train_arguments, run_demo, run_train


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR_OR_NAME", help="a saved model (with its processor)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="windows per forward pass (default: 16)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def _load_model(args: argparse.Namespace):
    from .model_loading import load_model, load_processor

    return load_model(args.model, device=args.device), load_processor(args.model)


def _add_detect_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    add_feature_arguments(parser)
    parser.add_argument(
        "--videos", nargs="+", metavar="DIR_OR_FILE", help="video files and/or folders: extract features, then detect"
    )
    parser.add_argument(
        "--time-offset", type=non_negative_float, default=0.0,
        help="seconds of feature step 0, with --feature-fps (default: 0)",
    )  # fmt: skip
    parser.add_argument("--output", required=True, metavar="OUT", help="detections: .json (ActivityNet) or .csv")
    parser.add_argument("--plot", metavar="PNG", help="timeline plot of the first video's top detections")
    add_overwrite_argument(parser, "an existing --output (and --plot)")
    extraction = add_extraction_arguments(parser, "feature extraction (with --videos; clips batched by --batch-size)")
    extraction.add_argument("--feature-dir", metavar="DIR", help="keep the features here (default: a temporary folder)")


def _run_detect(args: argparse.Namespace) -> int:
    """Detections in seconds for one feature file, every file of a folder, or videos,
    written video by video.

    Features from `extract-features` (and those of ``--videos``) are timed by their metadata;
    others need ``--feature-fps``. A video that cannot be used is reported by name at the
    end (exit status 2), the others are written; ``--strict`` stops at the first one.
    """
    from .data.checks import short_videos_message
    from .detection_files import DetectionWriter, check_writable
    from .features.pipeline import detect_videos, extraction_timing
    from .inference import DetectionReport, VideoTiming, as_submission, iter_detections

    if bool(args.features) == bool(args.videos):
        raise ValueError("give --features or --videos (one of them)")
    writer = DetectionWriter(args.output, overwrite=args.overwrite)
    if args.plot:
        check_writable(args.plot, overwrite=args.overwrite)
    model, processor = _load_model(args)
    report = DetectionReport(strict=args.strict)
    if args.videos:
        found = detect_videos(
            model, processor, args.videos, feature_dir=args.feature_dir, backbone=args.backbone,
            clip_len=args.clip_len, stride=args.stride, batch_size=args.batch_size, dtype=args.dtype,
            on_error="error" if args.strict else "skip",
        ).items()  # fmt: skip
        total = None
    else:
        folder, video_ids = selected_features(args)
        if args.feature_fps is not None:
            timing = VideoTiming(args.feature_fps, args.time_offset)
        elif len(folder.folders) > 1:
            raise ValueError("give --feature-fps with several feature folders")
        else:
            timing = extraction_timing(folder.folders[0])
        found = iter_detections(model, processor, folder, video_ids, timing, batch_size=args.batch_size, report=report)
        total = len(video_ids)
    first = None
    with writer.open():
        for video_id, detections in found:
            submission = as_submission({video_id: detections})[video_id]
            writer.write(video_id, submission)
            if first is None:
                first = (video_id, submission)
    print(f"{writer.detections} detections in {writer.videos} video(s) -> {writer.output}")
    if args.plot and first is not None:
        from .evaluation.plots import plot_detection_timeline

        empty = {"segments": np.zeros((0, 2)), "labels": []}
        print(f"timeline plot: {plot_detection_timeline(empty, first[1], args.plot, title=first[0])}")
    if report.short_videos:
        warning = short_videos_message(report.short_videos, total, processor)
        print(f"selfdetr detect: warning: {warning}", file=sys.stderr)
    if report.failures:
        for message in report.failures.values():
            print(f"selfdetr detect: error: {message}", file=sys.stderr)
        print(
            f"selfdetr detect: error: {len(report.failures)} of {total} videos could not be used (listed above); "
            f"the other {writer.videos} are in {writer.output}",
            file=sys.stderr,
        )
        return 2
    return 0


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--subset", help="subset to evaluate (e.g. Test, validation); default: every video")
    parser.add_argument("--tiou", default="thumos14", help="thresholds: thumos14, activitynet or a list 0.3,0.5")
    parser.add_argument("--output-dir", required=True, help="where submission.json and metrics.json are written")
    add_overwrite_argument(parser, "submission.json and metrics.json in --output-dir")


EVALUATE_FILES = ("submission.json", "metrics.json")


def _run_evaluate(args: argparse.Namespace) -> int:
    """Model + features + annotations -> mAP table, submission and metrics files."""
    from accelerate import Accelerator

    from .data import window_metadata
    from .detection_files import check_output_folder
    from .evaluation import evaluate_detections, write_submission
    from .evaluation.commands import parse_tiou_thresholds
    from .inference import as_submission
    from .training.accelerate_loop import predict_windows
    from .training.commands import EVERY_SUBSET, load_data

    output_dir = check_output_folder(args.output_dir, EVALUATE_FILES, overwrite=args.overwrite)
    model, processor = _load_model(args)
    data = load_data(
        args, processor, train_subset=None, eval_subset=args.subset or EVERY_SUBSET,
        label_names=[model.config.id2label[i] for i in range(model.config.num_labels)],
        feature_dim=model.config.feature_dim,
    )  # fmt: skip
    predictions = predict_windows(model, data.eval_dataset, Accelerator(), args.batch_size)
    detections = as_submission(
        processor.post_process_action_detection(
            predictions, window_metadata(data.eval_dataset), id2label=model.config.id2label, by_video=True
        )
    )
    result = evaluate_detections(data.eval_annotations, detections, parse_tiou_thresholds(args.tiou))
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
    parser.add_argument("--overwrite", action="store_true", help="replace a model already saved in output_dir")


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
    if isinstance(names, list):
        return dict(enumerate(names))
    if not isinstance(names, dict) or not all(str(key).isdigit() for key in names):
        raise ValueError(
            f"--id2label: expected a list of names or an {{id: name}} object with ids 0, 1, ...; got {text}"
        )
    return {int(key): name for key, name in names.items()}


def _run_convert(args: argparse.Namespace) -> int:
    from .convert import (
        convert_original_checkpoint,
        load_original_checkpoint,
        recorded_hyperparameters,
        recorded_training_settings,
        saved_model_files,
    )
    from .detection_files import check_output_folder

    found = saved_model_files(check_output_folder(args.output_dir))
    if found and not args.overwrite:
        raise ValueError(
            f"{args.output_dir} already holds a model ({', '.join(path.name for path in found)}): "
            "choose another folder, or replace it with --overwrite"
        )
    id2label = _parse_id2label(args)
    checkpoint = load_original_checkpoint(args.checkpoint)
    model = convert_original_checkpoint(
        checkpoint, args.output_dir, id2label=id2label, num_attention_heads=args.num_heads
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


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    from .export import FORMATS

    parser.add_argument("model", metavar="MODEL_DIR", help="a saved model (with its processor)")
    parser.add_argument("output", metavar="OUT", help="file to write, .pt2 (torch) or .onnx, and OUT.json beside it")
    parser.add_argument(
        "--format", choices=FORMATS, default="torch",
        help="torch: a torch.export program; onnx: an ONNX model for onnxruntime (the export extra) (default: torch)",
    )  # fmt: skip
    add_overwrite_argument(parser, "an existing OUT and OUT.json")
    parser.set_defaults(device="cpu")


def _run_export(args: argparse.Namespace) -> int:
    """A saved model -> an exported file checked against the eager model, and its JSON."""
    from .export import check_export_paths, check_onnx_extra, export_detector

    check_export_paths(args.output, args.format, overwrite=args.overwrite)
    if args.format == "onnx":
        check_onnx_extra()
    model, processor = _load_model(args)
    report = export_detector(model, args.output, args.format, processor=processor, overwrite=args.overwrite)
    difference = ", ".join(f"{name} {value:.1e}" for name, value in report.difference.items())
    print(f"exported {args.model} -> {report.output} ({args.format}), metadata: {report.metadata}")
    print(f"largest difference to the eager model on padded inputs: {difference}")
    return 0


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "demo": ("train, evaluate, save, reload and detect on the built-in synthetic data", add_demo_arguments, run_demo),
    "train": (
        "train with Accelerate (the paper's recipes; DDP with accelerate launch)",
        add_train_arguments,
        run_train,
    ),
    "evaluate": (
        "mAP of a model on annotated features, and its submission file",
        _add_evaluate_arguments,
        _run_evaluate,
    ),
    "extract-features": ("features of videos from a transformers video model", add_extract_arguments, run_extract),
    "detect": ("detections in seconds for feature files or videos (JSON or CSV)", _add_detect_arguments, _run_detect),
    "convert": ("convert an original Self-DETR checkpoint", _add_convert_arguments, _run_convert),
    "push": ("upload a saved model with its model card to the Hub", _add_push_arguments, _run_push),
    "export": ("export a saved model for deployment (torch.export or ONNX)", _add_export_arguments, _run_export),
    "score": ("score an ActivityNet submission (mAP, ActivityNet protocol)", add_score_arguments, run_score),
    "diagnose": ("attention diversity per layer and attention plots", add_diagnose_arguments, run_diagnose),
    "app": ("web demo: detections and attention maps in the browser (app extra)", add_app_arguments, run_app),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfdetr", description="Self-DETR temporal action detection")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(subparser)
        add_threads_argument(subparser)
    return parser


def _print_warnings_as_one_line(command: str) -> None:
    """Print the package's own warnings as ``selfdetr COMMAND: warning: message``, without
    Python's file name and source line; other libraries' warnings keep their format."""
    package = Path(__file__).parent
    standard = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None) -> str:
        if Path(filename).is_relative_to(package):
            return f"selfdetr {command}: warning: {message}\n"
        return standard(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning


def run_command(command: str, args: argparse.Namespace) -> int:
    """Run the subcommand ``command`` on parsed ``args`` (with ``--threads``); an error a user
    can fix is printed as one line and gives exit status 2."""
    run = COMMANDS[command][2]
    set_threads(args.threads)
    _print_warnings_as_one_line(command)
    try:
        return run(args)
    except (ValueError, OSError) as error:
        print(f"selfdetr {command}: error: {error}", file=sys.stderr)
        return 2
    except StrictDataclassError as error:  # a config field out of range, e.g. in a model's config.json
        print(f"selfdetr {command}: error: invalid configuration: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.command, args)


if __name__ == "__main__":
    sys.exit(main())
