"""The ``temporal-action-detection`` pipeline: the processor's detections for arrays, tensors,
feature files and lists, windows batched over the call, bad inputs named, and a saved
pipeline that runs where ``selfdetr_hf`` cannot be imported."""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline

from selfdetr_hf import SelfDetrForActionDetection, SelfDetrProcessor, TemporalActionDetectionPipeline
from selfdetr_hf.inference import detect

REPO = Path(__file__).resolve().parents[1]
FPS = 7.5
WITHOUT_THE_PACKAGE = (
    "import sys; "
    'sys.meta_path[:] = [finder for finder in sys.meta_path if "selfdetr" not in repr(finder)]; '
    f"sys.path[:] = [entry for entry in sys.path if entry.rstrip('/') not in ('', {str(REPO)!r})]\n"
    "try:\n    import selfdetr_hf\nexcept ImportError:\n    pass\nelse:\n    sys.exit('selfdetr_hf is importable')"
)
"""Python lines after which ``import selfdetr_hf`` fails (checked): neither the editable
install's finder nor the repository is on the path."""


@pytest.fixture
def model_dir(tmp_path, make_small_config) -> Path:
    folder = tmp_path / "model"
    SelfDetrForActionDetection(make_small_config(dropout=0.0)).save_pretrained(folder)
    SelfDetrProcessor.thumos14().save_pretrained(folder)
    return folder


@pytest.fixture
def detector(model_dir) -> TemporalActionDetectionPipeline:
    return pipeline("temporal-action-detection", model=str(model_dir))


def features(steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(steps, 16)).astype(np.float32)


def as_pipeline_output(found: dict) -> list[dict]:
    """`detect`'s result of one video in the pipeline's form."""
    return [
        {"label": label, "score": score, "segment": segment}
        for label, score, segment in zip(found["label_names"], found["scores"].tolist(), found["segments"].tolist())
    ]


def assert_same_detections(found: list[dict], expected: list[dict]) -> None:
    """Equal labels, scores and segments to float32 rounding (windows batched otherwise)."""
    assert [detection["label"] for detection in found] == [detection["label"] for detection in expected]
    for key in ("score", "segment"):
        values = [detection[key] for detection in found]
        assert np.allclose(values, [detection[key] for detection in expected], rtol=1e-4, atol=1e-5)


def test_an_array_gives_the_processors_detections_in_seconds(detector, model_dir):
    video = features(300)
    model = SelfDetrForActionDetection.from_pretrained(model_dir)
    expected = detect(model, SelfDetrProcessor.from_pretrained(model_dir), {"v": video}, feature_fps=FPS)["v"]
    found = detector(video, feature_fps=FPS)
    assert found == as_pipeline_output(expected) and len(found) > 0
    scores = [detection["score"] for detection in found]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= start <= end <= 300 / FPS for start, end in (d["segment"] for d in found))


def test_a_tensor_and_a_feature_file_give_what_the_array_gives(detector, tmp_path):
    video = features(200)
    np.save(tmp_path / "kitchen.npy", video)
    expected = detector(video, feature_fps=FPS, time_offset=0.5)
    assert detector(torch.from_numpy(video), feature_fps=FPS, time_offset=0.5) == expected
    assert detector(str(tmp_path / "kitchen.npy"), feature_fps=FPS, time_offset=0.5) == expected
    assert detector(tmp_path / "kitchen.npy", feature_fps=FPS, time_offset=0.5) == expected


def test_a_list_gives_one_result_per_input_in_order(detector, tmp_path):
    videos = [features(300, seed=1), features(90, seed=2), features(500, seed=3)]
    np.save(tmp_path / "b.npy", videos[1])
    found = detector([videos[0], str(tmp_path / "b.npy"), torch.from_numpy(videos[2])], feature_fps=FPS)
    assert len(found) == 3
    for result, video in zip(found, videos):
        assert_same_detections(result, detector(video, feature_fps=FPS))


def test_windows_of_every_video_are_batched_over_the_call(detector):
    forwards = []
    detector.model.register_forward_hook(lambda module, args, kwargs, output: forwards.append(
        len(kwargs["input_features"])), with_kwargs=True)  # fmt: skip
    detector([features(300), features(500)], feature_fps=FPS, batch_size=4)  # 3 + 5 windows of 128 steps
    assert forwards == [4, 4]
    forwards.clear()
    detector(features(1000), feature_fps=FPS)  # 11 windows, default batch size 16
    assert forwards == [11]


