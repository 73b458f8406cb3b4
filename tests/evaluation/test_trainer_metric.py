"""`build_compute_metrics`: Trainer predictions -> processor -> mAP against the full annotations."""

import numpy as np
import pytest
import torch

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.data import VideoAnnotation, build_dataset, window_metadata
from selfdetr_hf.evaluation import build_compute_metrics
from selfdetr_hf.processing_self_detr import SelfDetrProcessor

# One feature step per second; windows of 64 steps, none of the segments crosses a window border.
ANNOTATIONS = {
    "clip_1": VideoAnnotation("Test", 128.0, 30.0, np.array([[5.0, 20.0], [70.0, 90.0], [100.0, 110.0]]),
                              ["jump", "throw", "jump"]),
    "clip_2": VideoAnnotation("Test", 60.0, 30.0, np.array([[10.0, 40.0]]), ["run"]),
}  # fmt: skip


class Prediction:
    """What `Trainer` hands to ``compute_metrics`` (the fields used here)."""

    def __init__(self, predictions):
        self.predictions = predictions


@pytest.fixture
def eval_setup(tiny_config):
    processor = SelfDetrProcessor(window_size=64, test_window_stride=64)
    features = {video: np.random.randn(int(a.duration), tiny_config.feature_dim) for video, a in ANNOTATIONS.items()}
    dataset = build_dataset(
        ANNOTATIONS, features, processor, training=False,
        label_names=list(tiny_config.id2label.values()), feature_fps=1.0,
    )  # fmt: skip
    compute_metrics = build_compute_metrics(
        processor, window_metadata(dataset), ANNOTATIONS, id2label=tiny_config.id2label
    )
    return dataset, compute_metrics


def test_ground_truth_as_predictions_scores_perfect_map(eval_setup, tiny_config):
    dataset, compute_metrics = eval_setup
    num_queries, num_classes = tiny_config.num_queries, tiny_config.num_labels
    batches, batch = [], []
    for row in dataset.with_format(None).select_columns(["class_labels", "segments"]).to_list():
        logits = np.full((num_queries, num_classes), -10.0, dtype=np.float32)
        segments = np.full((num_queries, 2), 0.5, dtype=np.float32)
        for query, (label, segment) in enumerate(zip(row["class_labels"], row["segments"])):
            logits[query, label] = 10.0
            segments[query] = segment
        batch.append((logits, segments))
        if len(batch) == 2:
            batches.append(tuple(np.stack(part) for part in zip(*batch)))
            batch = []
    batches.append(tuple(np.stack(part) for part in zip(*batch)))

    metrics = compute_metrics(Prediction(batches))

    assert metrics == {"mAP@0.3": 1.0, "mAP@0.4": 1.0, "mAP@0.5": 1.0, "mAP@0.6": 1.0, "mAP@0.7": 1.0,
                       "average_mAP": 1.0}  # fmt: skip


def trainer_metrics(tmp_path, config, dataset, compute_metrics, *, concatenated):
    from transformers import Trainer, TrainingArguments

    from selfdetr_hf.data import SelfDetrDataCollator

    arguments = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=2, eval_do_concat_batches=concatenated,
        remove_unused_columns=False, report_to=[], use_cpu=True,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = Trainer(
        model=SelfDetrForActionDetection(config), args=arguments, eval_dataset=dataset,
        data_collator=SelfDetrDataCollator(), compute_metrics=compute_metrics,
    )  # fmt: skip
    return trainer.evaluate()


def test_trainer_evaluate_reports_the_same_map_with_concatenated_or_per_batch_predictions(
    eval_setup, tiny_config, tmp_path
):
    dataset, compute_metrics = eval_setup
    per_batch = trainer_metrics(tmp_path, tiny_config, dataset, compute_metrics, concatenated=False)
    concatenated = trainer_metrics(tmp_path, tiny_config, dataset, compute_metrics, concatenated=True)
    assert 0.0 < concatenated["eval_average_mAP"] <= 1.0  # the seeded model finds some segments
    assert {f"eval_mAP@{t}" for t in ("0.3", "0.4", "0.5", "0.6", "0.7")} <= set(concatenated)
    maps = [key for key in concatenated if "mAP" in key]
    assert {key: concatenated[key] for key in maps} == {key: per_batch[key] for key in maps}


def test_trainer_map_equals_the_map_of_the_evaluate_command_path(eval_setup, tiny_config, tmp_path):
    from accelerate import Accelerator
    from transformers import Trainer, TrainingArguments

    from selfdetr_hf.data import SelfDetrDataCollator
    from selfdetr_hf.evaluation import evaluate_detections
    from selfdetr_hf.inference import as_submission
    from selfdetr_hf.training.accelerate_loop import predict_windows

    dataset, compute_metrics = eval_setup
    processor = SelfDetrProcessor(window_size=64, test_window_stride=64)
    model = SelfDetrForActionDetection(tiny_config).eval()
    arguments = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=16, eval_do_concat_batches=False,
        remove_unused_columns=False, report_to=[], use_cpu=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=arguments, eval_dataset=dataset, data_collator=SelfDetrDataCollator(),
                      compute_metrics=compute_metrics)  # fmt: skip
    trainer_map = trainer.evaluate()["eval_average_mAP"]

    predictions = predict_windows(model, dataset, Accelerator(cpu=True), batch_size=16)
    detections = processor.post_process_action_detection(
        predictions, window_metadata(dataset), id2label=model.config.id2label, by_video=True
    )
    command_map = evaluate_detections(ANNOTATIONS, as_submission(detections), (0.3, 0.4, 0.5, 0.6, 0.7)).average_mAP
    assert trainer_map > 0
    assert trainer_map == pytest.approx(command_map, abs=1e-12)
