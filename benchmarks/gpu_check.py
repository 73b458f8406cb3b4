"""Everything about this library that needs a GPU, measured in one run of about 8 minutes.

Sections, in order; on a GPU each runs in its own Python process under its own time cap,
so a crash, a CUDA error or an overrun costs only that section (recorded with its error
text or as 'skipped: time budget') and the next one still runs:

- ``environment``: device, driver, CUDA, Python, torch / transformers / accelerate.
- ``train_fp32``, ``train_bf16``, ``train_fp16``: 50 training steps at the THUMOS14 shape
  (batch 16 x 128 steps x 2048 channels, default config, self-feedback on) through the
  Accelerate loop's `training_step` with the thumos14 recipe, from the same weights on
  the same batches: median step time, peak memory, the losses (finite? close to fp32?).
- ``scale``: the same step at batch 64 and at T = 512 (time, peak memory), with and
  without gradient checkpointing where the model supports it.
- ``fused_attention``: predictions of the fused sdpa path against the explicit-map path
  on padded input, in fp32 and under bf16 autocast, and their inference times.
- ``device_checks``: the library's GPU-sensitive paths on the device: the loss under
  bf16 autocast against fp32, post-processing of outputs left on the device, `train` with
  fp16 (bf16 on CPU) for a few steps with a checkpoint, then `evaluate`.
- ``inference``: `selfdetr_hf.inference.detect` (windows, forward, post-processing, NMS)
  over the 212 THUMOS14 test videos at their real durations (``--annotations``; built-in
  THUMOS14-like timelines where the file is absent), synthetic 2048-d features,
  7.5 steps/s: end-to-end seconds (goal < 2 s).
- ``feature_extraction``: a randomly initialised base-size VideoMAE in bf16: backbone
  clips/s, and `extract_features` end to end on a synthetic video.
- ``compile``: the fp32 training step with Accelerate's ``dynamo_backend="inductor"``
  (`torch.compile`): compile time, median step, speed-up over ``train_fp32``.

The JSON (rewritten after every section, so a killed run keeps what it measured) holds
every number, the precision comparison and the tolerances used; the table is printed.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --dry-run   # tiny settings on CPU, in one process: a rehearsal
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the sibling benchmark scripts (train_step, feature_extraction)
DEFAULT_ANNOTATIONS = HERE.parents[1] / "shared" / "data" / "thumos14" / "thumos14.json"
FEATURE_FPS = 7.5  # THUMOS14 I3D features: 30 fps video, one step every 4 frames
THUMOS14_TEST_VIDEOS = 212
MIXED_PRECISIONS = ("bf16", "fp16")
# Precision verdicts: the eval-mode loss of the initial weights on the first batch, and
# the mean loss of the last 10 of the 50 steps, relative to fp32.
TOLERANCES = {
    "bf16": {"initial_loss": 0.02, "last_10_mean_loss": 0.05},
    "fp16": {"initial_loss": 0.005, "last_10_mean_loss": 0.05},
}
# Fused sdpa vs explicit maps, largest absolute difference of the predictions.
FUSED_TOLERANCES = {"fp32": {"logits": 1e-4, "pred_segments": 1e-5}, "bf16": {"logits": 0.1, "pred_segments": 0.02}}


@dataclass(frozen=True)
class Settings:
    """What one run measures: the real sizes on a GPU, tiny ones for the CPU rehearsal,
    the time caps of the sections and the THUMOS14 annotation file."""

    device: str
    model: dict[str, Any]
    batch: int
    steps: int
    train_steps: int
    scale_shapes: tuple[tuple[int, int], ...]
    scale_steps: int
    inference_videos: int | None
    inference_batch: int
    backbone: str
    extraction_batch: int
    extraction_video_s: int
    compile_backend: str
    compile_steps: int
    repeats: int
    budget_s: float
    caps_s: dict[str, float] = field(default_factory=dict)
    annotations: str = str(DEFAULT_ANNOTATIONS)


GPU = Settings(
    device="cuda",
    model={},  # the default config: THUMOS14, 2048-d I3D features, 20 classes
    batch=16,
    steps=128,
    train_steps=50,
    scale_shapes=((64, 128), (16, 512)),
    scale_steps=10,
    inference_videos=None,
    inference_batch=64,
    backbone="base",
    extraction_batch=32,
    extraction_video_s=10,
    compile_backend="inductor",
    compile_steps=20,
    repeats=10,
    budget_s=480,
    caps_s={
        "environment": 20,
        "train_fp32": 45,
        "train_bf16": 40,
        "train_fp16": 40,
        "scale": 60,
        "fused_attention": 25,
        "device_checks": 40,
        "inference": 60,
        "feature_extraction": 50,
        "compile": 100,
    },
)
DRY_RUN = Settings(
    device="cpu",
    model={
        "feature_dim": 16,
        "d_model": 32,
        "num_attention_heads": 4,
        "ffn_dim": 64,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "num_queries": 6,
        "input_norm_groups": 8,
    },
    batch=2,
    steps=16,
    train_steps=3,
    scale_shapes=((4, 16), (2, 32)),
    scale_steps=2,
    inference_videos=3,
    inference_batch=8,
    backbone="tiny",
    extraction_batch=2,
    extraction_video_s=2,
    compile_backend="eager",
    compile_steps=2,
    repeats=1,
    budget_s=300,
    caps_s={},
)
MIN_SECTION_S = 5  # a section is not started with less time than this left
KILL_GRACE_S = 15  # an isolated section still running this long after its cap is killed


class Deadline:
    """A point in time a section's loops check, to stop early rather than overrun."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self.end


