"""`selfdetr train` and `selfdetr demo`, and the data options they share with `evaluate`."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from ..command_options import add_feature_arguments, feature_folder, positive_float
from ..data import build_dataset, load_annotations
from ..data.synthetic import make_synthetic_videos
from ..evaluation.commands import TIOU_PRESETS
from ..evaluation.detection_map import map_table
from ..processing_self_detr import SelfDetrProcessor
from .accelerate_loop import AccelerateTrainingArguments, train
from .interrupts import StoppedAtOnce, TrainingInterrupted
from .recipes import RECIPES, TrainingRecipe
from .run_folder import RunFolderError, check_output_dir, how_to_continue, run_artefacts

PRESET_SUBSETS = {
    "thumos14": ("validation", "test"),
    "activitynet": ("training", "validation"),
    "synthetic": ("train", "test"),
}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the annotations and features are, and how features map to seconds."""
    add_feature_arguments(parser)
    group = parser.add_argument_group("data")
    group.add_argument("--annotations", metavar="FILE", help="annotation file (ActionFormer, ActivityNet or BSN style)")
    group.add_argument("--video-info", metavar="CSV", help="video-info CSV giving subsets of a BSN-style file")
    group.add_argument(
        "--feature-stride", type=positive_float,
        help="video frames per feature step (with each video's fps and --clip-frames; instead of --feature-fps)",
    )  # fmt: skip
    group.add_argument("--clip-frames", type=float, default=0.0, help="frames per feature clip (default: 0)")
    group.add_argument(
        "--synthetic", action="store_true", help="use the built-in synthetic dataset instead of annotation files"
    )
    group.add_argument(
        "--synthetic-timelines", metavar="FILE", help="with --synthetic: follow the timelines of this annotation file"
    )
    group.add_argument("--synthetic-feature-dim", type=int, default=64, help="channels of synthetic features")


EVERY_SUBSET = "*"
"""As ``train_subset`` or ``eval_subset`` of `load_data`: every video of the annotations."""


@dataclass
class LoadedData:
    """Datasets and ground truth for one run: ``eval_annotations`` are the evaluation videos'
    segments exactly as the file holds them (the standard protocol), while the datasets'
    training targets are clipped to each video's duration."""

    train_dataset: Any
    eval_dataset: Any
    eval_annotations: dict
    label_names: list[str]
    feature_dim: int


def load_data(
    args: argparse.Namespace,
    processor: SelfDetrProcessor,
    *,
    train_subset: str | None,
    eval_subset: str | None,
    label_names: list[str] | None = None,
    class_agnostic: bool = False,
    synthetic_seed: int = 0,
    feature_dim: int | None = None,
) -> LoadedData:
    """Build the training and test window datasets from the command line's data options.

    A subset of None gives no dataset, `EVERY_SUBSET` one of every video; ``synthetic_seed``
    seeds the synthetic data (with ``--synthetic``); ``feature_dim`` (a model's) is the
    channel count every video must have (default: the first video's).
    """
    if args.synthetic:
        videos = make_synthetic_videos(
            None if args.synthetic_timelines else 96,
            num_classes=None if args.synthetic_timelines else 5,
            feature_dim=args.synthetic_feature_dim,
            timelines=args.synthetic_timelines or "thumos14",
            seed=synthetic_seed,
        )
        annotations, features = videos.annotations, videos.features
        ground_truth = (
            load_annotations(args.synthetic_timelines, invalid_segments="keep")
            if args.synthetic_timelines
            else annotations
        )
        label_names = label_names or videos.label_names
        timing = {"feature_fps": videos.feature_fps}
    else:
        if not args.annotations or not args.features:
            raise ValueError("give --annotations and --features (or --synthetic)")
        annotations = load_annotations(args.annotations, video_info=args.video_info)
        ground_truth = load_annotations(args.annotations, video_info=args.video_info, invalid_segments="keep")
        features = feature_folder(args)
        timing = {
            "feature_fps": args.feature_fps,
            "feature_stride": args.feature_stride,
            "clip_frames": args.clip_frames,
        }

    def subset(name: str | None) -> dict:
        if name is None:
            return {}
        if name == EVERY_SUBSET:
            return annotations
        chosen = {k: v for k, v in annotations.items() if (v.subset or "").lower() == name.lower()}
        if not chosen:
            found = sorted({str(v.subset) for v in annotations.values()})
            raise ValueError(f"no video of subset {name!r} in the annotations (subsets: {', '.join(found)})")
        return chosen

    train_videos, eval_videos = subset(train_subset), subset(eval_subset)
    if label_names is None and not class_agnostic:
        label_names = sorted({name for video in (train_videos or eval_videos).values() for name in video.labels})
    common = {"label_names": label_names, "class_agnostic": class_agnostic, "feature_dim": feature_dim, **timing}
    train_dataset = build_dataset(train_videos, features, processor, training=True, **common) if train_videos else None
    eval_dataset = build_dataset(eval_videos, features, processor, training=False, **common) if eval_videos else None
    reference = train_dataset if train_dataset is not None else eval_dataset
    feature_dim = len(reference[0]["input_features"][0])
    eval_truth = {video: ground_truth[video] for video in eval_videos}
    if class_agnostic:
        label_names = ["action"]
        eval_truth = {k: replace(v, labels=["action"] * len(v.labels)) for k, v in eval_truth.items()}
    return LoadedData(train_dataset, eval_dataset, eval_truth, list(label_names), feature_dim)


