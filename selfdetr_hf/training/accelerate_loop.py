"""Training and evaluation with Accelerate: one process, DDP, mixed precision,
gradient accumulation, checkpoints every N steps and exact resume mid-epoch.

The global batch (windows per optimiser step, all processes together) is fixed by the
recipe; each optimiser step sees the same windows whatever the number of processes,
because batches are split across processes (``split_batches=True``) and the shuffling
is seeded per epoch. The output folder belongs to the run (`run_folder`); the first
SIGINT/SIGTERM stops it after the current step with a checkpoint (`interrupts`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from ..data import SelfDetrDataCollator, window_metadata
from ..evaluation import THUMOS14_TIOU_THRESHOLDS, evaluate_detections
from ..inference import as_submission
from ..processing_self_detr import SelfDetrProcessor
from .compilation import compile_for_training
from .interrupts import TrainingInterrupted, stop_requests
from .recipes import RECIPES, ExponentialMovingAverage, TrainingRecipe, build_optimizer, build_scheduler
from .run_folder import (
    LOG_FILE,
    RunFolderError,
    RunIdentity,
    check_output_dir,
    clear_run,
    final_model_folder,
    resume_point,
    save_checkpoint,
    truncate_log,
)

MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass
class AccelerateTrainingArguments:
    """Settings of one Accelerate training run.

    Args:
        output_dir: the run's folder (see `run_folder`): the final model (with processor,
            model card and `metrics.json`), `run.json`, `train_log.jsonl` and `checkpoints/`.
        recipe: a preset of `RECIPES` (``thumos14``, ``activitynet``) or a `TrainingRecipe`.
        epochs / batch_size / learning_rate / seed: override the recipe's.
        mixed_precision: ``no``, ``bf16`` or ``fp16``.
        gradient_accumulation_steps: micro-batches per optimiser step (the global batch
            stays the recipe's).
        checkpoint_every: save the full training state every N optimiser steps (0 = only
            when interrupted).
        checkpoints_to_keep: how many of the run's newest checkpoints to keep.
        resume: continue the run in ``output_dir`` from its newest checkpoint, mid-epoch.
        overwrite: delete the run in ``output_dir`` (checkpoints included) and start afresh;
            without it (or ``resume``) a folder holding a run is refused.
        eval_every: evaluate every N epochs (0 = only after the last epoch).
        max_steps: stop after this many optimiser steps in all (a shorter run).
        tensorboard: log losses, learning rate and mAP to TensorBoard in ``output_dir/logs``.
        compile: run the training steps' encoder-decoder under ``torch.compile``
            (`compile_for_training`; the loss and its matching stay eager, evaluation
            runs eagerly). Not part of the run's trajectory: a compiled run follows the
            eager one to float rounding and either may resume the other.
        tiou_thresholds: thresholds of the evaluation mAP.
        progress: show progress bars (main process only).

    Raises:
        ValueError: a setting out of range (checked on construction, with the recipe's).
    """

    output_dir: str
    recipe: str | TrainingRecipe = "thumos14"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    seed: int | None = None
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    checkpoint_every: int = 0
    checkpoints_to_keep: int = 2
    resume: bool = False
    overwrite: bool = False
    eval_every: int = 1
    max_steps: int | None = None
    tensorboard: bool = False
    compile: bool = False
    tiou_thresholds: Sequence[float] = THUMOS14_TIOU_THRESHOLDS
    progress: bool = True

    def __post_init__(self):
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}; got {self.mixed_precision!r}"
            )
        minimum = {"gradient_accumulation_steps": 1, "checkpoint_every": 0, "checkpoints_to_keep": 1, "eval_every": 0}
        if self.max_steps is not None:
            minimum["max_steps"] = 1
        for name, least in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}; got {value!r}")
        batch_size = self.resolved_recipe().batch_size
        if batch_size % self.gradient_accumulation_steps:
            raise ValueError(
                f"batch_size {batch_size} must split into gradient_accumulation_steps "
                f"({self.gradient_accumulation_steps}) equal micro-batches"
            )

    def resolved_recipe(self) -> TrainingRecipe:
        recipe = self.recipe
        if isinstance(recipe, str):
            if recipe not in RECIPES:
                raise ValueError(f"recipe must be one of {', '.join(RECIPES)}; got {recipe!r}")
            recipe = RECIPES[recipe]
        return recipe.with_overrides(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed
        )


class TrainingProgress:
    """Optimiser steps done; checkpointed with the rest of the state."""

    def __init__(self):
        self.completed_steps = 0

    def state_dict(self) -> dict[str, int]:
        return {"completed_steps": self.completed_steps}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.completed_steps = int(state["completed_steps"])


class _IndexedWindows(torch.utils.data.Dataset):
    """Row indices of a window dataset: evaluation batches carry which windows they hold."""

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> int:
        return index


def train(
    model: torch.nn.Module,
    processor: SelfDetrProcessor,
    train_dataset: datasets.Dataset,
    args: AccelerateTrainingArguments,
    *,
    eval_dataset: datasets.Dataset | None = None,
    eval_annotations: Mapping[str, Any] | None = None,
    model_card: Callable[[dict[str, Any]], str] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on the windows of ``train_dataset`` with the recipe of ``args``.

    Evaluates mAP on ``eval_dataset`` (test windows) against ``eval_annotations`` every
    ``eval_every`` epochs and at the end, then saves the model (the EMA weights when the
    recipe has EMA), the processor, ``metrics.json`` and the model card rendered by
    ``model_card(metrics)`` to ``args.output_dir`` on the main process, all at once.

    Returns:
        The last evaluation's metrics (`evaluate_detections` result as a dict, plus
        ``num_windows_evaluated``, as in ``metrics.json``) with ``eval_seconds``, its wall
        time; ``{}`` without evaluation data.

    Raises:
        RunFolderError: the output folder holds another run (or ``resume`` finds no run,
            other settings or no checkpoint), before anything is written.
        TrainingInterrupted: after the checkpoint of a run stopped by SIGINT/SIGTERM.
    """
    recipe = args.resolved_recipe()
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, resume=args.resume, overwrite=args.overwrite)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with="tensorboard" if args.tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True),
    )
    micro_batch = recipe.batch_size // args.gradient_accumulation_steps
    if micro_batch % accelerator.num_processes:
        raise ValueError(
            f"batch_size {recipe.batch_size} must split into gradient_accumulation_steps "
            f"({args.gradient_accumulation_steps}) micro-batches divisible by the {accelerator.num_processes} processes"
        )
    trajectory = _trajectory(recipe, args, accelerator.unwrap_model(model).config, train_dataset)
    set_seed(recipe.seed)
    collator = SelfDetrDataCollator()
    train_loader = torch.utils.data.DataLoader(
        train_dataset, batch_size=micro_batch, shuffle=True, collate_fn=collator, drop_last=False
    )
    optimizer = build_optimizer(model, recipe)
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    scheduler = build_scheduler(optimizer, recipe, steps_per_epoch)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(progress)
    ema = ExponentialMovingAverage(accelerator.unwrap_model(model), recipe.ema_decay) if recipe.ema_decay else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    if args.compile:  # after the EMA's copy, which stays an eager model
        compile_for_training(accelerator.unwrap_model(model))
    total_steps = recipe.epochs * steps_per_epoch
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)

    if args.resume:
        identity, checkpoint = resume_point(output_dir, trajectory)
        if checkpoint.step > total_steps:
            raise RunFolderError(
                f"--resume: the newest checkpoint of the run in {output_dir} is at step {checkpoint.step}, "
                f"past the {total_steps} steps asked (--epochs, --max-steps)"
            )
        accelerator.wait_for_everyone()
        accelerator.load_state(str(checkpoint.path))
        if accelerator.is_main_process:
            kept = truncate_log(output_dir, checkpoint.step)
            identity.record_resume(checkpoint.step)
            identity.write(output_dir)
            if kept is not None:
                print(f"{output_dir / LOG_FILE}: steps after {checkpoint.step} dropped (full log kept in {kept})")
        accelerator.print(f"resumed from {checkpoint.path} at step {progress.completed_steps}")
    else:
        identity = RunIdentity.new(asdict(args), trajectory)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            clear_run(output_dir)
            output_dir.mkdir(parents=True, exist_ok=True)
            identity.write(output_dir)
    accelerator.wait_for_everyone()
    if args.tensorboard:
        accelerator.init_trackers("selfdetr", config={**asdict(recipe), "lr_drop_epochs": str(recipe.lr_drop_epochs)})

    log_path = output_dir / LOG_FILE
    bar = tqdm(
        total=total_steps,
        initial=progress.completed_steps,
        disable=not (args.progress and accelerator.is_main_process),
        desc="training",
    )
    evaluated = ema.model if ema is not None else model
    has_eval_data = eval_dataset is not None and eval_annotations is not None

    def run_evaluation() -> dict[str, Any]:
        # Evaluation leaves the training's random stream alone, and runs eagerly: its few
        # passes, in eval mode and batches of varying size, would each compile new graphs.
        with torch.random.fork_rng(devices=[]), torch.compiler.set_stance("force_eager"):
            return evaluate(evaluated, processor, eval_dataset, eval_annotations, accelerator, args.tiou_thresholds)

    def save_training_state() -> Path:
        return save_checkpoint(
            accelerator, output_dir, identity.run_id, progress.completed_steps, args.checkpoints_to_keep
        )

    def stop_if_asked(checkpoint: Path | None) -> None:
        """Raise `TrainingInterrupted` once a signal asked to stop, with a checkpoint of
        this step (``checkpoint`` when it already has one)."""
        signal_number = stop.requested(accelerator)
        if signal_number is None:
            return
        bar.close()
        checkpoint = checkpoint or save_training_state()
        accelerator.end_training()
        raise TrainingInterrupted(signal_number, progress.completed_steps, total_steps, checkpoint)

    checkpoint = None  # of the last step, when it has one
    with stop_requests(announce=accelerator.is_main_process) as stop:
        start_epoch = progress.completed_steps // steps_per_epoch
        for epoch in range(start_epoch, recipe.epochs):
            if progress.completed_steps >= total_steps:
                break
            model.train()
            train_loader.set_epoch(epoch)
            done_in_epoch = progress.completed_steps - epoch * steps_per_epoch
            batches = train_loader
            if done_in_epoch:
                batches = _resumed_batches(accelerator, train_loader, done_in_epoch * args.gradient_accumulation_steps)
            for batch in batches:
                outputs = training_step(accelerator, model, batch, optimizer, scheduler, recipe.grad_clip)
                if not accelerator.sync_gradients:
                    continue
                progress.completed_steps += 1
                if ema is not None:
                    ema.update(accelerator.unwrap_model(model))
                record = _step_record(accelerator, outputs, progress.completed_steps, epoch, scheduler)
                if accelerator.is_main_process:
                    with log_path.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps(record) + "\n")
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=progress.completed_steps)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", epoch=epoch)
                checkpoint = None
                if args.checkpoint_every and progress.completed_steps % args.checkpoint_every == 0:
                    checkpoint = save_training_state()
                stop_if_asked(checkpoint)
                if progress.completed_steps >= total_steps:
                    break
            epoch_finished = progress.completed_steps == (epoch + 1) * steps_per_epoch
            due = args.eval_every and epoch_finished and (epoch + 1) % args.eval_every == 0
            if has_eval_data and due and progress.completed_steps < total_steps:
                metrics = run_evaluation()
                accelerator.print(f"epoch {epoch}: average mAP {metrics['average_mAP']:.4f}")
                accelerator.log({"eval/average_mAP": metrics["average_mAP"]}, step=progress.completed_steps)
                stop_if_asked(checkpoint)
        bar.close()

        metrics: dict[str, Any] = {}
        eval_seconds = 0.0
        if has_eval_data:
            started = time.perf_counter()
            metrics = run_evaluation()
            eval_seconds = time.perf_counter() - started
            accelerator.print(f"step {progress.completed_steps}: average mAP {metrics['average_mAP']:.4f}")
            accelerator.log({"eval/average_mAP": metrics["average_mAP"]}, step=progress.completed_steps)
            stop_if_asked(checkpoint)  # a stop during the final evaluation keeps the trained steps
    accelerator.wait_for_everyone()
    state_dict = ema.state_dict() if ema is not None else accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        with final_model_folder(output_dir) as staging:
            accelerator.unwrap_model(model).save_pretrained(staging, state_dict=state_dict)
            processor.save_pretrained(staging)
            if metrics:
                (staging / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
            if model_card is not None:
                (staging / "README.md").write_text(model_card(metrics), encoding="utf-8")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return {**metrics, "eval_seconds": eval_seconds} if metrics else metrics


def _trajectory(
    recipe: TrainingRecipe, args: AccelerateTrainingArguments, config, train_dataset: datasets.Dataset
) -> dict[str, Any]:
    """The settings a resumed run must share with the run it continues: the recipe, how the
    batch is split and computed, the model's configuration and the training windows."""
    model_config = {k: v for k, v in config.to_dict().items() if k != "transformers_version" and not k.startswith("_")}
    windows = json.dumps(train_dataset.with_format(None).to_dict(), sort_keys=True)
    return {
        "recipe": asdict(recipe),
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "mixed_precision": args.mixed_precision,
        "model_config": model_config,
        "training_windows": {"count": len(train_dataset), "sha256": hashlib.sha256(windows.encode()).hexdigest()[:16]},
    }


def training_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    batch: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_clip: float | None,
):
    """One micro-batch of the loop: forward under the accelerator's mixed precision,
    backward (loss-scaled in fp16), and, when gradients are synchronised, clipping and an
    optimiser and scheduler step. ``model``, ``optimizer`` and ``scheduler`` are the
    prepared ones; ``batch`` is on the accelerator's device.

    Returns:
        The model outputs (``loss``, ``loss_dict``, predictions).
    """
    with accelerator.accumulate(model):
        outputs = model(**batch, return_dict=True)
        accelerator.backward(outputs.loss)
        if accelerator.sync_gradients and grad_clip is not None:
            accelerator.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return outputs


