"""Reproduction study: does self-feedback keep attention diverse and raise mAP?

The paper (Self-DETR, ICCV 2023) claims that (1) the self-attention of a trained DETR for
temporal action detection collapses (every query reads the same few keys) and (2) the
self-feedback losses keep it diverse and raise mAP. This script tests both on synthetic
data that it regenerates, with a fixed protocol (`PROTOCOL`):

- the paper's model (d 256, 8 heads, FFN 1024, 2 encoder / 4 decoder layers, 40 queries,
  the paper's loss weights), AdamW at the paper's rate, gradient clipping 0.1, the rate
  divided by 10 at 2/3 and 5/6 of training, on 64-d features (the input width is the only
  reduction: it saves time and the model does not depend on it past the input projection);
- two tasks: ``signature`` (each class its own latent signature, confusable pairs; a step
  tells its class) and ``phase_order`` (every action made of the same three sub-phases, the
  class given by their order; a single step does not tell the class, measured by
  `linear_probe`);
- four variants, ``detr`` (no feedback), ``self_detr`` (both feedback losses),
  ``encoder_only`` and ``decoder_only``, with the same data, seeds and initial weights (the
  feedback adds no weight): 5 seeds for ``detr`` and ``self_detr``, 3 for the others;
- along training, every `Protocol.diversity_every` steps, the diversity (Eq. 10) of each
  layer's encoder self-, decoder self- and cross-attention and of the guidance maps (Eq. 2,
  3) on fixed test windows; mAP (tIoU 0.3:0.1:0.7) every `Protocol.map_every` steps;
- analysis fixed beforehand (`analyse`): mean and standard deviation over seeds, paired
  differences to ``detr`` per seed with a bootstrap interval and a sign test, and collapse
  defined as a layer's diversity at the end of training below half its peak.

Runs are independent and cached, one JSON per run; an interrupted study resumes where it
stopped, and shards let several processes share the runs:

    python benchmarks/reproduce_collapse.py run --shard 0/2 &   # and --shard 1/2 beside it
    python benchmarks/reproduce_collapse.py report              # summary.json, plots, tables
    python benchmarks/reproduce_collapse.py probe               # per-step linear probes
    python benchmarks/reproduce_collapse.py tune --noise-std 0.3  # the baseline on other signals
    python benchmarks/reproduce_collapse.py run --quick --out /tmp/quick  # a few steps: the pipeline works

On a GPU, the same protocol with twice the seeds, eight processes sharing the device:

    for i in 0 1 2 3 4 5 6 7; do python benchmarks/reproduce_collapse.py run --gpu --shard $i/8 & done; wait
    python benchmarks/reproduce_collapse.py report --gpu
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrProcessor
from selfdetr_hf.data import SelfDetrDataCollator
from selfdetr_hf.data.synthetic import SignalSettings, SyntheticVideos, make_synthetic_videos
from selfdetr_hf.evaluation.diagnostics import video_attention_diversity
from selfdetr_hf.self_feedback import decoder_guidance_map, encoder_guidance_map
from selfdetr_hf.training.accelerate_loop import evaluate
from selfdetr_hf.training.recipes import TrainingRecipe, build_optimizer

RESULTS_DIR = Path(__file__).resolve().parent / "results" / "collapse"
TIOU_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
VARIANTS = {  # name -> (encoder_feedback, decoder_feedback)
    "detr": (False, False),
    "self_detr": (True, True),
    "encoder_only": (True, False),
    "decoder_only": (False, True),
}
KINDS = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "cross-attention",
    "encoder_guidance": "encoder guidance (Eq. 3)",
    "decoder_guidance": "decoder guidance (Eq. 2)",
}
"""The measured maps: three kinds of attention and the guidance maps the feedback imitates."""
SELF_ATTENTION_KINDS = ("encoder", "decoder")
COLLAPSE_FRACTION = 0.5  # collapse: a layer's final diversity below this fraction of its peak
BOOTSTRAP_SAMPLES = 10_000


@dataclass(frozen=True)
class Task:
    """One synthetic task: how classes show in the features and how hard the signal is."""

    class_structure: str
    signal: SignalSettings


@dataclass(frozen=True)
class Protocol:
    """Everything that defines the study; results record its hash and are never mixed
    across protocols.

    Attributes:
        tasks: name -> `Task`.
        seeds: variant -> training seeds (model initialisation, data order, dropout).
        num_videos / num_classes / feature_dim / feature_fps / max_duration / test_fraction:
            the synthetic videos (`make_synthetic_videos`), the same for every run.
        window_size / train_stride / test_stride: windows in feature steps.
        batch_size / steps / learning_rate / weight_decay / grad_clip / lr_drops: training;
            ``lr_drops`` are fractions of ``steps`` at which the rate is divided by 10.
        diversity_every / map_every: measurement intervals in optimiser steps.
        diversity_windows: test windows (evenly spread) on which diversity is measured.
        data_seed: seed of the synthetic videos.
    """

    tasks: Mapping[str, Task]
    seeds: Mapping[str, tuple[int, ...]]
    num_videos: int = 160
    num_classes: int = 6
    feature_dim: int = 64
    feature_fps: float = 5.0
    max_duration: float = 60.0
    test_fraction: float = 0.25
    window_size: int = 64
    train_stride: int = 16
    test_stride: int = 48
    batch_size: int = 2
    steps: int = 1500
    learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    lr_drops: tuple[float, ...] = (2 / 3, 5 / 6)
    diversity_every: int = 100
    map_every: int = 300
    diversity_windows: int = 24
    data_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def runs(self, tasks: Sequence[str] | None = None) -> list[tuple[str, str, int]]:
        """``(task, variant, seed)`` of every run: per task, the variants with the most seeds
        first (the main comparison), seed by seed, so that a partial study stays paired."""
        groups = sorted({len(seeds) for seeds in self.seeds.values()}, reverse=True)
        return [
            (task, variant, seed)
            for task in (tasks or self.tasks)
            for size in groups
            for seed in sorted(set(itertools.chain.from_iterable(self.seeds.values())))
            for variant in self.seeds
            if len(self.seeds[variant]) == size and seed in self.seeds[variant]
            if seed in self.seeds[variant]
        ]


TUNED_SIGNAL = SignalSettings(noise_std=0.25, background_leak=0.2, edge_softness=0.1, boundary_strength=2.0)
"""The signal on which the ``detr`` baseline (seed 0) reaches 49.3% average mAP at this
budget; the default `SignalSettings` gave 21.9% (the tuning runs are in RESULTS.md)."""
TASKS = {
    "signature": Task("signature", TUNED_SIGNAL),
    "phase_order": Task("phase_order", TUNED_SIGNAL),
}
PROTOCOL = Protocol(
    tasks=TASKS,
    seeds={"detr": (0, 1, 2, 3, 4), "self_detr": (0, 1, 2, 3, 4), "encoder_only": (0, 1, 2), "decoder_only": (0, 1, 2)},
)
GPU_PROTOCOL = replace(
    PROTOCOL,
    seeds={
        "detr": tuple(range(10)),
        "self_detr": tuple(range(10)),
        "encoder_only": tuple(range(5)),
        "decoder_only": tuple(range(5)),
    },
)
"""The same study with twice the seeds, for a GPU (``--gpu``): its runs share nothing with
the CPU study's, and go to ``<out>/gpu`` by default."""
QUICK = replace(
    PROTOCOL,
    seeds={"detr": (0,), "self_detr": (0,)},
    num_videos=8,
    steps=4,
    diversity_every=2,
    map_every=4,
    diversity_windows=3,
)
"""A few steps on a few videos: checks the pipeline and the JSON schema, measures nothing."""