# ---------------------------------------------------------------------------- helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak memory allocated by torch on a CUDA device since the last reset (None on CPU)."""
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def model_config(settings: Settings, **overrides):
    from selfdetr_hf import SelfDetrConfig

    return SelfDetrConfig(**{**settings.model, **overrides})


def training_batches(config, batch: int, steps: int, count: int) -> list[dict[str, Any]]:
    """``count`` seeded random batches as the collator makes them (CPU tensors)."""
    from train_step import make_batch

    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        features, labels = make_batch(config, generator, batch=batch, steps=steps)
        attention_mask = torch.ones(batch, steps, dtype=torch.int64)
        batches.append({"input_features": features, "attention_mask": attention_mask, "labels": labels})
    return batches


def run_training(
    settings: Settings,
    deadline: Deadline,
    *,
    precision: str,
    batch: int,
    steps: int,
    count: int,
    gradient_checkpointing: bool = False,
    dynamo_backend: str = "no",
) -> dict[str, Any]:
    """``count`` optimiser steps of the default recipe through `training_step`.

    Returns the step times (median after 3 warm-up steps when there are more than 5), the
    peak memory, every loss, the eval-mode loss of the initial weights on the first batch
    (not with a dynamo backend: eval mode would compile a second graph), and how many
    optimiser steps fp16 loss scaling skipped.
    """
    from accelerate import Accelerator
    from accelerate.utils import send_to_device

    from selfdetr_hf import SelfDetrForActionDetection
    from selfdetr_hf.training.accelerate_loop import training_step
    from selfdetr_hf.training.recipes import RECIPES, build_optimizer, build_scheduler

    config = model_config(settings)
    torch.manual_seed(0)
    model = SelfDetrForActionDetection(config)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    accelerator = Accelerator(mixed_precision=precision, cpu=settings.device == "cpu", dynamo_backend=dynamo_backend)
    recipe = RECIPES["thumos14"]
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, steps_per_epoch=max(count, 1))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    device = accelerator.device
    batches = send_to_device(training_batches(config, batch, steps, count=4), device)

    initial_loss = None
    if dynamo_backend == "no":
        model.eval()
        with torch.no_grad():
            initial_loss = model(**batches[0]).loss.item()
        model.train()
    reset_peak_memory(device)
    times, losses, skipped = [], [], 0
    for step in range(count):
        if deadline.passed():
            break
        start = time.perf_counter()
        outputs = training_step(
            accelerator, model, batches[step % len(batches)], optimizer, scheduler, recipe.grad_clip
        )
        losses.append(outputs.loss.item())
        synchronize(device)
        times.append(time.perf_counter() - start)
        skipped += bool(optimizer.step_was_skipped)
    measured = times[3:] if len(times) > 5 else times
    return {
        "status": "ok" if len(times) == count else f"stopped: time budget after {len(times)} of {count} steps",
        "precision": precision,
        "autocast": accelerator.mixed_precision != "no" and accelerator.native_amp,
        "loss_scaling": accelerator.scaler is not None,
        "shape": [batch, steps, config.feature_dim],
        "gradient_checkpointing": gradient_checkpointing,
        "steps": len(times),
        "first_step_ms": round(times[0] * 1e3, 2) if times else None,
        "median_step_ms": round(statistics.median(measured) * 1e3, 2) if measured else None,
        "windows_per_s": round(batch / statistics.median(measured), 1) if measured else None,
        "peak_memory_mib": peak_memory_mib(device),
        "initial_eval_loss": initial_loss,
        "losses": losses,
        "losses_finite": all(math.isfinite(loss) for loss in [*losses, initial_loss or 0.0]),
        "skipped_optimizer_steps": skipped,
    }


