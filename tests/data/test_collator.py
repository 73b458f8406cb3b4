"""Collation: padding, masks, labels as tensors only, and the model / Trainer contract."""

import numpy as np
import torch
import transformers

from selfdetr_hf import SelfDetrForActionDetection, SelfDetrProcessor
from selfdetr_hf.data import SelfDetrDataCollator
from selfdetr_hf.data.synthetic import make_synthetic_videos


def row(length, channels=32, num_segments=1, **extra):
    return {
        "input_features": np.ones((length, channels), dtype=np.float32),
        "attention_mask": np.ones(length, dtype=np.int64),
        "class_labels": list(range(num_segments)),
        "segments": [[0.5, 0.2]] * num_segments,
        **extra,
    }


def test_features_are_padded_to_the_longest_with_a_mask():
    batch = SelfDetrDataCollator()([row(5), row(3)])
    assert batch["input_features"].shape == (2, 5, 32) and batch["input_features"].dtype == torch.float32
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert not batch["input_features"][1, 3:].any()


def test_row_mask_of_a_padded_window_is_kept():
    padded = row(4)
    padded["attention_mask"] = np.array([1, 1, 0, 0])
    assert SelfDetrDataCollator()([padded])["attention_mask"].tolist() == [[1, 1, 0, 0]]


def test_labels_are_a_list_of_dicts_of_tensors_only():
    labels = SelfDetrDataCollator()([row(4, num_segments=2), row(4, num_segments=0)])["labels"]
    assert [set(label) for label in labels] == [{"class_labels", "segments"}] * 2
    assert labels[0]["class_labels"].dtype == torch.int64 and labels[0]["segments"].dtype == torch.float32
    assert labels[0]["segments"].shape == (2, 2) and labels[1]["segments"].shape == (0, 2)


def test_metadata_columns_stay_out_of_the_batch():
    batch = SelfDetrDataCollator()([row(4, video_id="v", window_offset=3, duration=9.0)])
    assert set(batch) == {"input_features", "attention_mask", "labels"}


def test_rows_without_ground_truth_give_no_labels():
    unlabeled = {"input_features": np.ones((4, 32), dtype=np.float32)}
    assert "labels" not in SelfDetrDataCollator()([unlabeled])


def test_model_trains_on_a_collated_batch(tiny_config):
    batch = SelfDetrDataCollator()([row(6, num_segments=2), row(4)])
    outputs = SelfDetrForActionDetection(tiny_config)(**batch)
    assert torch.isfinite(outputs.loss)


def test_trainer_runs_on_the_dataset_with_the_collator(tiny_config, tmp_path):
    videos = make_synthetic_videos(num_videos=6, num_classes=3, feature_dim=tiny_config.feature_dim)
    dataset = videos.dataset(SelfDetrProcessor.thumos14())
    tiny_config.id2label = dict(enumerate(videos.label_names))
    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        remove_unused_columns=False,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=SelfDetrForActionDetection(tiny_config),
        args=arguments,
        train_dataset=dataset,
        data_collator=SelfDetrDataCollator(),
    )
    result = trainer.train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)