def make_videos(protocol: Protocol, task: str) -> SyntheticVideos:
    """The task's synthetic videos (subsets ``train`` and ``test``)."""
    spec = protocol.tasks[task]
    return make_synthetic_videos(
        protocol.num_videos,
        num_classes=protocol.num_classes,
        feature_dim=protocol.feature_dim,
        seed=protocol.data_seed,
        max_duration=protocol.max_duration,
        feature_fps=protocol.feature_fps,
        test_fraction=protocol.test_fraction,
        signal=spec.signal,
        class_structure=spec.class_structure,
    )


@dataclass
class TaskData:
    """Windows and ground truth shared by every run of a task."""

    processor: SelfDetrProcessor
    train_dataset: Any
    eval_dataset: Any
    eval_annotations: dict[str, Any]
    diversity_rows: list[dict[str, Any]]
    label_names: list[str]


def load_task(protocol: Protocol, task: str) -> TaskData:
    videos = make_videos(protocol, task)
    processor = SelfDetrProcessor(
        window_size=protocol.window_size,
        train_window_stride=protocol.train_stride,
        test_window_stride=protocol.test_stride,
    )
    eval_dataset = videos.dataset(processor, subset="test", training=False)
    spread = np.linspace(0, len(eval_dataset) - 1, min(protocol.diversity_windows, len(eval_dataset)))
    return TaskData(
        processor=processor,
        train_dataset=videos.dataset(processor, subset="train", training=True),
        eval_dataset=eval_dataset,
        eval_annotations={k: v for k, v in videos.annotations.items() if v.subset == "test"},
        diversity_rows=[eval_dataset[int(index)] for index in np.unique(spread.round())],
        label_names=videos.label_names,
    )


