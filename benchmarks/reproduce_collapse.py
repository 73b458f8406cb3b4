"""Reproduction study: does self-feedback keep attention diverse and raise mAP?

The paper's claim (Self-DETR, ICCV 2023, Sec. 3 and 4): DETR's self-attention collapses
on temporal action detection (every query reads the same few keys), and the self-feedback
losses keep it diverse and raise mAP. This script trains, with the same seed, data and
budget, four variants of one model:

- ``self_detr``: encoder and decoder self-feedback (the paper's method);
- ``detr``: neither (the DETR baseline);
- ``encoder_only`` / ``decoder_only``: one of the two feedback terms.

Data: synthetic features that follow the real THUMOS14 timelines
(``../shared/data/thumos14/thumos14.json``): the Validation videos for training, the Test
videos for evaluation, windows of 128 steps (training stride 32, test stride 96).
Reported per model: mAP at tIoU 0.3:0.1:0.7 and their mean, and the diversity (Eq. 10)
of every layer of encoder self-attention, decoder self-attention and cross-attention on
the test windows, and that of the guidance maps the self-feedback imitates (Eq. 2, 3);
over seeds, the mean and the sample standard deviation.

The default budget is CPU-sized (a small model, part of the videos, a few epochs);
``--full`` is the paper's setting (default model, 2048-d features, every video, the
THUMOS14 recipe of 120 epochs) for a GPU.

    python benchmarks/reproduce_collapse.py --json benchmarks/results/collapse_cpu.json
    python benchmarks/reproduce_collapse.py --full --seeds 42 --json benchmarks/results/collapse_full.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as transformers_logging

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrProcessor
from selfdetr_hf.data import SelfDetrDataCollator, VideoAnnotation, load_annotations, window_metadata
from selfdetr_hf.data.synthetic import make_synthetic_videos
from selfdetr_hf.evaluation.diagnostics import video_attention_diversity
from selfdetr_hf.evaluation.diversity import LayerDiversity, summarize_layer_diversity
from selfdetr_hf.self_feedback import decoder_guidance_map, encoder_guidance_map
from selfdetr_hf.training.accelerate_loop import AccelerateTrainingArguments, train
from selfdetr_hf.training.recipes import RECIPES, TrainingRecipe

DEFAULT_ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14" / "thumos14.json"
TRAIN_SUBSET, TEST_SUBSET = "Validation", "Test"
TIOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
DATA_SEED = 0  # the synthetic features are the same for every run; seeds vary the training
KIND_TITLES = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "cross-attention",
    "encoder_guidance": "encoder guidance map (Eq. 3, from the mean cross-attention)",
    "decoder_guidance": "decoder guidance maps (Eq. 2, from each layer's cross-attention)",
}
"""The measured maps: the three kinds of attention, and the guidance maps that the
self-feedback pulls encoder and decoder self-attention towards."""
MEASURED_KINDS = tuple(KIND_TITLES)
FINAL_LOSS_STEPS = 20  # the reported loss terms are averaged over the last optimiser steps

VARIANTS = {  # name -> (encoder_feedback, decoder_feedback)
    "self_detr": (True, True),
    "detr": (False, False),
    "encoder_only": (True, False),
    "decoder_only": (False, True),
}


@dataclass(frozen=True)
class StudyBudget:
    """What every variant of a study gets: the same model size, data and schedule.

    Attributes:
        model: `SelfDetrConfig` fields that differ from the paper's model (empty: the
            paper's 2 encoder / 4 decoder layers, d 256, 8 heads, 40 queries).
        feature_dim: channels of the synthetic features.
        train_videos / test_videos: how many Validation / Test videos, spread evenly over
            the sorted video ids (THUMOS14 numbers its Validation videos class by class);
            None: all of them.
        recipe: optimiser and schedule.
        max_steps: stop every run after this many optimiser steps (None: the recipe's epochs).
    """

    model: Mapping[str, Any] = field(default_factory=dict)
    feature_dim: int = 2048
    train_videos: int | None = None
    test_videos: int | None = None
    recipe: TrainingRecipe = RECIPES["thumos14"]
    max_steps: int | None = None

    def with_epochs(self, epochs: int) -> StudyBudget:
        """The budget over ``epochs`` epochs, learning-rate drops at the same fractions of training."""
        scale = epochs / self.recipe.epochs
        drops = tuple(max(1, round(epoch * scale)) for epoch in self.recipe.lr_drop_epochs)
        return replace(self, recipe=replace(self.recipe, epochs=epochs, lr_drop_epochs=drops))


CPU_BUDGET = StudyBudget(
    model={"d_model": 64, "num_attention_heads": 4, "ffn_dim": 128, "input_norm_groups": 8},
    feature_dim=64,
    train_videos=48,
    test_videos=32,
    recipe=TrainingRecipe(learning_rate=5e-4, epochs=5, lr_drop_epochs=(4,)),
)
FULL_BUDGET = StudyBudget()


@dataclass
class StudyData:
    """Windows and ground truth shared by every run of a study."""

    processor: SelfDetrProcessor
    train_dataset: Any
    eval_dataset: Any
    eval_annotations: dict[str, VideoAnnotation]
    label_names: list[str]


def spread_selection(video_ids: Sequence[str], count: int | None) -> list[str]:
    """``count`` ids evenly spaced over the sorted ``video_ids`` (all of them for None)."""
    ordered = sorted(video_ids)
    if count is None or count >= len(ordered):
        return ordered
    return [ordered[index * len(ordered) // count] for index in range(count)]


def load_study_data(annotations_path: str | Path, budget: StudyBudget) -> StudyData:
    """Synthetic features on the real timelines of the budget's Validation and Test videos."""
    annotations = load_annotations(annotations_path)
    chosen = {}
    for subset, count in ((TRAIN_SUBSET, budget.train_videos), (TEST_SUBSET, budget.test_videos)):
        ids = [video_id for video_id, video in annotations.items() if video.subset == subset]
        if not ids:
            raise ValueError(f"{annotations_path}: no video of subset {subset!r}")
        chosen.update({video_id: annotations[video_id] for video_id in spread_selection(ids, count)})
    videos = make_synthetic_videos(
        None, num_classes=None, feature_dim=budget.feature_dim, timelines=chosen, seed=DATA_SEED
    )
    processor = SelfDetrProcessor.thumos14()
    return StudyData(
        processor=processor,
        train_dataset=videos.dataset(processor, subset=TRAIN_SUBSET, training=True),
        eval_dataset=videos.dataset(processor, subset=TEST_SUBSET, training=False),
        eval_annotations={k: v for k, v in videos.annotations.items() if v.subset == TEST_SUBSET},
        label_names=videos.label_names,
    )


def build_model(budget: StudyBudget, label_names: Sequence[str], variant: str, seed: int) -> SelfDetrForActionDetection:
    """The variant's model; the feedback switches add no weight, so every variant starts
    from the same weights for a given seed."""
    encoder_feedback, decoder_feedback = VARIANTS[variant]
    torch.manual_seed(seed)
    config = SelfDetrConfig(
        feature_dim=budget.feature_dim,
        id2label=dict(enumerate(label_names)),
        encoder_feedback=encoder_feedback,
        decoder_feedback=decoder_feedback,
        **budget.model,
    )
    return SelfDetrForActionDetection(config)


@torch.no_grad()
def diversity_on_test_windows(
    model: SelfDetrForActionDetection, eval_dataset: Any, batch_size: int = 16
) -> dict[str, dict[str, LayerDiversity]]:
    """Diversity per layer of every kind of attention, and of the guidance maps, on the test windows.

    Each window's head-averaged maps are cropped to its valid steps and measured (Eq. 10,
    candidates the rows of A, and the rows of A^T); a video's value is the mean over its
    windows, and the result the mean and std over videos. The guidance maps are computed
    from the cross-attention whether or not the model was trained with self-feedback:
    ``encoder_guidance`` one ``(T, T)`` map (Eq. 3), ``decoder_guidance`` one ``(Nq, Nq)``
    map per decoder layer (Eq. 2).

    Returns:
        ``{"diversity": {kind: LayerDiversity}, "diversity_transposed": {kind: LayerDiversity}}``
        with the kinds of `MEASURED_KINDS`.
    """
    model.eval()
    device = next(model.parameters()).device
    collator = SelfDetrDataCollator()
    video_ids = [row["video_id"] for row in window_metadata(eval_dataset)]
    per_video: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {
        "diversity": defaultdict(lambda: defaultdict(list)),
        "diversity_transposed": defaultdict(lambda: defaultdict(list)),
    }
    for start in range(0, len(eval_dataset), batch_size):
        rows = [eval_dataset[index] for index in range(start, min(start + batch_size, len(eval_dataset)))]
        batch = collator(rows)
        outputs = model(
            input_features=batch["input_features"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            output_attentions=True,
        )
        for index, valid in enumerate(batch["attention_mask"].sum(-1).tolist()):
            cross = [layer[index, :, :valid] for layer in outputs.cross_attentions]  # L_d x (Nq, t)
            window = {
                "encoder": [layer[index, :valid, :valid] for layer in outputs.encoder_attentions],
                "decoder": [layer[index] for layer in outputs.decoder_attentions],
                "cross": cross,
                "encoder_guidance": [encoder_guidance_map(torch.stack(cross)[:, None])[0]],
                "decoder_guidance": [decoder_guidance_map(layer) for layer in cross],
            }
            for name, transposed in (("diversity", False), ("diversity_transposed", True)):
                for kind, values in video_attention_diversity([window], transposed=transposed).items():
                    per_video[name][video_ids[start + index]][kind].append(values)
    return {
        name: {
            kind: summarize_layer_diversity([np.mean(kinds[kind], axis=0) for kinds in videos.values()])
            for kind in MEASURED_KINDS
        }
        for name, videos in per_video.items()
    }


def run_variant(data: StudyData, budget: StudyBudget, variant: str, seed: int) -> dict[str, Any]:
    """Train one variant with one seed, evaluate mAP and measure attention diversity."""
    model = build_model(budget, data.label_names, variant, seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = AccelerateTrainingArguments(
            output_dir=output_dir,
            recipe=replace(budget.recipe, seed=seed),
            eval_every=0,
            max_steps=budget.max_steps,
            progress=False,
            tiou_thresholds=TIOU_THRESHOLDS,
        )
        metrics = train(
            model,
            data.processor,
            data.train_dataset,
            arguments,
            eval_dataset=data.eval_dataset,
            eval_annotations=data.eval_annotations,
        )
        log = [json.loads(line) for line in (Path(output_dir) / "train_log.jsonl").read_text().splitlines()]
    train_seconds = time.perf_counter() - started - metrics["eval_seconds"]
    started = time.perf_counter()
    diversity = diversity_on_test_windows(model, data.eval_dataset)
    encoder_feedback, decoder_feedback = VARIANTS[variant]
    return {
        "variant": variant,
        "seed": seed,
        "encoder_feedback": encoder_feedback,
        "decoder_feedback": decoder_feedback,
        "steps": len(log),
        "final_losses": {
            name: float(np.mean([record[name] for record in log[-FINAL_LOSS_STEPS:]]))
            for name in log[-1]
            if name not in ("step", "epoch", "learning_rate")
        },
        "mAP": dict(zip(map(str, metrics["tiou_thresholds"]), metrics["mAP"])),
        "average_mAP": metrics["average_mAP"],
        **{name: {kind: d.to_dict() for kind, d in kinds.items()} for name, kinds in diversity.items()},
        "train_seconds": train_seconds,
        "eval_seconds": metrics["eval_seconds"],
        "diversity_seconds": time.perf_counter() - started,
    }


def mean_and_spread(values: Sequence[Any]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for one value) over seeds, along the first axis."""
    array = np.asarray(values, dtype=np.float64)
    std = array.std(axis=0, ddof=1) if len(array) > 1 else np.zeros_like(array[0])
    return {"mean": array.mean(axis=0).tolist(), "std": std.tolist(), "values": array.tolist()}


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per variant, mean and spread over seeds of mAP and of each layer's diversity."""
    summary = {}
    for variant in dict.fromkeys(run["variant"] for run in runs):
        chosen = [run for run in runs if run["variant"] == variant]
        summary[variant] = {
            "seeds": [run["seed"] for run in chosen],
            "average_mAP": mean_and_spread([run["average_mAP"] for run in chosen]),
            "mAP": {tiou: mean_and_spread([run["mAP"][tiou] for run in chosen]) for tiou in chosen[0]["mAP"]},
            **{
                name: {kind: mean_and_spread([run[name][kind]["mean"] for run in chosen]) for kind in MEASURED_KINDS}
                for name in ("diversity", "diversity_transposed")
            },
        }
    return summary


def environment(device: str) -> dict[str, Any]:
    """The machine and software the numbers come from, and how busy the machine was (load
    average when the study ends: other processes share small machines)."""
    info = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "load_average_1_5_15_min": os.getloadavg(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_study(
    annotations_path: str | Path,
    budget: StudyBudget,
    *,
    variants: Sequence[str] = tuple(VARIANTS),
    seeds: Sequence[int] = (0,),
    device: str = "cpu",
    json_path: str | Path | None = None,
) -> dict[str, Any]:
    """Train every variant with every seed on the same data and budget; collect the numbers.

    With ``json_path``, writes the report there and the diversity plots beside it
    (`plot_summary`).

    Returns:
        ``{"environment", "budget", "data", "runs": [per variant and seed], "summary":
        {variant: mean and spread over seeds}}``.
    """
    unknown = [variant for variant in variants if variant not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose among {', '.join(VARIANTS)}")
    started = time.perf_counter()
    data = load_study_data(annotations_path, budget)
    print(
        f"{len(data.train_dataset)} training windows ({budget.train_videos or 'all'} {TRAIN_SUBSET} videos), "
        f"{len(data.eval_dataset)} test windows ({len(data.eval_annotations)} {TEST_SUBSET} videos), "
        f"{len(data.label_names)} classes",
        flush=True,
    )
    runs = []
    for seed in seeds:
        for variant in variants:
            run = run_variant(data, budget, variant, seed)
            runs.append(run)
            print(
                f"{variant:>13s} seed {seed}: average mAP {100 * run['average_mAP']:5.2f} "
                f"({run['steps']} steps, {run['train_seconds'] + run['eval_seconds'] + run['diversity_seconds']:.0f} s)",
                flush=True,
            )
    report = {
        "environment": environment(device),
        "budget": {**asdict(budget), "model": dict(budget.model)},
        "data": {
            "annotations": str(annotations_path),
            "data_seed": DATA_SEED,
            "train_videos": sorted({row["video_id"] for row in window_metadata(data.train_dataset)}),
            "test_videos": sorted(data.eval_annotations),
            "train_windows": len(data.train_dataset),
            "test_windows": len(data.eval_dataset),
            "classes": data.label_names,
        },
        "runs": runs,
        "summary": summarize_runs(runs),
        "total_seconds": time.perf_counter() - started,
    }
    if json_path is not None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
        plot_summary(report, json_path)
    return report


def plot_summary(report: Mapping[str, Any], json_path: Path) -> list[Path]:
    """Diversity per layer, variants side by side, bars the mean and whiskers the std over
    seeds: ``<stem>_diversity.png`` for the attention maps, ``<stem>_guidance.png`` for the
    guidance maps."""
    from selfdetr_hf.evaluation.plots import plot_layer_diversity

    num_videos = len(report["data"]["test_videos"])
    seeds = len(next(iter(report["summary"].values()))["seeds"])
    figures = {
        "diversity": ("attention diversity", {"encoder": "encoder", "decoder": "decoder", "cross": "cross"}),
        "guidance": (
            "diversity of the self-feedback guidance",
            {"encoder_guidance": "encoder guidance (Eq. 3)", "decoder_guidance": "decoder guidance (Eq. 2)"},
        ),
    }
    paths = []
    for suffix, (subject, panels) in figures.items():
        models = {
            variant: {title: _over_seeds(summary["diversity"][kind], num_videos) for kind, title in panels.items()}
            for variant, summary in report["summary"].items()
        }
        title = f"{subject} per layer on {num_videos} test videos (mean and std over {seeds} seed(s))"
        paths.append(plot_layer_diversity(models, json_path.with_name(f"{json_path.stem}_{suffix}.png"), title=title))
    return paths


def _over_seeds(values: Mapping[str, Any], num_videos: int) -> LayerDiversity:
    """A `mean_and_spread` summary of diversity per layer as the `LayerDiversity` plots take."""
    return LayerDiversity(np.array(values["mean"]), np.array(values["std"]), num_videos)


def markdown_tables(report: Mapping[str, Any]) -> str:
    """The summary as Markdown: mAP (%) per variant, then diversity per layer and kind."""
    summary = report["summary"]
    thresholds = list(next(iter(summary.values()))["mAP"])
    lines = [
        "| variant | seeds | " + " | ".join(f"mAP@{t}" for t in thresholds) + " | avg mAP (0.3:0.7) |",
        "|---|---|" + "---|" * (len(thresholds) + 1),
    ]
    for variant, values in summary.items():
        cells = [_percent(values["mAP"][t]) for t in thresholds] + [_percent(values["average_mAP"])]
        lines.append(f"| {variant} | {len(values['seeds'])} | " + " | ".join(cells) + " |")
    for kind in MEASURED_KINDS:
        layers = len(next(iter(summary.values()))["diversity"][kind]["mean"])
        lines += [
            "",
            f"Diversity (Eq. 10) of the {KIND_TITLES[kind]}, per layer:",
            "",
            "| variant | " + " | ".join(f"layer {i + 1}" for i in range(layers)) + " |",
            "|---|" + "---|" * layers,
        ]
        for variant, values in summary.items():
            diversity = values["diversity"][kind]
            cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(diversity["mean"], diversity["std"])]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _percent(values: Mapping[str, Any]) -> str:
    return f"{100 * values['mean']:.2f} ± {100 * values['std']:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS, help="THUMOS14 timelines")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="write every number here, the plots beside it")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2; 42 with --full)")
    parser.add_argument(
        "--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS), help="which to train (default: all)"
    )
    parser.add_argument("--epochs", type=int, help="training epochs (default: 5, 120 with --full)")
    parser.add_argument(
        "--feature-dim", type=int, help="channels of the synthetic features (default: 64, 2048 with --full)"
    )
    parser.add_argument(
        "--full", action="store_true", help="the paper's model, recipe (120 epochs) and every video; meant for a GPU"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda with --full, cpu otherwise")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for small models on a shared CPU)"
    )
    args = parser.parse_args(argv)

    if not args.annotations.is_file():
        print(
            f"reproduce_collapse: THUMOS14 timelines not found at {args.annotations}; this study needs the real "
            "annotations (../shared/data beside the project, or --annotations FILE). Nothing was run.",
            file=sys.stderr,
        )
        return 2
    device = args.device or ("cuda" if args.full else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("reproduce_collapse: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    if device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"
    torch.set_num_threads(args.threads)
    transformers_logging.disable_progress_bar()

    budget = FULL_BUDGET if args.full else CPU_BUDGET
    if args.epochs is not None:
        budget = budget.with_epochs(args.epochs)
    if args.feature_dim is not None:
        budget = replace(budget, feature_dim=args.feature_dim)
    seeds = args.seeds or ([42] if args.full else [0, 1, 2])
    report = run_study(
        args.annotations, budget, variants=args.variants, seeds=seeds, device=device, json_path=args.json
    )
    print()
    print(markdown_tables(report))
    print(
        f"\n{report['total_seconds']:.0f} s in all on {report['environment']['processor']}, torch {torch.__version__}"
    )
    if args.json is not None:
        print(
            f"wrote {args.json} and the plots beside it: {args.json.stem}_diversity.png, {args.json.stem}_guidance.png"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
