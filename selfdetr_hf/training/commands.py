"""`selfdetr train` and `selfdetr demo`, and the data options they share with `evaluate`."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..command_options import add_feature_arguments, feature_folder, positive_float
from ..data import build_dataset, load_annotations
from ..data.synthetic import make_synthetic_videos
from ..evaluation.detection_map import map_table
from ..processing_self_detr import SelfDetrProcessor
from .accelerate_loop import AccelerateTrainingArguments, train
from .recipes import RECIPES, TrainingRecipe

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


@dataclass
class LoadedData:
    """Datasets and ground truth for one run."""

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
) -> LoadedData:
    """Build the training and test window datasets from the command line's data options."""
    if args.synthetic:
        videos = make_synthetic_videos(
            None if args.synthetic_timelines else 96,
            num_classes=None if args.synthetic_timelines else 5,
            feature_dim=args.synthetic_feature_dim,
            timelines=args.synthetic_timelines or "thumos14",
        )
        annotations, features = videos.annotations, videos.features
        label_names = label_names or videos.label_names
        timing = {"feature_fps": videos.feature_fps}
    else:
        if not args.annotations or not args.features:
            raise ValueError("give --annotations and --features (or --synthetic)")
        annotations = load_annotations(args.annotations, video_info=args.video_info)
        features = feature_folder(args)
        timing = {
            "feature_fps": args.feature_fps,
            "feature_stride": args.feature_stride,
            "clip_frames": args.clip_frames,
        }

    def subset(name: str | None) -> dict:
        if name is None:
            return {}
        chosen = {k: v for k, v in annotations.items() if (v.subset or "").lower() == name.lower()}
        if not chosen:
            found = sorted({str(v.subset) for v in annotations.values()})
            raise ValueError(f"no video of subset {name!r} in the annotations (subsets: {', '.join(found)})")
        return chosen

    train_videos, eval_videos = subset(train_subset), subset(eval_subset)
    if label_names is None and not class_agnostic:
        label_names = sorted({name for video in (train_videos or eval_videos).values() for name in video.labels})
    common = {"label_names": label_names, "class_agnostic": class_agnostic, **timing}
    train_dataset = build_dataset(train_videos, features, processor, training=True, **common) if train_videos else None
    eval_dataset = build_dataset(eval_videos, features, processor, training=False, **common) if eval_videos else None
    reference = train_dataset if train_dataset is not None else eval_dataset
    feature_dim = len(reference[0]["input_features"][0])
    if class_agnostic:
        label_names = ["action"]
        eval_videos = {k: replace(v, labels=["action"] * len(v.labels)) for k, v in eval_videos.items()}
    return LoadedData(train_dataset, eval_dataset, eval_videos, list(label_names), feature_dim)


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
    run.add_argument("--seed", type=int, help="override the recipe's seed")
    run.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    run.add_argument("--gradient-accumulation-steps", type=int, default=1)
    run.add_argument("--checkpoint-every", type=int, default=0, help="save the training state every N steps")
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    run.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (0: only at the end)")
    run.add_argument("--max-steps", type=int, help="stop after N optimiser steps")
    run.add_argument("--tensorboard", action="store_true", help="log to TensorBoard in OUTPUT_DIR/logs")
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
    if num_queries:
        overrides["num_queries"] = num_queries
    return SelfDetrForActionDetection(SelfDetrConfig(feature_dim=feature_dim, id2label=id2label, **overrides))


def run_train(args: argparse.Namespace) -> int:
    preset = "synthetic" if args.synthetic else args.preset
    train_subset = args.train_subset or PRESET_SUBSETS[preset][0]
    eval_subset = args.eval_subset or PRESET_SUBSETS[preset][1]
    processor = SelfDetrProcessor.activitynet() if args.preset == "activitynet" else SelfDetrProcessor.thumos14()
    data = load_data(
        args, processor, train_subset=train_subset, eval_subset=eval_subset, class_agnostic=args.class_agnostic
    )
    model = build_model(
        data.label_names,
        data.feature_dim,
        pretrained=args.model,
        encoder_feedback=not args.no_encoder_feedback,
        decoder_feedback=not args.no_decoder_feedback,
        num_queries=args.num_queries,
    )
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
        eval_every=args.eval_every,
        max_steps=args.max_steps,
        tensorboard=args.tensorboard,
        progress=not args.no_progress,
    )
    metrics = train(
        model,
        processor,
        data.train_dataset,
        training_args,
        eval_dataset=data.eval_dataset,
        eval_annotations=data.eval_annotations,
    )
    finish_run(args.output_dir, model, metrics, dataset_name=preset, push_to=args.push_to_hub)
    return 0


def finish_run(output_dir: str | Path, model, metrics: dict, *, dataset_name: str, push_to: str | None) -> None:
    """Write the model card beside the saved model and, when asked, push everything."""
    from accelerate import PartialState

    from ..hub import push_model
    from ..model_card import render_model_card

    if not PartialState().is_main_process:
        return
    output_dir = Path(output_dir)
    template = {"thumos14": "thumos14_i3d", "activitynet": "activitynet_i3d"}.get(dataset_name, "custom_dataset")
    card = render_model_card(
        template,
        repo_id=push_to or output_dir.name,
        config=model.config,
        metrics=metrics or None,
        dataset_name={"synthetic": "selfdetr_hf synthetic"}.get(dataset_name, dataset_name),
    )
    (output_dir / "README.md").write_text(card, encoding="utf-8")
    if metrics:
        print(map_table(metrics["tiou_thresholds"], metrics["mAP"], metrics["average_mAP"]))
    if push_to:
        print(f"pushed to {push_model(output_dir, push_to)}")


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-dir", default="demo_output", help="where everything is written (default: demo_output)"
    )
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"training epochs (default: {DEMO_EPOCHS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the run (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


DEMO_EPOCHS = 30


def run_demo(args: argparse.Namespace) -> int:
    """Train a small Self-DETR on the synthetic dataset, evaluate, save, reload, detect, plot."""
    from .. import SelfDetrConfig, SelfDetrForActionDetection
    from ..evaluation.plots import plot_detection_timeline
    from ..inference import as_submission, detect

    started = time.perf_counter()
    output_dir = Path(args.output_dir)
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
    model = SelfDetrForActionDetection(config)
    recipe = TrainingRecipe(
        learning_rate=5e-4, batch_size=16, epochs=args.epochs, lr_drop_epochs=(int(args.epochs * 0.75),), seed=args.seed
    )
    metrics = train(
        model,
        processor,
        train_dataset,
        AccelerateTrainingArguments(
            output_dir=str(output_dir / "model"), recipe=recipe, eval_every=0, progress=not args.no_progress
        ),
        eval_dataset=eval_dataset,
        eval_annotations=eval_annotations,
    )
    finish_run(output_dir / "model", model, metrics, dataset_name="synthetic", push_to=None)

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
    elapsed = time.perf_counter() - started
    metrics["demo_seconds"] = elapsed
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    best = found["scores"][:3].tolist() if len(found["scores"]) else []
    print(f"reloaded from {output_dir / 'model'}; {video_id}: {len(found['scores'])} detections, best scores {best}")
    print(f"timeline plot: {plot}")
    print(f"metrics: {output_dir / 'metrics.json'} (average mAP {metrics['average_mAP']:.4f}), {elapsed:.0f} s in all")
    return 0