def timed_median(function: Callable[[], Any], device: torch.device, repeats: int, deadline: Deadline) -> float:
    """Median seconds of ``function`` after one warm-up call (fewer repeats near the deadline)."""
    function()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if deadline.passed():
            break
    return statistics.median(times)


def max_difference(first: torch.Tensor, second: torch.Tensor) -> float:
    return (first.float() - second.float()).abs().max().item()


# ---------------------------------------------------------------------------- sections


def environment(settings: Settings, deadline: Deadline) -> dict[str, Any]:
    import accelerate
    import transformers

    record = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "cuda_runtime": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "commit": _git_commit(),
    }
    if settings.device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        record.update(
            device=properties.name,
            device_memory_gib=round(properties.total_memory / 2**30, 1),
            compute_capability=f"{properties.major}.{properties.minor}",
            cudnn=torch.backends.cudnn.version(),
            driver=_nvidia_smi("driver_version"),
            bf16_supported=torch.cuda.is_bf16_supported(),
            flash_sdp_enabled=torch.backends.cuda.flash_sdp_enabled(),
            mem_efficient_sdp_enabled=torch.backends.cuda.mem_efficient_sdp_enabled(),
        )
    else:
        record.update(device=f"cpu ({platform.processor() or platform.machine()})", driver=None)
    return record


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def _nvidia_smi(query: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


def train_precision(precision: str) -> Callable[[Settings, Deadline], dict[str, Any]]:
    def section(settings: Settings, deadline: Deadline) -> dict[str, Any]:
        return run_training(
            settings,
            deadline,
            precision=precision,
            batch=settings.batch,
            steps=settings.steps,
            count=settings.train_steps,
        )

    return section


def scale(settings: Settings, deadline: Deadline) -> dict[str, Any]:
    """fp32 steps at the larger shapes, with gradient checkpointing where supported."""
    from selfdetr_hf import SelfDetrForActionDetection

    supported = bool(getattr(SelfDetrForActionDetection, "supports_gradient_checkpointing", False))
    runs, status = [], "ok"
    for batch, steps in settings.scale_shapes:
        for checkpointing in (False, True) if supported else (False,):
            if deadline.passed():
                status = "stopped: time budget"
                runs.append({"shape": [batch, steps], "gradient_checkpointing": checkpointing, "status": status})
                continue
            try:
                run = run_training(
                    settings, deadline, precision="no", batch=batch, steps=steps, count=settings.scale_steps,
                    gradient_checkpointing=checkpointing,
                )  # fmt: skip
                del run["losses"]
            except torch.cuda.OutOfMemoryError as error:
                run = {"shape": [batch, steps], "gradient_checkpointing": checkpointing, "status": "out of memory",
                       "error": str(error).splitlines()[0]}  # fmt: skip
                torch.cuda.empty_cache()
            runs.append(run)
    return {
        "status": status,
        "gradient_checkpointing": "supported" if supported else "not supported",
        "runs": runs,
    }


def fused_attention(settings: Settings, deadline: Deadline) -> dict[str, Any]:
    """sdpa (no maps) against explicit maps, eval mode, one padded window in the batch."""
    from selfdetr_hf import SelfDetrForActionDetection

    device = torch.device(settings.device)
    torch.manual_seed(0)
    model = SelfDetrForActionDetection(model_config(settings)).to(device).eval()
    features = torch.randn(settings.batch, settings.steps, model.config.feature_dim, device=device)
    attention_mask = torch.ones(settings.batch, settings.steps, dtype=torch.int64, device=device)
    attention_mask[-1, settings.steps * 3 // 4 :] = 0  # the last window of a video is padded

    def predict(maps: bool, precision: str):
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model(input_features=features, attention_mask=attention_mask, output_attentions=maps)

    record: dict[str, Any] = {"status": "ok", "tolerances": FUSED_TOLERANCES}
    repeats = settings.repeats
    reference = predict(True, "fp32")
    for precision in ("fp32", "bf16"):
        fused, explicit = predict(False, precision), predict(True, precision)
        differences = {
            name: max_difference(getattr(fused, name), getattr(explicit, name)) for name in FUSED_TOLERANCES[precision]
        }
        record[precision] = {
            "fused_vs_explicit": differences,
            "within_tolerance": all(differences[k] <= FUSED_TOLERANCES[precision][k] for k in differences),
            "fused_vs_fp32_explicit": {
                k: max_difference(getattr(fused, k), getattr(reference, k)) for k in differences
            },
            "median_ms_fused": round(
                timed_median(lambda p=precision: predict(False, p), device, repeats, deadline) * 1e3, 2
            ),
            "median_ms_explicit": round(
                timed_median(lambda p=precision: predict(True, p), device, repeats, deadline) * 1e3, 2
            ),
        }
    return record


def device_checks(settings: Settings, deadline: Deadline) -> dict[str, Any]:
    """The paths where device placement and autocast go wrong, each recorded on its own."""
    checks = {
        "loss_under_bf16_autocast_equals_fp32": _check_loss_under_autocast,
        "post_processing_of_device_outputs": _check_post_processing_on_device,
        "train_mixed_precision_then_evaluate": _check_train_and_evaluate,
    }
    record: dict[str, Any] = {"status": "ok"}
    for name, check in checks.items():
        if deadline.passed():
            record[name] = {"status": "skipped: time budget"}
            record["status"] = "stopped: time budget"
            continue
        try:
            record[name] = {"status": "ok", **check(settings)}
        except Exception as error:  # noqa: BLE001 - recorded, and the next check runs
            record[name] = {"status": "error", "error": _error_text(error)}
            record["status"] = "error"
    return record


def _check_loss_under_autocast(settings: Settings) -> dict[str, Any]:
    from selfdetr_hf import SelfDetrForActionDetection

    device = torch.device(settings.device)
    torch.manual_seed(0)
    model = SelfDetrForActionDetection(model_config(settings)).to(device).eval()
    batch = training_batches(model.config, settings.batch, settings.steps, count=1)[0]
    labels = [{key: value.to(device) for key, value in target.items()} for target in batch["labels"]]
    with torch.no_grad():
        outputs = model(input_features=batch["input_features"].to(device), output_attentions=True)
        arguments = {
            "auxiliary_outputs": outputs.auxiliary_outputs, "encoder_attentions": outputs.encoder_attentions,
            "decoder_attentions": outputs.decoder_attentions, "cross_attentions": outputs.cross_attentions,
        }  # fmt: skip
        fp32, _ = model.criterion(outputs.logits, outputs.pred_segments, labels, **arguments)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            autocast, _ = model.criterion(outputs.logits, outputs.pred_segments, labels, **arguments)
    difference = abs(autocast.item() - fp32.item()) / abs(fp32.item())
    if difference > 1e-5:
        raise AssertionError(f"loss under bf16 autocast differs from fp32 by {difference:.2e} (relative)")
    return {"relative_difference": difference}


def _check_post_processing_on_device(settings: Settings) -> dict[str, Any]:
    from selfdetr_hf import SelfDetrForActionDetection, SelfDetrProcessor

    device = torch.device(settings.device)
    model = SelfDetrForActionDetection(model_config(settings)).to(device).eval()
    processor = SelfDetrProcessor.thumos14()
    features = np.random.default_rng(0).standard_normal((300, model.config.feature_dim), dtype=np.float32)
    inputs = processor(features, feature_fps=FEATURE_FPS, video_ids=["video"], return_tensors="pt")
    with torch.no_grad():
        outputs = model(
            input_features=inputs["input_features"].to(device), attention_mask=inputs["attention_mask"].to(device)
        )
    detections = processor.post_process_action_detection(outputs, inputs["window_metadata"], by_video=True)
    return {
        "detections": len(detections["video"]["scores"]),
        "result_device": str(detections["video"]["scores"].device),
    }


def _check_train_and_evaluate(settings: Settings) -> dict[str, Any]:
    from selfdetr_hf import SelfDetrForActionDetection, SelfDetrProcessor
    from selfdetr_hf.data.synthetic import make_synthetic_videos
    from selfdetr_hf.training.accelerate_loop import AccelerateTrainingArguments, train
    from selfdetr_hf.training.recipes import TrainingRecipe

    precision = "fp16" if settings.device == "cuda" else "bf16"  # fp16 autocast needs a GPU
    videos = make_synthetic_videos(8, num_classes=3, feature_dim=64, max_duration=40)
    processor = SelfDetrProcessor.thumos14()
    torch.manual_seed(0)
    model = SelfDetrForActionDetection(
        model_config(settings, feature_dim=64, id2label=dict(enumerate(videos.label_names)))
    )
    recipe = TrainingRecipe(learning_rate=1e-4, batch_size=4, epochs=1, ema_decay=0.9, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        arguments = AccelerateTrainingArguments(
            output_dir=folder, recipe=recipe, mixed_precision=precision, max_steps=3, checkpoint_every=2,
            progress=False,
        )  # fmt: skip
        metrics = train(
            model, processor, videos.dataset(processor, subset="train"), arguments,
            eval_dataset=videos.dataset(processor, subset="test", training=False),
            eval_annotations={k: v for k, v in videos.annotations.items() if v.subset == "test"},
        )  # fmt: skip
        log = [json.loads(line) for line in (Path(folder) / "train_log.jsonl").read_text().splitlines()]
    return {
        "precision": precision,
        "losses": [record["loss"] for record in log],
        "average_mAP": metrics.get("average_mAP"),
        "windows_evaluated": metrics.get("num_windows_evaluated"),
    }


def inference(settings: Settings, deadline: Deadline) -> dict[str, Any]:
    """`detect` over the THUMOS14 test videos: windows, forward, post-processing, NMS."""
    from selfdetr_hf import SelfDetrForActionDetection, SelfDetrProcessor
    from selfdetr_hf.data import load_annotations
    from selfdetr_hf.data.synthetic import thumos14_like_timelines
    from selfdetr_hf.inference import detect

    annotations = Path(settings.annotations)
    if annotations.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            videos = load_annotations(annotations, subset="test")
        timelines = f"{annotations} (subset test)"
    else:
        videos = thumos14_like_timelines(THUMOS14_TEST_VIDEOS, 20, test_fraction=1.0)
        timelines = f"built-in THUMOS14-like statistics ({annotations} not found)"
    video_ids = sorted(videos)[: settings.inference_videos]
    durations = {video_id: videos[video_id].duration for video_id in video_ids}
    device = torch.device(settings.device)
    torch.manual_seed(0)
    model = SelfDetrForActionDetection(model_config(settings)).to(device).eval()
    rng = np.random.default_rng(0)
    features = {
        video_id: rng.standard_normal((max(1, round(duration * FEATURE_FPS)), model.config.feature_dim), np.float32)
        for video_id, duration in durations.items()
    }
    processor = SelfDetrProcessor.thumos14()

    def run(batch_size: int):
        return detect(model, processor, features, feature_fps=FEATURE_FPS, durations=durations, batch_size=batch_size)

    detections = run(settings.inference_batch)  # warm-up, and the numbers below
    windows = sum(len(processor(array, feature_fps=FEATURE_FPS)["window_metadata"]) for array in features.values())
    record = {
        "status": "ok",
        "timelines": timelines,
        "videos": len(video_ids),
        "windows": windows,
        "feature_steps": sum(len(array) for array in features.values()),
        "detections": sum(len(found["scores"]) for found in detections.values()),
        "goal_s": 2.0,
    }
    for batch_size in (16, settings.inference_batch):
        if deadline.passed():
            record["status"] = "stopped: time budget"
            break
        seconds = timed_median(lambda b=batch_size: run(b), device, min(settings.repeats, 3), deadline)
        record[f"end_to_end_s_batch_{batch_size}"] = round(seconds, 3)
    return record


def feature_extraction(settings: Settings, deadline: Deadline) -> dict[str, Any]:
    """Backbone clips/s in bf16 autocast, and `extract_features` on a synthetic video."""
    from feature_extraction import CLIP_LEN, FPS, STRIDE, make_backbone, write_video

    from selfdetr_hf.features import VideoBackbone, extract_features, num_clips

    device = torch.device(settings.device)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        backbone = VideoBackbone.from_pretrained(
            make_backbone(folder / "backbone", settings.backbone), device=device, dtype="bfloat16"
        )
        size = backbone.model.config.image_size
        clips = torch.randn(settings.extraction_batch, backbone.num_frames, 3, size, size)
        seconds = timed_median(lambda: backbone(clips), device, min(settings.repeats, 5), deadline)
        record = {
            "status": "ok",
            "backbone": f"VideoMAE {settings.backbone} (random), {backbone.feature_dim}-d, {backbone.num_frames} frames",
            "dtype": "bfloat16",
            "batch": settings.extraction_batch,
            "backbone_clips_per_s": round(settings.extraction_batch / seconds, 1),
        }
        if deadline.passed():
            record["status"] = "stopped: time budget"
            return record
        frames = settings.extraction_video_s * FPS
        video = write_video(folder / "video.mp4", frames)
        start = time.perf_counter()
        summary = extract_features(
            video, folder / "features", backbone=backbone, batch_size=settings.extraction_batch, progress=False
        )
        elapsed = time.perf_counter() - start
        total = num_clips(frames, CLIP_LEN, STRIDE)
        if summary.failed:
            raise RuntimeError(f"extract_features failed: {summary.failed}")
        record.update(end_to_end_clips=total, end_to_end_clips_per_s=round(total / elapsed, 1))
    return record


def compile_step(settings: Settings, deadline: Deadline) -> dict[str, Any]:
    """The fp32 step of ``train_fp32`` compiled by Accelerate's dynamo backend."""
    run = run_training(
        settings, deadline, precision="no", batch=settings.batch, steps=settings.steps, count=settings.compile_steps,
        dynamo_backend=settings.compile_backend,
    )  # fmt: skip
    del run["losses"]
    return {**run, "backend": settings.compile_backend}


SECTIONS: dict[str, Callable[[Settings, Deadline], dict[str, Any]]] = {
    "environment": environment,
    "train_fp32": train_precision("no"),
    "train_bf16": train_precision("bf16"),
    "train_fp16": train_precision("fp16"),
    "scale": scale,
    "fused_attention": fused_attention,
    "device_checks": device_checks,
    "inference": inference,
    "feature_extraction": feature_extraction,
    "compile": compile_step,
}


# ---------------------------------------------------------------------------- running


def _error_text(error: BaseException) -> str:
    """``Type: message`` and where it was raised, one line."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}{where}"


def fresh_accelerate_state() -> None:
    """Accelerate keeps one state per process whose mixed precision cannot change; each
    section starts from a fresh one (they share a process in a dry run)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def run_section_here(name: str, settings: Settings, cap_s: float) -> dict[str, Any]:
    """Run one section in this process; an exception is recorded, not raised."""
    start = time.monotonic()
    fresh_accelerate_state()
    try:
        result = SECTIONS[name](settings, Deadline(cap_s))
        result.setdefault("status", "ok")
    except Exception as error:  # noqa: BLE001 - recorded, and the next section runs
        result = {"status": "error", "error": _error_text(error), "traceback": traceback.format_exc(limit=-6)}
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


def run_section_isolated(name: str, settings: Settings, cap_s: float, dry_run: bool) -> dict[str, Any]:
    """Run one section in a fresh Python process (a CUDA error cannot poison the next
    section's context), which stops itself at its cap and is killed ``KILL_GRACE_S`` later."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        result_path = Path(folder) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--result", str(result_path),
                   "--deadline", str(time.time() + cap_s), "--annotations", settings.annotations,
                   "--budget-s", str(settings.budget_s)] + (["--dry-run"] if dry_run else [])  # fmt: skip
        try:
            process = subprocess.run(command, capture_output=True, text=True, timeout=cap_s + KILL_GRACE_S, check=False)
        except subprocess.TimeoutExpired:
            return {"status": "skipped: time budget", "error": f"killed {KILL_GRACE_S} s after its {cap_s:.0f} s cap",
                    "seconds": round(time.monotonic() - start, 2)}  # fmt: skip
        if result_path.is_file():
            return json.loads(result_path.read_text())
    tail = (process.stderr or process.stdout).strip().splitlines()[-3:]
    return {
        "status": "error",
        "error": f"process exited with status {process.returncode}: " + " | ".join(tail),
        "seconds": round(time.monotonic() - start, 2),
    }


def run_check(
    settings: Settings, names: list[str], *, isolate: bool, dry_run: bool, out: Path | None = None
) -> dict[str, Any]:
    """Every section in ``names`` in order, within ``settings.budget_s`` in all."""
    started = time.monotonic()
    report: dict[str, Any] = {
        "dry_run": dry_run,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "budget_s": settings.budget_s,
        "settings": asdict(settings),
        "tolerances": TOLERANCES,
        "sections": {},
    }
    for name in names:
        remaining = settings.budget_s - (time.monotonic() - started)
        cap = min(settings.caps_s.get(name, remaining), remaining)
        if cap < MIN_SECTION_S:
            result = {"status": "skipped: time budget", "seconds": 0.0}
        elif isolate:
            result = run_section_isolated(name, settings, cap, dry_run)
        else:
            result = run_section_here(name, settings, cap)
        report["sections"][name] = result
        print(f"[{time.monotonic() - started:6.1f} s] {name}: {result['status']}", flush=True)
        report["precision_comparison"] = compare_precisions(report["sections"])
        report["total_seconds"] = round(time.monotonic() - started, 1)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def compare_precisions(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """bf16 and fp16 against fp32: initial loss, loss curves over the same batches."""
    reference = sections.get("train_fp32", {})
    if not reference.get("losses"):
        return {}
    comparison = {}
    for precision in MIXED_PRECISIONS:
        run = sections.get(f"train_{precision}", {})
        if not run.get("losses"):
            continue
        count = min(len(run["losses"]), len(reference["losses"]))
        relative = [abs(a - b) / abs(b) for a, b in zip(run["losses"][:count], reference["losses"][:count])]
        tail = slice(max(count - 10, 0), count)
        last_run, last_reference = statistics.mean(run["losses"][tail]), statistics.mean(reference["losses"][tail])
        initial = abs(run["initial_eval_loss"] - reference["initial_eval_loss"]) / abs(reference["initial_eval_loss"])
        last = abs(last_run - last_reference) / abs(last_reference)
        tolerance = TOLERANCES[precision]
        comparison[precision] = {
            "initial_loss_relative_difference": initial,
            "last_10_mean_loss_relative_difference": last,
            "max_step_relative_difference": max(relative),
            "finite": run["losses_finite"],
            "close_to_fp32": run["losses_finite"]
            and initial <= tolerance["initial_loss"]
            and last <= tolerance["last_10_mean_loss"],
        }
    return comparison


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, status, the main numbers) for the printed table."""
    sections, rows = report["sections"], []
    for name, result in sections.items():
        status = result.get("status", "?")
        if status == "error":
            status = f"error: {result.get('error', '')}"
        rows.append((name, status, _headline(name, result, report)))
    return rows


def _headline(name: str, result: dict[str, Any], report: dict[str, Any]) -> str:
    if name == "environment":
        keys = ("device", "driver", "cuda_runtime", "torch", "transformers", "accelerate")
        return ", ".join(f"{key} {result[key]}" for key in keys if result.get(key) is not None)
    if name.startswith("train_") and result.get("median_step_ms") is not None:
        text = f"{result['median_step_ms']} ms/step, {result['steps']} steps"
        if result["peak_memory_mib"] is not None:
            text += f", peak {result['peak_memory_mib']} MiB"
        if result["precision"] != "no" and not result["autocast"]:
            text += f", NO {result['precision']} autocast on this device"
        text += ", losses finite" if result["losses_finite"] else ", NON-FINITE losses"
        comparison = report.get("precision_comparison", {}).get(name.removeprefix("train_"))
        if comparison:
            text += (
                f"; vs fp32: initial {comparison['initial_loss_relative_difference']:.1e}, "
                f"last 10 {comparison['last_10_mean_loss_relative_difference']:.1e} "
                f"({'close' if comparison['close_to_fp32'] else 'NOT close'})"
            )
        if result.get("skipped_optimizer_steps"):
            text += f", {result['skipped_optimizer_steps']} steps skipped by loss scaling"
        return text
    if name == "scale":
        parts = [f"checkpointing {result.get('gradient_checkpointing')}"]
        for run in result.get("runs", []):
            label = "x".join(str(n) for n in run["shape"][:2]) + (" ckpt" if run["gradient_checkpointing"] else "")
            if run.get("median_step_ms") is not None:
                memory = "" if run["peak_memory_mib"] is None else f", {run['peak_memory_mib']} MiB"
                parts.append(f"{label}: {run['median_step_ms']} ms{memory}")
            else:
                parts.append(f"{label}: {run['status']}")
        return "; ".join(parts)
    if name == "fused_attention":
        return "; ".join(
            f"{p}: logits {result[p]['fused_vs_explicit']['logits']:.1e}, "
            f"{'within' if result[p]['within_tolerance'] else 'OUTSIDE'} tolerance, "
            f"{result[p]['median_ms_fused']} vs {result[p]['median_ms_explicit']} ms"
            for p in ("fp32", "bf16")
            if p in result
        )
    if name == "device_checks":
        return ", ".join(f"{check} {value['status']}" for check, value in result.items() if isinstance(value, dict))
    if name == "inference" and "windows" in result:
        times = ", ".join(f"batch {key.rsplit('_', 1)[1]}: {value} s" for key, value in result.items()
                          if key.startswith("end_to_end_s"))  # fmt: skip
        return f"{result['videos']} videos, {result['windows']} windows: {times} (goal < {result['goal_s']} s)"
    if name == "feature_extraction" and "backbone_clips_per_s" in result:
        text = f"{result['backbone']}: {result['backbone_clips_per_s']} clips/s (batch {result['batch']})"
        if "end_to_end_clips_per_s" in result:
            text += f", end to end {result['end_to_end_clips_per_s']} clips/s"
        return text
    if name == "compile" and result.get("median_step_ms") is not None:
        text = f"{result['backend']}: first step {result['first_step_ms']} ms, {result['median_step_ms']} ms/step"
        eager = report["sections"].get("train_fp32", {}).get("median_step_ms")
        if eager:
            text += f", speed-up {eager / result['median_step_ms']:.2f}x over eager fp32"
        return text
    return ""


def format_table(report: dict[str, Any]) -> str:
    kind = "dry run (CPU, tiny settings)" if report["dry_run"] else "full settings"
    lines = [
        f"GPU check, {report['date']}, {kind}, {report['total_seconds']} s of {report['budget_s']} s",
        "",
        "| section | status | result | s |",
        "|---|---|---|---|",
    ]
    for (name, status, headline), result in zip(summary_rows(report), report["sections"].values()):
        lines.append(f"| {name} | {status} | {headline} | {result.get('seconds', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON file to write (rewritten after each section)")
    parser.add_argument("--dry-run", action="store_true", help="tiny settings on CPU, all sections in this process")
    parser.add_argument("--sections", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    parser.add_argument("--budget-s", type=float, help="total seconds (default 480; 300 in a dry run)")
    parser.add_argument(
        "--annotations",
        type=Path,
        default=DEFAULT_ANNOTATIONS,
        help=f"THUMOS14 annotations (default {DEFAULT_ANNOTATIONS})",
    )
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="each section in its own process (default: on, off in a dry run)")  # fmt: skip
    parser.add_argument("--section", help=argparse.SUPPRESS)  # a child process: run this one section
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)  # time.time() to stop by
    args = parser.parse_args(argv)
    settings = DRY_RUN if args.dry_run else GPU
    settings = replace(settings, annotations=str(args.annotations))
    if args.budget_s is not None:
        settings = replace(settings, budget_s=args.budget_s)
    if args.dry_run:
        torch.set_num_threads(1)

    if args.section:
        result = run_section_here(args.section, settings, args.deadline - time.time())
        args.result.write_text(json.dumps(result), encoding="utf-8")
        return 0

    names = list(SECTIONS) if args.sections is None else [name.strip() for name in args.sections.split(",")]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        print(f"error: --sections: unknown {', '.join(unknown)} (known: {', '.join(SECTIONS)})", file=sys.stderr)
        return 2
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device; run with --dry-run for the CPU rehearsal", file=sys.stderr)
        return 2
    if args.out is not None and args.out.is_dir():
        print(f"error: --out {args.out} is a folder; give a JSON file name", file=sys.stderr)
        return 2
    isolate = not args.dry_run if args.isolate is None else args.isolate
    report = run_check(settings, names, isolate=isolate, dry_run=args.dry_run, out=args.out)
    print()
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
