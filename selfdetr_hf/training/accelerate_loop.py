"""Training and evaluation with Accelerate: one process, DDP, mixed precision,
gradient accumulation, checkpoints every N steps and exact resume mid-epoch.

The global batch (windows per optimiser step, all processes together) is fixed by the
recipe; each optimiser step sees the same windows whatever the number of processes,
because batches are split across processes (``split_batches=True``) and the shuffling
is seeded per epoch.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
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
from .recipes import RECIPES, ExponentialMovingAverage, TrainingRecipe, build_optimizer, build_scheduler


@dataclass
class AccelerateTrainingArguments:
    """Settings of one Accelerate training run.

    Args:
        output_dir: where the final model (with processor, model card and `metrics.json`),
            `train_log.jsonl` and `checkpoints/` are written.
        recipe: a preset of `RECIPES` (``thumos14``, ``activitynet``) or a `TrainingRecipe`.
        epochs / batch_size / learning_rate / seed: override the recipe's.
        mixed_precision: ``no``, ``bf16`` or ``fp16``.
        gradient_accumulation_steps: micro-batches per optimiser step (the global batch
            stays the recipe's).
        checkpoint_every: save the full training state every N optimiser steps (0 = never).
        checkpoints_to_keep: how many checkpoints to keep.
        resume: continue from the last checkpoint in ``output_dir/checkpoints``, mid-epoch.
        eval_every: evaluate every N epochs (0 = only after the last epoch).
        max_steps: stop after this many optimiser steps in all (a shorter run).
        tensorboard: log losses, learning rate and mAP to TensorBoard in ``output_dir/logs``.
        tiou_thresholds: thresholds of the evaluation mAP.
        progress: show progress bars (main process only).
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
    eval_every: int = 1
    max_steps: int | None = None
    tensorboard: bool = False
    tiou_thresholds: Sequence[float] = THUMOS14_TIOU_THRESHOLDS
    progress: bool = True

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
) -> dict[str, Any]:
    """Train ``model`` on the windows of ``train_dataset`` with the recipe of ``args``.

    Evaluates mAP on ``eval_dataset`` (test windows) against ``eval_annotations`` every
    ``eval_every`` epochs and at the end, then saves the model (the EMA weights when the
    recipe has EMA) and the processor to ``args.output_dir`` on the main process.

    Returns:
        The last evaluation's metrics (`evaluate_detections` result as a dict, plus
        ``num_windows_evaluated``), or ``{}`` without evaluation data.
    """
    recipe = args.resolved_recipe()
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with="tensorboard" if args.tensorboard else None,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir),
            logging_dir=str(output_dir / "logs"),
            automatic_checkpoint_naming=True,
            total_limit=args.checkpoints_to_keep,
        ),
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True),
    )
    set_seed(recipe.seed)
    micro_batch = recipe.batch_size // args.gradient_accumulation_steps
    if micro_batch * args.gradient_accumulation_steps != recipe.batch_size or micro_batch % accelerator.num_processes:
        raise ValueError(
            f"batch_size {recipe.batch_size} must split into gradient_accumulation_steps "
            f"({args.gradient_accumulation_steps}) micro-batches divisible by the {accelerator.num_processes} processes"
        )
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

    if args.resume:
        checkpoint = _last_checkpoint(output_dir)
        accelerator.load_state(str(checkpoint))
        accelerator.project_configuration.iteration = int(checkpoint.name.split("_")[-1]) + 1
        accelerator.print(f"resumed from {checkpoint} at step {progress.completed_steps}")
    total_steps = recipe.epochs * steps_per_epoch
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    if args.tensorboard:
        accelerator.init_trackers("selfdetr", config={**asdict(recipe), "lr_drop_epochs": str(recipe.lr_drop_epochs)})

    log_path = output_dir / "train_log.jsonl"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            log_path.write_text("", encoding="utf-8")
    bar = tqdm(
        total=total_steps,
        initial=progress.completed_steps,
        disable=not (args.progress and accelerator.is_main_process),
        desc="training",
    )
    metrics: dict[str, Any] = {}
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
            if args.checkpoint_every and progress.completed_steps % args.checkpoint_every == 0:
                accelerator.save_state()
            if progress.completed_steps >= total_steps:
                break
        epoch_finished = progress.completed_steps == (epoch + 1) * steps_per_epoch
        last = progress.completed_steps >= total_steps
        due = args.eval_every and epoch_finished and (epoch + 1) % args.eval_every == 0
        if eval_dataset is not None and eval_annotations is not None and (due or last):
            evaluated = ema.model if ema is not None else model
            metrics = evaluate(evaluated, processor, eval_dataset, eval_annotations, accelerator, args.tiou_thresholds)
            accelerator.print(f"epoch {epoch}: average mAP {metrics['average_mAP']:.4f}")
            accelerator.log({"eval/average_mAP": metrics["average_mAP"]}, step=progress.completed_steps)
    bar.close()

    accelerator.wait_for_everyone()
    state_dict = ema.state_dict() if ema is not None else accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(output_dir, state_dict=state_dict)
        processor.save_pretrained(output_dir)
        if metrics:
            (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    accelerator.end_training()
    return metrics


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
        outputs = model(**batch)
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


def _last_checkpoint(output_dir: Path) -> Path:
    folder = output_dir / "checkpoints"
    checkpoints = sorted(folder.glob("checkpoint_*"), key=lambda path: int(path.name.split("_")[-1]))
    if not checkpoints:
        raise FileNotFoundError(f"--resume: no checkpoint in {folder}")
    return checkpoints[-1]


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
            outputs = model(**batch)
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
    started = time.perf_counter()
    predictions = predict_windows(model, eval_dataset, accelerator)
    config = accelerator.unwrap_model(model).config
    detections = processor.post_process_action_detection(
        predictions, window_metadata(eval_dataset), id2label=config.id2label, by_video=True
    )
    metrics = evaluate_detections(eval_annotations, as_submission(detections), tiou_thresholds).to_dict()
    metrics["num_windows_evaluated"] = len(predictions["logits"])
    metrics["num_videos_evaluated"] = len(detections)
    metrics["eval_seconds"] = time.perf_counter() - started
    return metrics
