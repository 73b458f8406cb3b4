"""The full chain: videos -> features -> window dataset -> detections in seconds."""

import json

import numpy as np
import pytest
import torch

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrProcessor
from selfdetr_hf.data import FeatureFolder, build_dataset, load_annotations
from selfdetr_hf.features import VideoBackbone, detect_extracted, detect_videos, extract_features, load_feature_metadata


@pytest.fixture
def detector():
    torch.manual_seed(0)
    config = SelfDetrConfig(
        feature_dim=32, d_model=32, num_attention_heads=4, ffn_dim=64, encoder_layers=1, decoder_layers=2,
        num_queries=6, input_norm_groups=8, id2label={0: "wave"},
    )  # fmt: skip
    return SelfDetrForActionDetection(config).eval()


def test_extracted_features_build_a_dataset_whose_ground_truth_sits_where_the_action_is(
    video_folder, action_interval, tiny_backbone, tmp_path
):
    out = tmp_path / "features"
    extract_features(video_folder, out, backbone=tiny_backbone, progress=False)
    metadata = load_feature_metadata(out)
    database = {
        video_id: {"subset": "test", "fps": meta.fps, "duration": meta.duration,
                   "annotations": [{"label": "wave", "segment": list(action_interval)}]}
        for video_id, meta in metadata.items()
    }  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps({"database": database}))
    first = metadata["kitchen_01"]

    with pytest.warns(UserWarning, match=r"2 of 2 videos have fewer than 32 feature steps"):  # 3 s videos
        dataset = build_dataset(
            load_annotations(tmp_path / "annotations.json"), FeatureFolder(out), SelfDetrProcessor.thumos14(),
            feature_stride=first.stride, clip_frames=first.clip_len,
        )  # fmt: skip
    row = next(row for row in dataset if row["video_id"] == "kitchen_01")
    assert np.asarray(row["input_features"]).shape == (128, 32) and sum(row["attention_mask"]) == first.num_steps
    assert row["feature_fps"] == pytest.approx(first.feature_fps)
    assert row["time_offset"] == pytest.approx(first.time_offset)
    start, end = (np.array(action_interval) - first.time_offset) * first.feature_fps / first.num_steps
    np.testing.assert_allclose(row["segments"], [[(start + end) / 2, end - start]], rtol=1e-5)


def test_detections_of_extracted_features_are_in_seconds_within_each_video(
    video_folder, tiny_backbone, detector, tmp_path
):
    extract_features(video_folder, tmp_path, backbone=tiny_backbone, progress=False)
    detections = detect_extracted(detector, SelfDetrProcessor.thumos14(), tmp_path)
    assert set(detections) == {"kitchen_01", "kitchen_02"}
    for video_id, duration in (("kitchen_01", 3.0), ("kitchen_02", 2.4)):
        segments = np.asarray(detections[video_id]["segments"])
        assert len(segments) > 0 and segments.min() >= 0 and segments.max() <= duration + 1e-6
        assert set(detections[video_id]["label_names"]) == {"wave"}


def test_detect_videos_equals_extraction_then_detection(video_folder, tiny_backbone, detector, tmp_path):
    backbone = VideoBackbone.from_pretrained(tiny_backbone)
    processor = SelfDetrProcessor.thumos14()
    chained = detect_videos(detector, processor, video_folder, backbone=backbone, progress=False)
    extract_features(video_folder, tmp_path, backbone=backbone, progress=False)
    stepwise = detect_extracted(detector, processor, tmp_path)
    assert set(chained) == set(stepwise)
    for video_id in chained:
        np.testing.assert_allclose(chained[video_id]["scores"], stepwise[video_id]["scores"])
        np.testing.assert_allclose(chained[video_id]["segments"], stepwise[video_id]["segments"])


def test_a_backbone_of_another_feature_size_is_refused(video_folder, tiny_backbone, detector):
    detector.config.feature_dim = 64
    with pytest.raises(ValueError, match="32-d features; the model expects 64-d"):
        detect_videos(detector, SelfDetrProcessor.thumos14(), video_folder, backbone=tiny_backbone, progress=False)


def test_the_web_demo_detects_on_uploaded_videos_as_detect_videos_does(
    video_folder, bad_videos, tiny_backbone, detector, tmp_path
):
    from selfdetr_hf.app.detection import run_detection
    from selfdetr_hf.app.inputs import uploaded_videos

    backbone = VideoBackbone.from_pretrained(tiny_backbone)
    processor = SelfDetrProcessor.thumos14()
    uploads = [*sorted(video_folder.iterdir()), bad_videos["junk"]]
    with pytest.warns(UserWarning, match="skipped 1 of 3 videos that could not be read: junk"):
        videos = uploaded_videos(uploads, tmp_path / "request", backbone, clip_len=16, stride=4, max_mb=1)
    result = run_detection(detector, processor, videos, tmp_path / "detections.json")
    expected = detect_videos(detector, processor, video_folder, backbone=backbone, progress=False)
    assert list(result.detections) == ["kitchen_01", "kitchen_02"] and list(result.failures) == ["junk"]
    for video_id, found in expected.items():
        np.testing.assert_allclose(result.detections[video_id]["scores"], found["scores"])
