"""Extraction: outputs and their metadata, equality with the backbone run by hand,
backbone families, resuming, and bad videos."""

import json
import os

import numpy as np
import pytest
import torch

from selfdetr_hf.features import (
    VideoBackbone,
    VideoError,
    VideoReader,
    extract_features,
    extract_video,
    load_feature_metadata,
    sampled_offsets,
)

av = pytest.importorskip("av")


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_each_video_gets_time_by_channels_features_and_its_timing(video_folder, tiny_backbone, tmp_path):
    out = tmp_path / "features"
    summary = extract_features(video_folder, out, backbone=tiny_backbone, progress=False)
    assert summary.extracted == ["kitchen_01", "kitchen_02"] and not summary.failed
    features = np.load(out / "kitchen_01.npy")
    assert features.shape == ((75 - 16) // 4 + 1, 32) and features.dtype == np.float32
    metadata = json.loads((out / "kitchen_01.json").read_text())
    assert metadata["fps"] == 25.0 and metadata["stride"] == 4 and metadata["clip_len"] == 16
    assert metadata["num_frames"] == 75 and metadata["num_steps"] == 15 and metadata["feature_dim"] == 32
    assert metadata["feature_fps"] == 25.0 / 4 and metadata["time_offset"] == 0.5 * 16 / 25.0
    assert metadata["duration"] == 3.0 and metadata["backbone"] == str(tiny_backbone)
    assert np.load(out / "kitchen_02.npy").shape == ((60 - 16) // 4 + 1, 32)


def test_a_feature_step_is_the_backbone_mean_token_on_its_clip(video_folder, tiny_backbone, tmp_path):
    from transformers import AutoImageProcessor, AutoModel

    extract_features(video_folder / "kitchen_01.mp4", tmp_path, backbone=tiny_backbone, progress=False)
    features = np.load(tmp_path / "kitchen_01.npy")
    frames = decode(video_folder / "kitchen_01.mp4")
    processor, model = AutoImageProcessor.from_pretrained(tiny_backbone), AutoModel.from_pretrained(tiny_backbone)
    for step in (0, 6, 14):
        clip = [frames[4 * step + offset] for offset in sampled_offsets(16, 4)]
        with torch.no_grad():
            hidden = model(**processor([clip], return_tensors="pt")).last_hidden_state
        np.testing.assert_allclose(features[step], hidden.mean(dim=1)[0].numpy(), rtol=1e-4, atol=1e-5)


def test_features_do_not_depend_on_the_batch_size(video_folder, tiny_backbone, tmp_path):
    backbone = VideoBackbone.from_pretrained(tiny_backbone)
    for batch_size in (1, 6):
        extract_features(
            video_folder, tmp_path / str(batch_size), backbone=backbone, batch_size=batch_size, progress=False
        )
    np.testing.assert_allclose(
        np.load(tmp_path / "1" / "kitchen_01.npy"), np.load(tmp_path / "6" / "kitchen_01.npy"), atol=1e-6
    )


def test_clips_reach_the_backbone_as_soon_as_their_frames_are_decoded(video_folder, tiny_backbone, monkeypatch):
    decoded, decoded_at_forward = [], []
    read_frames, forward = VideoReader.frames, VideoBackbone.__call__

    def counting_frames(reader):
        for frame in read_frames(reader):
            decoded.append(frame)
            yield frame

    def recording_forward(backbone, pixel_values):
        decoded_at_forward.append(len(decoded))
        return forward(backbone, pixel_values)

    monkeypatch.setattr(VideoReader, "frames", counting_frames)
    monkeypatch.setattr(VideoBackbone, "__call__", recording_forward)
    extract_video(video_folder / "kitchen_01.mp4", VideoBackbone.from_pretrained(tiny_backbone), 16, 4, batch_size=2)
    # batch k holds clips 2k and 2k + 1, the second ending at frame 16 + 4 * (2k + 1); the last,
    # partial batch (clip 14) runs when the video ends
    assert decoded_at_forward == [20, 28, 36, 44, 52, 60, 68, 75]


def tiny_timesformer(folder):
    from transformers import TimesformerConfig, TimesformerModel, VideoMAEImageProcessorPil

    config = TimesformerConfig(
        image_size=32, patch_size=16, num_frames=8, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=48,
    )  # fmt: skip
    TimesformerModel(config).save_pretrained(folder)
    VideoMAEImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return 24


def tiny_xclip(folder):
    from transformers import CLIPImageProcessorPil, XCLIPConfig, XCLIPModel

    config = XCLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16, "num_frames": 4, "mit_hidden_size": 24,
                       "mit_intermediate_size": 32, "mit_num_hidden_layers": 1, "mit_num_attention_heads": 2},
        projection_dim=24, prompt_layers=1, prompt_attention_heads=2,
    )  # fmt: skip
    XCLIPModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return 24


