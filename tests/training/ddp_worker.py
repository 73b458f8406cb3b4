"""Trains a tiny Self-DETR on synthetic windows; run under `accelerate launch` by the tests.

ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N ddp_worker.py OUTPUT_DIR
"""

import json
import sys

import torch
from accelerate import PartialState

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection
from selfdetr_hf.data.synthetic import make_synthetic_videos
from selfdetr_hf.processing_self_detr import SelfDetrProcessor
from selfdetr_hf.training.accelerate_loop import AccelerateTrainingArguments, train
from selfdetr_hf.training.recipes import TrainingRecipe


def main(output_dir: str) -> None:
    videos = make_synthetic_videos(12, num_classes=3, feature_dim=16, max_duration=30)
    processor = SelfDetrProcessor.thumos14()
    config = SelfDetrConfig(
        feature_dim=16, d_model=32, num_attention_heads=4, ffn_dim=64, encoder_layers=2, decoder_layers=2,
        num_queries=6, input_norm_groups=8, dropout=0.0, id2label=dict(enumerate(videos.label_names)),
    )  # fmt: skip
    torch.manual_seed(0)  # identical initial weights in every launch and process
    model = SelfDetrForActionDetection(config)
    metrics = train(
        model,
        processor,
        videos.dataset(processor, subset="train"),
        AccelerateTrainingArguments(
            output_dir=output_dir,
            recipe=TrainingRecipe(learning_rate=1e-3, batch_size=4, epochs=1, seed=0),
            eval_every=0,
            progress=False,
        ),
        eval_dataset=videos.dataset(processor, subset="test", training=False),
        eval_annotations={k: v for k, v in videos.annotations.items() if v.subset == "test"},
    )
    state = PartialState()
    if state.is_main_process:
        with open(f"{output_dir}/worker_metrics.json", "w", encoding="utf-8") as handle:
            json.dump({**metrics, "num_processes": state.num_processes}, handle)


if __name__ == "__main__":
    main(sys.argv[1])
