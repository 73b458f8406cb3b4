"""The web demo's parts without a browser: reading uploads, detecting with the page's
settings, the timeline and table, the attention view, and building the page."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from app_fixtures import FEATURE_FPS, save_tiny_model, write_feature_file

from selfdetr_hf import SelfDetrProcessor
from selfdetr_hf.app.attention import diversity_rows, video_attention
from selfdetr_hf.app.detection import detection_processor, run_detection
from selfdetr_hf.app.inputs import synthetic_videos, uploaded_features, with_annotations
from selfdetr_hf.app.views import detection_rows, timeline_svg
from selfdetr_hf.evaluation.diagnostics import video_attention_diversity, window_attention_maps
from selfdetr_hf.evaluation.submission import read_submission
from selfdetr_hf.features.metadata import FeatureMetadata
from selfdetr_hf.inference import VideoTiming, detect
from selfdetr_hf.model_loading import load_model


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def feature_file(tmp_path: Path) -> Path:
    return write_feature_file(tmp_path / "uploads" / "clip.npy")


def _settings(threshold=0.0, top_k=5, nms_method="nms"):
    return detection_processor(SelfDetrProcessor.thumos14(), threshold=threshold, top_k=top_k, nms_method=nms_method)


def test_uploaded_features_are_timed_by_the_given_fps(feature_file, tmp_path):
    videos = uploaded_features([feature_file], tmp_path / "request", feature_fps=FEATURE_FPS)
    assert videos.video_ids == ["clip"] and videos.timing == VideoTiming(FEATURE_FPS)


def test_uploaded_features_without_fps_are_timed_by_their_extraction_json(feature_file, tmp_path):
    metadata = FeatureMetadata(
        video=str(tmp_path / "clip.mp4"), backbone="tiny", pooling="mean_tokens", clip_len=16, stride=4,
        backbone_frames=4, dtype="float32", fps=30.0, num_frames=1212, num_steps=300, feature_dim=16,
    )  # fmt: skip
    sidecar = feature_file.with_suffix(".json")
    sidecar.write_text(json.dumps(metadata.to_dict()), encoding="utf-8")
    videos = uploaded_features([feature_file, sidecar], tmp_path / "request", feature_fps=None)
    assert videos.timing("clip") == VideoTiming(7.5, 16 / 60, 1212 / 30)


def test_an_upload_above_the_size_limit_is_refused_by_name(feature_file, tmp_path):
    with pytest.raises(ValueError, match=r"clip\.npy: 0 MiB, above the upload limit of 0.01 MiB"):
        uploaded_features([feature_file], tmp_path / "request", feature_fps=FEATURE_FPS, max_mb=0.01)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["notes.txt"], r"notes\.txt: not a file the demo reads here"),
        (["clip.json"], r"upload at least one feature file"),
    ],
)
def test_uploads_that_are_no_feature_files_are_refused(names, message, tmp_path):
    paths = []
    for name in names:
        (tmp_path / name).write_text("{}", encoding="utf-8")
        paths.append(tmp_path / name)
    with pytest.raises(ValueError, match=message):
        uploaded_features(paths, tmp_path / "request", feature_fps=FEATURE_FPS)


def test_two_uploads_of_one_name_are_refused(feature_file, tmp_path):
    other = tmp_path / "other" / "clip.npy"
    other.parent.mkdir()
    np.save(other, np.zeros((5, 16), dtype=np.float32))
    with pytest.raises(ValueError, match=r"two uploaded files are named clip\.npy"):
        uploaded_features([feature_file, other], tmp_path / "request", feature_fps=FEATURE_FPS)


def test_detections_match_the_library_and_the_download_holds_them(tiny_model_dir, feature_file, tmp_path):
    model = load_model(tiny_model_dir)
    videos = uploaded_features([feature_file], tmp_path / "request", feature_fps=FEATURE_FPS)
    fractions = []
    result = run_detection(
        model, _settings(top_k=7), videos, tmp_path / "detections.json", batch_size=2,
        progress=lambda fraction, text: fractions.append(fraction),
    )  # fmt: skip
    expected = detect(model, _settings(top_k=7), {"clip": np.load(feature_file)}, feature_fps=FEATURE_FPS)["clip"]
    assert len(result.detections["clip"]["scores"]) == 7
    torch.testing.assert_close(result.detections["clip"]["segments"], expected["segments"])
    assert fractions == [2 / 3, 1.0]  # 3 test windows of 128 steps (stride 96), 2 per forward pass
    saved = read_submission(result.submission)["clip"]
    np.testing.assert_allclose(saved.scores, expected["scores"].numpy(), rtol=1e-6)


def test_a_bad_upload_is_reported_with_the_commands_message_and_the_others_kept(tiny_model_dir, feature_file, tmp_path):
    broken = feature_file.parent / "broken.npy"
    values = np.zeros((200, 16), dtype=np.float32)
    values[17, 3] = np.nan
    np.save(broken, values)
    videos = uploaded_features([feature_file, broken], tmp_path / "request", feature_fps=FEATURE_FPS)
    result = run_detection(load_model(tiny_model_dir), _settings(), videos, tmp_path / "detections.json")
    assert list(result.detections) == ["clip"]
    assert re.fullmatch(r"video 'broken': NaN or Inf in the features \(.*broken\.npy\), first at time step 17",
                        result.failures["broken"])  # fmt: skip


def test_features_without_fps_or_json_name_the_video(tiny_model_dir, feature_file, tmp_path):
    videos = uploaded_features([feature_file], tmp_path / "request", feature_fps=None)
    with pytest.raises(ValueError, match=r"video 'clip': give the feature fps, or upload clip\.json"):
        run_detection(load_model(tiny_model_dir), _settings(), videos, tmp_path / "detections.json")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threshold": 1.5}, r"score threshold must lie in \[0, 1\]"),
        ({"top_k": 0}, r"top_k_per_video must be a positive integer"),
        ({"nms_method": "greedy"}, r"nms_method must be one of nms, soft_nms, none"),
    ],
)
def test_settings_outside_their_range_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        _settings(**settings)


def test_the_timeline_draws_one_bar_per_detection_and_per_ground_truth_segment():
    detections = {
        "segments": torch.tensor([[1.0, 4.0], [10.0, 12.5]]),
        "scores": torch.tensor([0.9, 0.3]),
        "label_names": ["<jump>", "throw"],
    }
    truth = {"segments": [[0.5, 4.5], [20.0, 22.0], [30.0, 31.0]], "labels": ["<jump>", "throw", "throw"]}
    svg = timeline_svg(detections, truth, duration=40.0)
    assert svg.count('class="detection"') == 2 and svg.count('class="ground-truth"') == 3
    assert "<title>&lt;jump&gt;: score 0.900, 1.00-4.00 s</title>" in svg
    assert "<title>ground truth: throw, 20.00-22.00 s</title>" in svg
    assert detection_rows(detections) == [[1, "<jump>", 0.9, 1.0, 4.0], [2, "throw", 0.3, 10.0, 12.5]]


def test_an_empty_video_gives_an_empty_timeline_and_table():
    empty = {"segments": torch.zeros(0, 2), "scores": torch.zeros(0), "label_names": []}
    assert timeline_svg(empty, None, duration=10.0).count("<rect") == 0
    assert detection_rows(empty) == []


def test_the_attention_view_measures_every_window_as_diagnose_does(tiny_model_dir):
    model = load_model(tiny_model_dir)
    features = np.random.default_rng(1).standard_normal((150, 16)).astype(np.float32)
    done = []
    found = video_attention(model, features, window=9, window_size=16, progress=lambda d, t: done.append((d, t)))
    windows = window_attention_maps(model, features, 16)  # all 10 windows in one pass
    per_window = [video_attention_diversity([window]) for window in windows]
    assert found.num_windows == 10 and done == [(8, 10), (10, 10)]
    for kind in ("encoder", "decoder", "cross"):
        np.testing.assert_allclose(found.diversity[kind].mean, video_attention_diversity(windows)[kind], rtol=1e-6)
        np.testing.assert_allclose(found.diversity[kind].std, np.std([w[kind] for w in per_window], 0), atol=1e-7)
        for chosen, expected in zip(found.maps[kind], windows[9][kind]):
            np.testing.assert_allclose(chosen, expected.numpy(), rtol=1e-5)
    assert found.maps["encoder"][0].shape == (6, 6)  # the last window's 6 valid steps
    headers, rows = diversity_rows({"a": found, "b": found})
    assert headers == ["attention", "layer", "a", "b"] and len(rows) == 1 + 2 + 2  # encoder 1, decoder 2, cross 2


def test_a_window_past_the_video_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match=r"window 4: the video has 3 window\(s\) of 128 steps"):
        video_attention(load_model(tiny_model_dir), np.zeros((300, 16), dtype=np.float32), window=3)


def test_synthetic_videos_are_those_of_selfdetr_demo_with_their_ground_truth(tmp_path):
    videos = synthetic_videos(feature_dim=16)
    first_id, first = next(iter(videos.items()))
    assert len(videos) == 96 and first.ground_truth[first_id].subset == "test"
    assert np.asarray(first.features[first_id]).shape[1] == 16
    annotations = tmp_path / "gt.json"
    annotations.write_text(
        json.dumps({"database": {first_id: {"subset": "test", "duration": 9.0, "annotations": [
            {"label": "jump", "segment": [1.0, 2.0]}]}}}),
        encoding="utf-8",
    )  # fmt: skip
    assert with_annotations(first, annotations).ground_truth[first_id].labels == ["jump"]


def test_build_demo_refuses_a_compare_model_of_another_feature_size(tiny_model_dir, tmp_path):
    from selfdetr_hf.app import build_demo

    other = save_tiny_model(tmp_path / "wide", feature_dim=32)
    with pytest.raises(ValueError, match=r".*wide takes 32-d features, .* 16-d: compare models of one feature size"):
        build_demo(tiny_model_dir, compare_model=other)


def test_build_demo_gives_a_gradio_blocks(tiny_model_dir):
    import gradio as gr

    from selfdetr_hf.app import build_demo

    assert isinstance(build_demo(Path(tiny_model_dir)), gr.Blocks)