@pytest.mark.parametrize(
    ("make_backbone", "pooling"), [(tiny_timesformer, "mean_tokens"), (tiny_xclip, "video_embedding")]
)
def test_other_backbone_families_give_one_vector_per_clip(make_backbone, pooling, video_folder, tmp_path):
    feature_dim = make_backbone(tmp_path / "backbone")
    extract_features(video_folder / "kitchen_01.mp4", tmp_path / "out", backbone=tmp_path / "backbone", progress=False)
    metadata = load_feature_metadata(tmp_path / "out")["kitchen_01"]
    assert np.load(tmp_path / "out" / "kitchen_01.npy").shape == (15, feature_dim)
    assert metadata.pooling == pooling


def test_a_second_run_skips_complete_videos_and_redoes_broken_ones(video_folder, tiny_backbone, tmp_path):
    backbone = VideoBackbone.from_pretrained(tiny_backbone)
    extract_features(video_folder, tmp_path, backbone=backbone, progress=False)
    written = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}

    summary = extract_features(video_folder, tmp_path, backbone=backbone, progress=False)
    assert summary.skipped == ["kitchen_01", "kitchen_02"] and summary.extracted == []
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == written

    data = (tmp_path / "kitchen_01.npy").read_bytes()
    (tmp_path / "kitchen_01.npy").write_bytes(data[: len(data) // 2])
    (tmp_path / "kitchen_02.json").unlink()
    summary = extract_features(video_folder, tmp_path, backbone=backbone, progress=False)
    assert summary.extracted == ["kitchen_01", "kitchen_02"]
    assert np.load(tmp_path / "kitchen_01.npy").shape == (15, 32)


def test_other_sampling_settings_redo_the_video(video_folder, tiny_backbone, tmp_path):
    backbone = VideoBackbone.from_pretrained(tiny_backbone)
    extract_features(video_folder / "kitchen_01.mp4", tmp_path, backbone=backbone, progress=False)
    summary = extract_features(video_folder / "kitchen_01.mp4", tmp_path, backbone=backbone, stride=8, progress=False)
    assert summary.extracted == ["kitchen_01"]
    assert np.load(tmp_path / "kitchen_01.npy").shape == ((75 - 16) // 8 + 1, 32)


def test_an_interrupted_write_leaves_nothing_that_looks_complete(video_folder, tiny_backbone, tmp_path, monkeypatch):
    def interrupted(handle, array):
        handle.write(b"partial")
        raise KeyboardInterrupt

    backbone = VideoBackbone.from_pretrained(tiny_backbone)
    with monkeypatch.context() as patch:
        patch.setattr(np, "save", interrupted)
        with pytest.raises(KeyboardInterrupt):
            extract_features(video_folder, tmp_path / "out", backbone=backbone, progress=False)
    assert os.listdir(tmp_path / "out") == []
    summary = extract_features(video_folder, tmp_path / "out", backbone=backbone, progress=False)
    assert summary.extracted == ["kitchen_01", "kitchen_02"]
    assert sorted(os.listdir(tmp_path / "out")) == [
        "kitchen_01.json",
        "kitchen_01.npy",
        "kitchen_02.json",
        "kitchen_02.npy",
    ]


def test_bad_videos_are_named_skipped_and_counted(
    video_folder, bad_videos, tiny_backbone, tmp_path, make_video, capsys
):
    short = make_video(tmp_path / "short.mp4", seconds=0.4)
    with pytest.warns(UserWarning, match=r"skipped 4 of 6 videos .*: empty, junk, short, truncated"):
        summary = extract_features(
            [video_folder, *bad_videos.values(), short], tmp_path / "out", backbone=tiny_backbone, progress=False
        )
    assert summary.extracted == ["kitchen_01", "kitchen_02"]
    assert "unreadable" in summary.failed["junk"] and "truncated video" in summary.failed["truncated"]
    assert "no frame" in summary.failed["empty"] and "10 frames, fewer than one clip of 16" in summary.failed["short"]
    assert "skipped video junk" in capsys.readouterr().err
    assert sorted(load_feature_metadata(tmp_path / "out")) == ["kitchen_01", "kitchen_02"]


def test_on_error_raises_at_a_bad_video(bad_videos, tiny_backbone, tmp_path):
    with pytest.raises(VideoError, match=r"truncated\.mkv"):
        extract_features(bad_videos["truncated"], tmp_path, backbone=tiny_backbone, on_error="error", progress=False)