def _resumed_batches(accelerator: Accelerator, loader, skip: int) -> Iterator:
    """The rest of an epoch after ``skip`` batches, drawing the same dropout masks as the
    uninterrupted run: starting an iterator draws a base seed from the global RNG, which
    that run drew at the start of the epoch, so the checkpoint's RNG state is put back
    after the first batch is fetched (iterators start lazily)."""
    rng_state = torch.get_rng_state()
    iterator = iter(accelerator.skip_first_batches(loader, skip))
    first = next(iterator, None)
    torch.set_rng_state(rng_state)
    return itertools.chain([] if first is None else [first], iterator)


def _step_record(accelerator: Accelerator, outputs, step: int, epoch: int, scheduler) -> dict[str, float]:
    """Loss terms of the step, averaged over processes."""
    names = ["loss", *outputs.loss_dict]
    values = torch.stack([outputs.loss.detach().float(), *(v.detach().float() for v in outputs.loss_dict.values())])
    values = accelerator.reduce(values, reduction="mean")
    record = {"step": step, "epoch": epoch, "learning_rate": scheduler.get_last_lr()[0]}
    record.update({name: value.item() for name, value in zip(names, values)})
    return record


@torch.no_grad()
def predict_windows(
    model: torch.nn.Module,
    eval_dataset: datasets.Dataset,
    accelerator: Accelerator,
    batch_size: int = 16,
) -> dict[str, torch.Tensor]:
    """Logits and segments of every window, each exactly once, on every process.

    Windows are sharded across processes and gathered back with their row indices
    (`gather_for_metrics` drops the duplicates that even sharding adds).

    Returns:
        ``{"logits": (N, Nq, K), "pred_segments": (N, Nq, 2)}`` in dataset order (CPU).
    """
    collator = SelfDetrDataCollator()
    loader = torch.utils.data.DataLoader(
        _IndexedWindows(eval_dataset),
        batch_size=batch_size,
        collate_fn=lambda indices: (indices, collator([eval_dataset[i] for i in indices])),
    )
    loader = accelerator.prepare_data_loader(loader, device_placement=False)
    model.eval()
    device = next(model.parameters()).device
    records = []
    for indices, batch in loader:
        batch.pop("labels", None)
        batch = {k: v.to(device) for k, v in batch.items()}
        with accelerator.autocast():
            outputs = model(**batch, return_dict=True)
        batch_records = [
            {"index": index, "logits": logits.float().cpu(), "pred_segments": segments.float().cpu()}
            for index, logits, segments in zip(indices, outputs.logits, outputs.pred_segments)
        ]
        records.extend(accelerator.gather_for_metrics(batch_records, use_gather_object=True))
    records = sorted(records, key=lambda record: record["index"])
    indices = [record["index"] for record in records]
    if indices != list(range(len(eval_dataset))):
        raise RuntimeError(f"evaluation gathered {len(indices)} windows for a dataset of {len(eval_dataset)}")
    return {
        "logits": torch.stack([record["logits"] for record in records]),
        "pred_segments": torch.stack([record["pred_segments"] for record in records]),
    }


def evaluate(
    model: torch.nn.Module,
    processor: SelfDetrProcessor,
    eval_dataset: datasets.Dataset,
    eval_annotations: Mapping[str, Any],
    accelerator: Accelerator,
    tiou_thresholds: Sequence[float],
) -> dict[str, Any]:
    """mAP of ``model`` on the test windows, computed from every window exactly once."""
    predictions = predict_windows(model, eval_dataset, accelerator)
    config = accelerator.unwrap_model(model).config
    detections = processor.post_process_action_detection(
        predictions, window_metadata(eval_dataset), id2label=config.id2label, by_video=True
    )
    metrics = evaluate_detections(eval_annotations, as_submission(detections), tiou_thresholds).to_dict()
    metrics["num_windows_evaluated"] = len(predictions["logits"])
    metrics["num_videos_evaluated"] = len(detections)
    return metrics