def build_model(protocol: Protocol, label_names: Sequence[str], variant: str, seed: int) -> SelfDetrForActionDetection:
    """The paper's model with the variant's feedback switches; the same weights for every
    variant of a seed."""
    encoder_feedback, decoder_feedback = VARIANTS[variant]
    torch.manual_seed(seed)
    config = SelfDetrConfig(
        feature_dim=protocol.feature_dim,
        id2label=dict(enumerate(label_names)),
        encoder_feedback=encoder_feedback,
        decoder_feedback=decoder_feedback,
    )
    return SelfDetrForActionDetection(config)


@torch.no_grad()
def attention_diversity_per_layer(model: SelfDetrForActionDetection, rows: Sequence[Mapping[str, Any]]) -> dict:
    """``{kind: [diversity per layer]}``, the mean over ``rows`` (windows) of Eq. 10 on each
    window's head-averaged maps cropped to its valid steps; the guidance maps are computed
    from the cross-attention whatever the variant."""
    was_training = model.training
    model.eval()
    batch = SelfDetrDataCollator()(
        [{k: v for k, v in row.items() if k not in ("class_labels", "segments")} for row in rows]
    )
    device = next(model.parameters()).device
    outputs = model(
        input_features=batch["input_features"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        output_attentions=True,
    )
    windows = []
    for index, valid in enumerate(batch["attention_mask"].sum(-1).tolist()):
        cross = [layer[index, :, :valid].float().cpu() for layer in outputs.cross_attentions]  # L_d x (Nq, t)
        windows.append(
            {
                "encoder": [layer[index, :valid, :valid].float().cpu() for layer in outputs.encoder_attentions],
                "decoder": [layer[index].float().cpu() for layer in outputs.decoder_attentions],
                "cross": cross,
                "encoder_guidance": [encoder_guidance_map(torch.stack(cross)[:, None])[0]],
                "decoder_guidance": [decoder_guidance_map(layer) for layer in cross],
            }
        )
    model.train(was_training)
    return {kind: values.tolist() for kind, values in video_attention_diversity(windows).items()}


def learning_rate_factor(step: int, protocol: Protocol) -> float:
    """x0.1 at each of the protocol's drops (fractions of the budget), as the paper's step schedule."""
    return 0.1 ** sum(step >= round(fraction * protocol.steps) for fraction in protocol.lr_drops)


def train_run(protocol: Protocol, data: TaskData, task: str, variant: str, seed: int, device: str = "cpu") -> dict:
    """Train one variant with one seed, measuring diversity and mAP along the way."""
    model = build_model(protocol, data.label_names, variant, seed).to(device)
    recipe = TrainingRecipe(
        learning_rate=protocol.learning_rate, weight_decay=protocol.weight_decay, batch_size=protocol.batch_size
    )
    optimizer = build_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(step, protocol))
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        data.train_dataset,
        batch_size=protocol.batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=SelfDetrDataCollator(),
        drop_last=True,
    )
    accelerator = Accelerator(cpu=device == "cpu")
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    diversity_curve, map_curve, losses = [], [], []
    train_seconds = measure_seconds = 0.0

    def measure(step: int) -> None:
        nonlocal measure_seconds
        started = time.perf_counter()
        if step % protocol.diversity_every == 0 or step == protocol.steps:
            diversity_curve.append({"step": step, **attention_diversity_per_layer(model, data.diversity_rows)})
        if step % protocol.map_every == 0 and step > 0 or step == protocol.steps:
            metrics = evaluate(
                model, data.processor, data.eval_dataset, data.eval_annotations, accelerator, TIOU_THRESHOLDS
            )
            map_curve.append({"step": step, "average_mAP": metrics["average_mAP"], "mAP": metrics["mAP"]})
            model.train()
        measure_seconds += time.perf_counter() - started

    model.train()
    measure(0)
    for step in range(1, protocol.steps + 1):
        started = time.perf_counter()
        batch = next(batches)
        batch = {
            k: [{n: t.to(device) for n, t in target.items()} for target in v] if k == "labels" else v.to(device)
            for k, v in batch.items()
        }
        outputs = model(**batch)
        outputs.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), protocol.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append({"loss": outputs.loss.item(), **{k: v.item() for k, v in outputs.loss_dict.items()}})
        train_seconds += time.perf_counter() - started
        measure(step)
    final = map_curve[-1]
    return {
        "task": task,
        "variant": variant,
        "seed": seed,
        "protocol": protocol.digest(),
        "encoder_feedback": VARIANTS[variant][0],
        "decoder_feedback": VARIANTS[variant][1],
        "steps": protocol.steps,
        "average_mAP": final["average_mAP"],
        "mAP": dict(zip(map(str, TIOU_THRESHOLDS), final["mAP"])),
        "diversity": diversity_curve,
        "map_curve": map_curve,
        "loss_curve": [
            {"step": end, **{k: float(np.mean([r[k] for r in losses[end - 100 : end]])) for k in losses[0]}}
            for end in range(100, protocol.steps + 1, 100)
        ],
        "train_seconds": train_seconds,
        "measure_seconds": measure_seconds,
        "seconds_per_step": train_seconds / protocol.steps,
        "environment": environment(device),
    }


