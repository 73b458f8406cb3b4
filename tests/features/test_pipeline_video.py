"""The ``temporal-action-detection`` pipeline on video files: features by `extract-features`'
code with the backbone of the processor config, detections as `detect_videos` gives them."""

import numpy as np
import pytest
from transformers import pipeline

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrProcessor
from selfdetr_hf.features import detect_videos


@pytest.fixture
def model_dir(tmp_path, tiny_backbone):
    config = SelfDetrConfig(feature_dim=32, d_model=32, num_attention_heads=4, ffn_dim=64, encoder_layers=1,
                            decoder_layers=2, num_queries=6, input_norm_groups=8, dropout=0.0,
                            id2label={0: "move"})  # fmt: skip
    SelfDetrForActionDetection(config).save_pretrained(tmp_path / "model")
    SelfDetrProcessor.thumos14(video_backbone=str(tiny_backbone)).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_a_video_gives_what_detect_videos_gives(model_dir, video_folder, tiny_backbone):
    detector = pipeline("temporal-action-detection", model=str(model_dir))
    video = video_folder / "kitchen_01.mp4"
    found = detector(str(video), top_k=5)
    model = SelfDetrForActionDetection.from_pretrained(model_dir)
    processor = SelfDetrProcessor.from_pretrained(model_dir)
    expected = detect_videos(model, processor, [video], backbone=tiny_backbone, progress=False)["kitchen_01"]
    assert [detection["label"] for detection in found] == expected["label_names"][:5]
    assert np.allclose([detection["score"] for detection in found], expected["scores"][:5].numpy(), atol=1e-6)
    assert np.allclose([detection["segment"] for detection in found], expected["segments"][:5].numpy(), atol=1e-4)
    assert all(0 <= start <= end <= 3.0 for start, end in (detection["segment"] for detection in found))
    both = detector([str(video), str(video_folder / "kitchen_02.avi")], top_k=5)
    assert len(both) == 2 and [detection["label"] for detection in both[0]] == expected["label_names"][:5]
    assert np.allclose([detection["score"] for detection in both[0]], expected["scores"][:5].numpy(), atol=1e-5)


def test_a_backbone_of_another_feature_size_is_refused(model_dir, video_folder, tiny_backbone):
    processor = SelfDetrProcessor.from_pretrained(model_dir)
    model = SelfDetrForActionDetection(SelfDetrConfig(feature_dim=64, d_model=32, num_attention_heads=4, ffn_dim=64,
                                                      input_norm_groups=8))  # fmt: skip
    detector = pipeline("temporal-action-detection", model=model, feature_extractor=processor)
    with pytest.raises(ValueError, match="gives 32-d features; the model takes 64-d"):
        detector(str(video_folder / "kitchen_01.mp4"))
