"""Fine-tune Self-DETR with the Hugging Face `Trainer`, evaluating mAP every epoch.

From scratch on the built-in synthetic data:

    python examples/finetune_trainer.py --synthetic --output-dir runs/trainer

From a pretrained model on your own annotated features, with a new label set:

    python examples/finetune_trainer.py --model org/selfdetr-thumos14 \\
        --annotations my_videos.json --features features/ --feature-fps 7.5 \\
        --train-subset train --eval-subset test --output-dir runs/mine [--push-to-hub me/selfdetr-mine]

The model computes its loss (Eq. 9, self-feedback included) from the `labels` column;
`compute_metrics` post-processes the windows of each video with the processor and
scores them with the ActivityNet protocol. The best checkpoint (highest average mAP) is
reloaded at the end and saved with its processor.

`--compile` runs the encoder-decoder under `torch.compile` (the Hungarian matching and the
loss stay eager); the first steps, and the first evaluation, are slow while it compiles.

An output folder holding a run (a model, `checkpoint-N` folders, results) is refused:
`--resume` continues it from its newest `checkpoint-N`, `--overwrite` deletes that run
(other files are left alone) and starts afresh.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transformers import Trainer, TrainingArguments

from selfdetr_hf.command_options import positive_float, positive_int
from selfdetr_hf.data import SelfDetrDataCollator, window_metadata
from selfdetr_hf.evaluation.metric import build_compute_metrics
from selfdetr_hf.processing_self_detr import SelfDetrProcessor
from selfdetr_hf.training.commands import (
    PRESET_SUBSETS,
    add_data_arguments,
    add_output_arguments,
    build_model,
    load_data,
)
from selfdetr_hf.training.compilation import compile_for_training
from selfdetr_hf.training.run_folder import RUN_ARTEFACTS, check_output_dir, clear_run

TRAINER_RUN = (*RUN_ARTEFACTS, "checkpoint-*", "training_args.bin", "all_results.json", "eval_results.json")
"""What a Trainer run writes in its output folder (and what `selfdetr train` writes)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--model", help="pretrained model (name or directory); default: a new model")
    add_data_arguments(parser)
    parser.add_argument("--train-subset", help="default: train (synthetic) or validation (THUMOS14)")
    parser.add_argument("--eval-subset", help="default: test")
    parser.add_argument("--epochs", type=positive_float, default=30)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--learning-rate", type=positive_float, default=2e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compile", action="store_true", help="run the encoder-decoder under torch.compile")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="push the best model and processor to the Hub")
    add_output_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    check_output_dir(
        output_dir, resume=args.resume, overwrite=args.overwrite, artefacts=TRAINER_RUN, resume_from="checkpoint-*"
    )
    preset = "synthetic" if args.synthetic else "thumos14"
    processor = SelfDetrProcessor.thumos14()
    data = load_data(
        args,
        processor,
        train_subset=args.train_subset or PRESET_SUBSETS[preset][0],
        eval_subset=args.eval_subset or PRESET_SUBSETS[preset][1],
    )
    # From scratch, or from a pretrained model whose class head is re-initialised for the data's labels.
    model = build_model(data.label_names, data.feature_dim, pretrained=args.model)
    if args.compile:
        compile_for_training(model)

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=1e-4,
        max_grad_norm=0.1,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        seed=args.seed,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="average_mAP",
        greater_is_better=True,
        remove_unused_columns=False,  # labels are a list of dicts per batch
        logging_steps=10,
        report_to=[],
        push_to_hub=bool(args.push_to_hub),
        hub_model_id=args.push_to_hub,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data.train_dataset,
        eval_dataset=data.eval_dataset,
        data_collator=SelfDetrDataCollator(),
        compute_metrics=build_compute_metrics(
            processor, window_metadata(data.eval_dataset), data.eval_annotations, id2label=model.config.id2label
        ),
    )
    if args.overwrite:
        clear_run(output_dir, TRAINER_RUN)
    trainer.train(resume_from_checkpoint=args.resume or None)
    metrics = trainer.evaluate()
    trainer.save_model(args.output_dir)
    processor.save_pretrained(args.output_dir)
    trainer.save_metrics("eval", metrics)
    if args.push_to_hub:
        processor.push_to_hub(args.push_to_hub)
        trainer.push_to_hub()
    print({name: round(value, 4) for name, value in metrics.items() if "mAP" in name})
    return metrics


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as error:
        print(f"finetune_trainer.py: error: {error}", file=sys.stderr)
        sys.exit(2)