def run_path(out: Path, task: str, variant: str, seed: int) -> Path:
    return out / "runs" / task / f"{variant}_seed{seed}.json"


def run_study(
    protocol: Protocol,
    out: Path,
    *,
    tasks: Sequence[str] | None = None,
    shard: tuple[int, int] = (0, 1),
    device: str = "cpu",
) -> list[Path]:
    """Train every run of this shard that has no result yet; one JSON per run, written when
    the run ends (an interrupted run starts again)."""
    index, count = shard
    todo = [run for position, run in enumerate(protocol.runs(tasks)) if position % count == index]
    written, loaded = [], {}
    for task, variant, seed in todo:
        path = run_path(out, task, variant, seed)
        if path.exists():
            recorded = json.loads(path.read_text())["protocol"]
            if recorded != protocol.digest():
                raise SystemExit(
                    f"reproduce_collapse: {path} was measured under another protocol ({recorded}); "
                    "move it away or choose another --out"
                )
            continue
        if task not in loaded:
            loaded = {task: load_task(protocol, task)}
        started = time.perf_counter()
        result = train_run(protocol, loaded[task], task, variant, seed, device)
        result["wall_seconds"] = time.perf_counter() - started
        write_json(path, result)
        written.append(path)
        print(
            f"{task:>11s} {variant:>12s} seed {seed}: average mAP {100 * result['average_mAP']:5.2f} "
            f"({result['wall_seconds']:.0f} s, {1000 * result['seconds_per_step']:.0f} ms/step)",
            flush=True,
        )
    return written