def add_output_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, resume: bool = True) -> None:
    """``--overwrite`` (and ``--resume``): what to do with an output folder holding a run."""
    choice = parser.add_mutually_exclusive_group()
    if resume:
        choice.add_argument(
            "--resume", action="store_true", help="continue the run in --output-dir from its newest checkpoint"
        )
    choice.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run in --output-dir (checkpoints included) and start afresh",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", required=True, help="where the model, logs and checkpoints are written")
    parser.add_argument(
        "--preset",
        choices=tuple(RECIPES),
        default="thumos14",
        help="the paper's recipe and windowing (default: thumos14)",
    )
    add_data_arguments(parser)
    parser.add_argument("--train-subset", help="subset to train on (default: the preset's, e.g. validation)")
    parser.add_argument("--eval-subset", help="subset to evaluate on (default: the preset's, e.g. test)")
    parser.add_argument("--class-agnostic", action="store_true", help="train one 'action' class (ActivityNet style)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="NAME_OR_DIR", help="start from a pretrained model (new label sets allowed)")
    model.add_argument("--num-queries", type=int, help="queries of a new model (default: the config's 40)")
    model.add_argument("--no-encoder-feedback", action="store_true", help="switch the encoder self-feedback off")
    model.add_argument("--no-decoder-feedback", action="store_true", help="switch the decoder self-feedback off")
    run = parser.add_argument_group("optimisation")
    run.add_argument("--epochs", type=int, help="override the recipe's epochs")
    run.add_argument("--batch-size", type=int, help="override the recipe's global batch size")
    run.add_argument("--learning-rate", type=float, help="override the recipe's learning rate")
    run.add_argument(
        "--seed", type=int, help="override the recipe's seed (initial weights, data order, dropout, synthetic data)"
    )
    run.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    run.add_argument("--gradient-accumulation-steps", type=int, default=1)
    run.add_argument("--checkpoint-every", type=int, default=0, help="save the training state every N steps")
    add_output_arguments(run)
    run.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (0: only at the end)")
    run.add_argument("--max-steps", type=int, help="stop after N optimiser steps")
    run.add_argument("--tensorboard", action="store_true", help="log to TensorBoard in OUTPUT_DIR/logs")
    run.add_argument(
        "--compile", action="store_true",
        help="run the encoder-decoder under torch.compile (matching and loss eager; the first steps compile)",
    )  # fmt: skip
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--push-to-hub", metavar="REPO_ID", help="push the final model, processor and card to the Hub")


def build_model(
    label_names: list[str],
    feature_dim: int,
    *,
    pretrained: str | None = None,
    encoder_feedback: bool = True,
    decoder_feedback: bool = True,
    num_queries: int | None = None,
):
    """A new model for the data, or a pretrained one with the data's label set (a new
    label set gets a freshly initialised class head; every other weight is kept)."""
    from .. import SelfDetrConfig, SelfDetrForActionDetection
    from ..model_loading import load_model

    id2label = dict(enumerate(label_names))
    overrides = {"encoder_feedback": encoder_feedback, "decoder_feedback": decoder_feedback}
    if pretrained:
        model = load_model(pretrained, id2label=id2label, label2id=None, ignore_mismatched_sizes=True, **overrides)
        if model.config.feature_dim != feature_dim:
            raise ValueError(
                f"model {pretrained} expects {model.config.feature_dim}-d features, the data has {feature_dim}"
            )
        return model
    if num_queries is not None:
        overrides["num_queries"] = num_queries
    return SelfDetrForActionDetection(SelfDetrConfig(feature_dim=feature_dim, id2label=id2label, **overrides))


def run_train(args: argparse.Namespace) -> int:
    training_args = AccelerateTrainingArguments(
        output_dir=args.output_dir,
        recipe=args.preset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        overwrite=args.overwrite,
        eval_every=args.eval_every,
        max_steps=args.max_steps,
        tensorboard=args.tensorboard,
        compile=args.compile,
        tiou_thresholds=TIOU_PRESETS[args.preset],
        progress=not args.no_progress,
    )
    if args.push_to_hub:
        check_repo_id(args.push_to_hub)
    check_output_dir(Path(args.output_dir), resume=args.resume, overwrite=args.overwrite)  # before loading data
    hide_progress_bars(args.no_progress)
    try:
        metrics = _load_and_train(args, training_args)
    except KeyboardInterrupt as stop:
        return report_interrupt("train", stop, how_to_continue(Path(args.output_dir)))
    report_run(args.output_dir, metrics, push_to=args.push_to_hub)
    return 0


def _load_and_train(args: argparse.Namespace, training_args: AccelerateTrainingArguments) -> dict[str, Any]:
    """The data, a model initialised with the run's seed, and the training run."""
    seed = training_args.resolved_recipe().seed
    preset = "synthetic" if args.synthetic else args.preset
    processor = SelfDetrProcessor.activitynet() if args.preset == "activitynet" else SelfDetrProcessor.thumos14()
    data = load_data(
        args,
        processor,
        train_subset=args.train_subset or PRESET_SUBSETS[preset][0],
        eval_subset=args.eval_subset or PRESET_SUBSETS[preset][1],
        class_agnostic=args.class_agnostic,
        synthetic_seed=seed,
    )
    set_seed(seed)  # the initial weights too, not only the training run
    model = build_model(
        data.label_names,
        data.feature_dim,
        pretrained=args.model,
        encoder_feedback=not args.no_encoder_feedback,
        decoder_feedback=not args.no_decoder_feedback,
        num_queries=args.num_queries,
    )
    return train(
        model,
        processor,
        data.train_dataset,
        training_args,
        eval_dataset=data.eval_dataset,
        eval_annotations=data.eval_annotations,
        model_card=model_card_renderer(
            model.config, dataset_name=preset, repo_id=args.push_to_hub or Path(args.output_dir).name
        ),
    )


def model_card_renderer(config, *, dataset_name: str, repo_id: str) -> Callable[[dict[str, Any]], str]:
    """The model card of a run on ``dataset_name`` (preset or ``synthetic``), from its metrics."""
    from ..model_card import render_model_card

    template = {"thumos14": "thumos14_i3d", "activitynet": "activitynet_i3d"}.get(dataset_name, "custom_dataset")
    shown_name = {"synthetic": "selfdetr_hf synthetic"}.get(dataset_name, dataset_name)
    return lambda metrics: render_model_card(
        template, repo_id=repo_id, config=config, metrics=metrics or None, dataset_name=shown_name
    )


def check_repo_id(repo_id: str) -> None:
    """Refuse a ``--push-to-hub`` repository id the Hub would refuse, before any training."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"--push-to-hub {repo_id!r}: {error}") from None


def report_run(output_dir: str | Path, metrics: dict, *, push_to: str | None) -> None:
    """Print the mAP table of a finished run and, when asked, push the run's model."""
    from accelerate import PartialState

    from ..hub import push_model

    if not PartialState().is_main_process:
        return
    if metrics:
        print(map_table(metrics["tiou_thresholds"], metrics["mAP"], metrics["average_mAP"]))
    if push_to:
        try:
            url = push_model(Path(output_dir), push_to)
        except OSError as error:
            raise OSError(f"{error}; the model is saved: push it with `selfdetr push {output_dir} {push_to}`") from None
        print(f"pushed to {url}")


def hide_progress_bars(hide: bool) -> None:
    """With ``--no-progress``, hide transformers' bars too (such as the one of saving a model)."""
    if hide:
        from transformers.utils.logging import disable_progress_bar

        disable_progress_bar()


def report_interrupt(command: str, stop: KeyboardInterrupt, how_on: str) -> int:
    """One line on stderr for a run stopped by a signal; the exit status 128 + signal."""
    from accelerate import PartialState

    if isinstance(stop, TrainingInterrupted):
        message, status = f"{stop}; {how_on}", 128 + stop.signal_number
    else:
        number = stop.signal_number if isinstance(stop, StoppedAtOnce) else signal.SIGINT
        message, status = f"{str(stop) or 'interrupted'}, nothing saved now; {how_on}", 128 + number
    if PartialState().is_main_process:
        print(f"selfdetr {command}: {message}", file=sys.stderr)
    return status


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-dir", default="demo_output", help="where everything is written (default: demo_output)"
    )
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"training epochs (default: {DEMO_EPOCHS})")
    parser.add_argument("--max-steps", type=int, help="stop after N optimiser steps (a quicker, shorter run)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data, the initial weights and the run (default: 0)"
    )
    add_output_arguments(parser, resume=False)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