def test_threshold_and_top_k(detector):
    video = features(400)
    every = detector(video, feature_fps=FPS, threshold=0.0, top_k=200)
    threshold = every[len(every) // 2]["score"]
    assert detector(video, feature_fps=FPS, top_k=3) == every[:3]
    kept = detector(video, feature_fps=FPS, threshold=threshold)
    assert kept and all(detection["score"] >= threshold for detection in kept)
    assert kept == [detection for detection in every if detection["score"] >= threshold]


def test_bfloat16_on_the_cpu_device(model_dir):
    detector = pipeline("temporal-action-detection", model=str(model_dir), device="cpu", dtype=torch.bfloat16)
    assert detector.model.dtype == torch.bfloat16 and detector.device == torch.device("cpu")
    found = detector(features(300), feature_fps=FPS, top_k=5)
    assert len(found) == 5 and all(np.isfinite(detection["score"]) for detection in found)


@pytest.mark.parametrize(
    ("make_input", "error", "message"),
    [
        (lambda tmp: features(300)[:, :12], ValueError, "input 0.*12 channels, expected 16"),
        (lambda tmp: np.where(np.arange(300)[:, None] == 7, np.nan, features(300)), ValueError,
         "input 0.*NaN or Inf.*time step 7"),
        (lambda tmp: features(300)[0], ValueError, r"input 0.*\(time, channels\)"),
        (lambda tmp: str(tmp / "missing.npy"), FileNotFoundError, "missing.npy"),
        (lambda tmp: str(tmp / "missing.mp4"), FileNotFoundError, "missing.mp4"),
        (lambda tmp: {"features": 1}, TypeError, "input 0: a dict"),
    ],
)  # fmt: skip
def test_bad_inputs_are_one_line_errors_naming_the_input(detector, tmp_path, make_input, error, message):
    with pytest.raises(error, match=message) as raised:
        detector(make_input(tmp_path), feature_fps=FPS)
    assert "\n" not in str(raised.value)


def test_a_bad_file_in_a_list_is_named(detector, tmp_path):
    np.save(tmp_path / "nan.npy", np.full((50, 16), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=r"nan\.npy.*NaN"):
        detector([features(100), str(tmp_path / "nan.npy")], feature_fps=FPS)


def test_feature_inputs_need_a_feature_rate_batches_a_size_and_a_video_a_backbone(detector, tmp_path):
    with pytest.raises(ValueError, match="input 0: feature_fps"):
        detector(features(100))
    with pytest.raises(ValueError, match="feature_fps must be positive"):
        detector(features(100), feature_fps=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        detector(features(100), feature_fps=FPS, batch_size=0)
    (tmp_path / "clip.mp4").write_bytes(b"not read")
    with pytest.raises(ValueError, match="clip.mp4: the model's processor config names no video_backbone"):
        detector(str(tmp_path / "clip.mp4"))


def test_a_saved_pipeline_runs_and_is_shared_where_the_package_cannot_be_imported(detector, hub_endpoint, tmp_path):
    video = features(300)
    np.save(tmp_path / "video.npy", video)
    expected = detector(video, feature_fps=FPS, top_k=5)
    detector.save_pretrained(tmp_path / "saved")
    script = WITHOUT_THE_PACKAGE + textwrap.dedent(
        """
        import json
        import numpy as np
        import torch
        from transformers import AutoModel, AutoModelForObjectDetection, pipeline

        torch.set_num_threads(1)
        saved, video, fps = sys.argv[1], np.load(sys.argv[2]), float(sys.argv[3])
        detector = pipeline("temporal-action-detection", model=saved, trust_remote_code=True)
        assert type(detector).__name__ == "TemporalActionDetectionPipeline"
        assert type(detector.model).__name__ == "SelfDetrForActionDetection"
        found = detector(video, feature_fps=fps, top_k=5)
        assert detector(sys.argv[2], feature_fps=fps, top_k=5) == found
        assert type(AutoModel.from_pretrained(saved, trust_remote_code=True)).__name__ == "SelfDetrModel"
        detection = AutoModelForObjectDetection.from_pretrained(saved, trust_remote_code=True)
        assert type(detection).__name__ == "SelfDetrForActionDetection"

        detector.push_to_hub("org/self-detr-pipeline")
        from_hub = pipeline(model="org/self-detr-pipeline", trust_remote_code=True)
        assert from_hub(video, feature_fps=fps, top_k=5) == found
        assert not any(name.startswith("selfdetr_hf") for name in sys.modules), "the package was imported"
        print(json.dumps(found))
        """
    )
    stdout = hub_endpoint.run_python(script, str(tmp_path / "saved"), str(tmp_path / "video.npy"), str(FPS))
    assert json.loads(stdout.strip().splitlines()[-1]) == expected