def write_json(path: Path, data: Any) -> None:
    """Write through a temporary file, so that a killed process never leaves half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
    partial.replace(path)


def load_runs(protocol: Protocol, out: Path) -> list[dict]:
    runs = []
    for task, variant, seed in protocol.runs():
        path = run_path(out, task, variant, seed)
        if path.exists():
            run = json.loads(path.read_text())
            if run["protocol"] == protocol.digest():
                runs.append(run)
    return runs


# ----------------------------------------------------------------------------- analysis


def mean_and_std(values: Sequence[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
        "values": array.tolist(),
    }


def paired_difference(treated: Sequence[float], baseline: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Per-seed differences ``treated - baseline``: mean, a percentile bootstrap 95% interval
    of the mean, and the two-sided sign-test p-value (ties dropped)."""
    differences = np.asarray(treated, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    rng = np.random.default_rng(seed)
    resampled = rng.choice(differences, size=(BOOTSTRAP_SAMPLES, len(differences))).mean(axis=1)
    positive, negative = int((differences > 0).sum()), int((differences < 0).sum())
    return {
        "differences": differences.tolist(),
        "mean": float(differences.mean()),
        "bootstrap_95": [float(np.percentile(resampled, 2.5)), float(np.percentile(resampled, 97.5))],
        "positive": positive,
        "negative": negative,
        "sign_test_p": sign_test_p(positive, negative),
    }


def sign_test_p(positive: int, negative: int) -> float:
    """Two-sided exact binomial test of ``positive`` successes in ``positive + negative`` at 1/2."""
    trials = positive + negative
    if trials == 0:
        return 1.0
    tail = sum(math.comb(trials, k) for k in range(min(positive, negative) + 1)) / 2**trials
    return min(1.0, 2 * tail)


def collapsed_layers(run: Mapping[str, Any]) -> dict[str, list[int]]:
    """Per self-attention kind, the layers (1-based) whose final diversity is below
    `COLLAPSE_FRACTION` of their peak along training."""
    found = {}
    for kind in SELF_ATTENTION_KINDS:
        curve = np.array([point[kind] for point in run["diversity"]])  # (measurements, L)
        final, peak = curve[-1], curve.max(axis=0)
        found[kind] = [layer + 1 for layer in np.flatnonzero(final < COLLAPSE_FRACTION * peak)]
    return found


def analyse(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The pre-registered analysis, per task: final mAP and diversity per variant over seeds,
    paired differences to ``detr``, and the collapsed layers of every run."""
    summary = {}
    for task in dict.fromkeys(run["task"] for run in runs):
        by_variant = {}
        for run in runs:
            if run["task"] == task:
                by_variant.setdefault(run["variant"], {})[run["seed"]] = run
        entry = {"variants": {}, "paired_to_detr": {}, "collapse": {}}
        for variant, seeded in by_variant.items():
            chosen = [seeded[seed] for seed in sorted(seeded)]
            entry["variants"][variant] = {
                "seeds": sorted(seeded),
                "average_mAP": mean_and_std([run["average_mAP"] for run in chosen]),
                "mAP": {t: mean_and_std([run["mAP"][t] for run in chosen]) for t in chosen[0]["mAP"]},
                "final_diversity": {
                    kind: [mean_and_std(layer) for layer in zip(*(run["diversity"][-1][kind] for run in chosen))]
                    for kind in KINDS
                },
                "wall_seconds": mean_and_std([run["wall_seconds"] for run in chosen]),
            }
            entry["collapse"][variant] = {str(seed): collapsed_layers(seeded[seed]) for seed in sorted(seeded)}
            baseline = by_variant.get("detr", {})
            common = sorted(set(seeded) & set(baseline))
            if variant != "detr" and common:
                entry["paired_to_detr"][variant] = {
                    "seeds": common,
                    "average_mAP": paired_difference(
                        [seeded[s]["average_mAP"] for s in common], [baseline[s]["average_mAP"] for s in common]
                    ),
                    "final_diversity": {
                        kind: [
                            paired_difference(
                                [seeded[s]["diversity"][-1][kind][layer] for s in common],
                                [baseline[s]["diversity"][-1][kind][layer] for s in common],
                            )
                            for layer in range(len(seeded[common[0]]["diversity"][-1][kind]))
                        ]
                        for kind in KINDS
                    },
                }
        summary[task] = entry
    return summary


def plot_diversity_curves(
    runs: Sequence[Mapping[str, Any]], task: str, path: Path, variants=("detr", "self_detr")
) -> Path:
    """Diversity against training steps per layer (rows: kinds of map, columns: layers),
    each seed a thin line and the mean over seeds a thick one, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [run for run in runs if run["task"] == task and run["variant"] in variants]
    layers = max(len(chosen[0]["diversity"][0][kind]) for kind in KINDS)
    figure, axes = plt.subplots(len(KINDS), layers, figsize=(3.2 * layers, 2.3 * len(KINDS)), squeeze=False)
    colours = dict(zip(variants, ("tab:red", "tab:blue", "tab:green", "tab:orange")))
    for row, (kind, title) in enumerate(KINDS.items()):
        for layer in range(layers):
            axis = axes[row, layer]
            if layer >= len(chosen[0]["diversity"][0][kind]):
                axis.axis("off")
                continue
            for variant in variants:
                curves = [run for run in chosen if run["variant"] == variant]
                if not curves:
                    continue
                steps = [point["step"] for point in curves[0]["diversity"]]
                values = np.array([[point[kind][layer] for point in run["diversity"]] for run in curves])
                for seed_values in values:
                    axis.plot(steps, seed_values, color=colours[variant], alpha=0.25, linewidth=0.8)
                axis.plot(steps, values.mean(axis=0), color=colours[variant], linewidth=2, label=variant)
            axis.set_title(f"{title}, layer {layer + 1}", fontsize=8)
            axis.tick_params(labelsize=7)
            if row == len(KINDS) - 1:
                axis.set_xlabel("optimiser step", fontsize=7)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(f"task {task}: attention diversity (Eq. 10) along training, {len(chosen)} runs", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def plot_final_map(runs: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Final average mAP per seed, per task and variant; a seed's runs joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(run["task"] for run in runs))
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        variants = [v for v in VARIANTS if any(r["task"] == task and r["variant"] == v for r in runs)]
        seeds = sorted({r["seed"] for r in runs if r["task"] == task})
        for seed in seeds:
            points = [
                (position, 100 * run["average_mAP"])
                for position, variant in enumerate(variants)
                for run in runs
                if run["task"] == task and run["variant"] == variant and run["seed"] == seed
            ]
            axis.plot(*zip(*points), marker="o", alpha=0.7, label=f"seed {seed}")
        axis.set_xticks(range(len(variants)), variants, fontsize=8)
        axis.set_ylabel("average mAP (%), tIoU 0.3:0.7")
        axis.set_title(f"task {task}", fontsize=10)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def markdown_report(summary: Mapping[str, Any]) -> str:
    lines = []
    for task, entry in summary.items():
        lines += [
            f"### Task `{task}`",
            "",
            "| variant | seeds | avg mAP (%) | paired diff to detr (pp) [95% CI], sign test p |",
            "|---|---|---|---|",
        ]
        for variant, values in entry["variants"].items():
            paired = entry["paired_to_detr"].get(variant)
            cell = (
                f"{100 * paired['average_mAP']['mean']:+.2f} [{100 * paired['average_mAP']['bootstrap_95'][0]:+.2f}, "
                f"{100 * paired['average_mAP']['bootstrap_95'][1]:+.2f}], p = {paired['average_mAP']['sign_test_p']:.3g}"
                if paired
                else "-"
            )
            mAP = values["average_mAP"]
            lines.append(
                f"| {variant} | {len(values['seeds'])} | {100 * mAP['mean']:.2f} ± {100 * mAP['std']:.2f} | {cell} |"
            )
        for kind, title in KINDS.items():
            layers = len(next(iter(entry["variants"].values()))["final_diversity"][kind])
            lines += ["", f"Final diversity of the {title} per layer (mean ± std; paired diff to detr [95% CI]):", ""]
            lines += [
                "| variant | " + " | ".join(f"layer {i + 1}" for i in range(layers)) + " |",
                "|---|" + "---|" * layers,
            ]
            for variant, values in entry["variants"].items():
                cells = []
                for layer, stats in enumerate(values["final_diversity"][kind]):
                    cell = f"{stats['mean']:.3f} ± {stats['std']:.3f}"
                    paired = entry["paired_to_detr"].get(variant)
                    if paired:
                        diff = paired["final_diversity"][kind][layer]
                        cell += (
                            f" ({diff['mean']:+.3f} [{diff['bootstrap_95'][0]:+.3f}, {diff['bootstrap_95'][1]:+.3f}])"
                        )
                    cells.append(cell)
                lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines += ["", "Collapsed self-attention layers (final diversity < half the peak):", ""]
        for variant, seeds in entry["collapse"].items():
            found = [
                f"seed {s}: " + ", ".join(f"{k} {l}" for k, l in layers.items() if l)
                for s, layers in seeds.items()
                if any(layers.values())
            ]
            lines.append(f"- {variant}: " + ("; ".join(found) if found else "none"))
        lines.append("")
    return "\n".join(lines)


def report(protocol: Protocol, out: Path) -> dict[str, Any]:
    """Analyse every finished run under ``out``: ``summary.json``, the plots and Markdown tables."""
    runs = load_runs(protocol, out)
    if not runs:
        raise SystemExit(f"reproduce_collapse: no finished run under {out}")
    summary = {
        "protocol": protocol.to_dict(),
        "protocol_digest": protocol.digest(),
        "runs": len(runs),
        "tasks": analyse(runs),
    }
    write_json(out / "summary.json", summary)
    for task in summary["tasks"]:
        plot_diversity_curves(runs, task, out / f"diversity_{task}.png")
    plot_final_map(runs, out / "final_map.png")
    (out / "summary.md").write_text(markdown_report(summary["tasks"]), encoding="utf-8")
    return summary


# ----------------------------------------------------------------------------- probes and tuning


def step_examples(videos: SyntheticVideos, subset: str, context: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features of every step inside exactly one action (with ``context`` steps either side
    concatenated), and that action's class."""
    label_ids = {name: index for index, name in enumerate(videos.label_names)}
    inputs, targets = [], []
    for video_id, video in videos.annotations.items():
        if video.subset != subset:
            continue
        features = np.asarray(videos.features[video_id])
        times = (np.arange(len(features)) + 0.5) / videos.feature_fps
        inside = (times[:, None] >= video.segments[:, 0]) & (times[:, None] < video.segments[:, 1])  # (T, n)
        steps = np.flatnonzero(inside.sum(axis=1) == 1)
        padded = np.pad(features, ((context, context), (0, 0)))
        for step in steps:
            inputs.append(padded[step : step + 2 * context + 1].reshape(-1))
            targets.append(label_ids[video.labels[int(np.flatnonzero(inside[step])[0])]])
    return np.stack(inputs).astype(np.float32), np.array(targets)


def linear_probe(videos: SyntheticVideos, context: int = 0, epochs: int = 300) -> dict[str, float]:
    """Accuracy of a multinomial logistic regression from one step's features (or a
    ``2 context + 1`` step neighbourhood) to the class of the action it lies in, trained on
    the train videos, measured on the test videos; ``chance`` is the share of the most
    frequent test class, ``uniform_chance`` one over the number of classes."""
    train_x, train_y = step_examples(videos, "train", context)
    test_x, test_y = step_examples(videos, "test", context)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    torch.manual_seed(0)
    probe = torch.nn.Linear(train_x.shape[1], len(videos.label_names))
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    x, y = torch.from_numpy((train_x - mean) / std), torch.from_numpy(train_y)
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(probe(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        train_accuracy = (probe(x).argmax(-1) == y).float().mean().item()
        predicted = probe(torch.from_numpy((test_x - mean) / std)).argmax(-1).numpy()
    return {
        "context_steps": context,
        "train_steps": len(train_y),
        "test_steps": len(test_y),
        "train_accuracy": train_accuracy,
        "test_accuracy": float((predicted == test_y).mean()),
        "chance": float(np.bincount(test_y).max() / len(test_y)),
        "uniform_chance": 1 / len(videos.label_names),
    }


def environment(device: str) -> dict[str, Any]:
    """The machine the numbers come from and how busy it was (other processes share it)."""
    info = {
        "platform": platform.platform(),
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report", "probe", "tune"))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"results folder (default {RESULTS_DIR})")
    parser.add_argument("--quick", action="store_true", help="a few steps on a few videos: tests the pipeline only")
    parser.add_argument(
        "--gpu", action="store_true", help="the GPU protocol (more seeds) on --device cuda, in <out>/gpu"
    )
    parser.add_argument("--tasks", nargs="+", choices=tuple(TASKS), help="run these tasks only (default: all)")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="run every N-th run starting at I (default 0/1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default 1)")
    tuning = parser.add_argument_group("tune: the detr baseline, seed 0, on other signal settings (task --tasks)")
    for name in (
        "noise_std",
        "background_std",
        "background_leak",
        "class_similarity",
        "edge_softness",
        "boundary_strength",
        "instance_jitter",
    ):
        tuning.add_argument(f"--{name.replace('_', '-')}", type=float)
    tuning.add_argument("--batch-size", type=int, help="windows per optimiser step (default: the protocol's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if (args.gpu or args.device == "cuda") and not torch.cuda.is_available():
        print("reproduce_collapse: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    protocol = QUICK if args.quick else GPU_PROTOCOL if args.gpu else PROTOCOL
    if args.gpu:
        args.device, args.out = "cuda", args.out / "gpu"
    try:
        index, count = (int(part) for part in args.shard.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        print(f"reproduce_collapse: --shard must be I/N with 0 <= I < N; got {args.shard!r}", file=sys.stderr)
        return 2

    if args.command == "run":
        run_study(protocol, args.out, tasks=args.tasks, shard=(index, count), device=args.device)
    elif args.command == "report":
        summary = report(protocol, args.out)
        print(markdown_report(summary["tasks"]))
        print(f"wrote {args.out / 'summary.json'}, {args.out / 'summary.md'} and the plots beside them")
    elif args.command == "probe":
        probes = {
            task: [linear_probe(make_videos(protocol, task), context) for context in (0, 8)] for task in protocol.tasks
        }
        write_json(args.out / "probe.json", probes)
        for task, results in probes.items():
            for result in results:
                print(
                    f"{task:>11s} probe on {2 * result['context_steps'] + 1:2d} step(s): test accuracy "
                    f"{100 * result['test_accuracy']:.1f}% (majority class {100 * result['chance']:.1f}%, "
                    f"1/K {100 * result['uniform_chance']:.1f}%, train "
                    f"{100 * result['train_accuracy']:.1f}%)"
                )
    else:
        overrides = {
            name: value
            for name, value in vars(args).items()
            if name in SignalSettings.__dataclass_fields__ and value is not None
        }
        task = (args.tasks or ["signature"])[0]
        spec = replace(TASKS[task], signal=replace(TASKS[task].signal, **overrides))
        tuned = replace(
            protocol, tasks={task: spec}, seeds={"detr": (0,)}, batch_size=args.batch_size or protocol.batch_size
        )
        if args.batch_size:
            overrides["batch_size"] = args.batch_size
        name = "_".join(f"{k}{v:g}" for k, v in sorted(overrides.items())) or "default"
        started = time.perf_counter()
        result = train_run(tuned, load_task(tuned, task), task, "detr", 0, args.device)
        result["wall_seconds"] = time.perf_counter() - started
        result["signal"] = asdict(spec.signal)
        result["batch_size"] = tuned.batch_size
        write_json(args.out / "tuning" / task / f"{name}.json", result)
        print(
            f"tune {task} {name}: detr seed 0 average mAP {100 * result['average_mAP']:.2f}, curve "
            + ", ".join(f"{p['step']}: {100 * p['average_mAP']:.1f}" for p in result["map_curve"])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