DEMO_EPOCHS = 30
DEMO_FILES = ("metrics.json", "timeline.png")


def run_demo(args: argparse.Namespace) -> int:
    """Train a small Self-DETR on the synthetic dataset, evaluate, save, reload, detect, plot."""
    from .. import SelfDetrConfig, SelfDetrForActionDetection
    from ..evaluation.plots import plot_detection_timeline
    from ..inference import as_submission, detect

    started = time.perf_counter()
    output_dir = Path(args.output_dir)
    recipe = TrainingRecipe(
        learning_rate=5e-4, batch_size=16, epochs=args.epochs, lr_drop_epochs=(int(args.epochs * 0.75),), seed=args.seed
    )
    training_args = AccelerateTrainingArguments(
        output_dir=str(output_dir / "model"),
        recipe=recipe,
        overwrite=args.overwrite,
        eval_every=0,
        max_steps=args.max_steps,
        progress=not args.no_progress,
    )
    _claim_demo_output(output_dir, overwrite=args.overwrite)
    hide_progress_bars(args.no_progress)
    videos = make_synthetic_videos(96, num_classes=5, feature_dim=64, seed=args.seed)
    processor = SelfDetrProcessor.thumos14()
    train_dataset = videos.dataset(processor, subset="train", training=True)
    eval_dataset = videos.dataset(processor, subset="test", training=False)
    eval_annotations = {k: v for k, v in videos.annotations.items() if v.subset == "test"}
    print(
        f"synthetic THUMOS14-like data: {len(videos.annotations)} videos, {len(videos.label_names)} classes, "
        f"{len(train_dataset)} training windows, {len(eval_dataset)} test windows"
    )
    config = SelfDetrConfig(
        feature_dim=64, d_model=128, ffn_dim=256, num_queries=20, id2label=dict(enumerate(videos.label_names))
    )
    set_seed(args.seed)  # the initial weights too, not only the training run
    model = SelfDetrForActionDetection(config)
    try:
        metrics = train(
            model,
            processor,
            train_dataset,
            training_args,
            eval_dataset=eval_dataset,
            eval_annotations=eval_annotations,
            model_card=model_card_renderer(config, dataset_name="synthetic", repo_id=output_dir.name),
        )
    except KeyboardInterrupt as stop:
        return report_interrupt("demo", stop, "run it again with --overwrite")
    report_run(output_dir / "model", metrics, push_to=None)

    reloaded = SelfDetrForActionDetection.from_pretrained(output_dir / "model")
    reloaded_processor = SelfDetrProcessor.from_pretrained(output_dir / "model")
    video_id = next(iter(eval_annotations))
    detections = detect(
        reloaded, reloaded_processor, videos.features, feature_fps=videos.feature_fps, video_ids=[video_id]
    )
    found = as_submission(detections)[video_id]
    plot = plot_detection_timeline(
        eval_annotations[video_id],
        found,
        output_dir / "timeline.png",
        duration=eval_annotations[video_id].duration,
        title=f"{video_id}: detections (bars coloured by score) against ground truth",
    )
    shutil.copyfile(output_dir / "model" / "metrics.json", output_dir / "metrics.json")
    elapsed = time.perf_counter() - started
    best = found["scores"][:3].tolist() if len(found["scores"]) else []
    print(f"reloaded from {output_dir / 'model'}; {video_id}: {len(found['scores'])} detections, best scores {best}")
    print(f"timeline plot: {plot}")
    print(
        f"metrics: {output_dir / 'metrics.json'} (average mAP {metrics['average_mAP']:.4f}), "
        f"{elapsed:.0f} s in all on {torch.get_num_threads()} torch thread(s)"
    )
    return 0


def _claim_demo_output(output_dir: Path, *, overwrite: bool) -> None:
    """Refuse a folder holding a demo's results unless ``overwrite``; then delete the
    demo's own files (its model folder is cleared by the training run)."""
    found = [output_dir / name for name in DEMO_FILES if (output_dir / name).exists()]
    found += run_artefacts(output_dir / "model")
    if found and not overwrite:
        names = ", ".join(str(path.relative_to(output_dir)) for path in found)
        raise RunFolderError(
            f"{output_dir} already holds a demo's results ({names}): replace them with --overwrite, "
            "or choose another --output-dir"
        )
    for path in found:
        if path.name in DEMO_FILES and path.parent == output_dir:
            path.unlink()
