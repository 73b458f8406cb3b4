"""``selfdetr evaluate`` as a user runs it: every video by default, ground truth as the file
holds it, and the same mAP as ``selfdetr score`` on the submission it writes."""

import json
import re

import numpy as np
import pytest
import torch

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.evaluation import (
    ACTIVITYNET_TIOU_THRESHOLDS,
    THUMOS14_TIOU_THRESHOLDS,
    evaluate_detections,
    read_submission,
)
from selfdetr_hf.processing_self_detr import SelfDetrProcessor

ANNOTATIONS = {
    "database": {
        "video_a": {"subset": "test", "duration": 40.0, "fps": 30.0, "annotations": [
            {"label": "jump", "segment": [3.0, 9.5]}, {"label": "throw", "segment": [20.0, 24.0]},
            {"label": "jump", "segment": [38.0, 45.0]}]},  # ends past the video: scored as written
        "video_b": {"subset": "train", "duration": 12.0, "fps": 30.0, "annotations": [
            {"label": "throw", "segment": [1.0, 4.0]}]},
    }
}  # fmt: skip


def printed_average_map(stdout: str) -> str:
    """The average mAP (%) column of a printed mAP table."""
    return re.search(r"^mAP \(%\) .*", stdout, re.MULTILINE).group(0).split()[-1]


@pytest.fixture
def saved_model(tmp_path, make_small_config):
    torch.manual_seed(0)
    SelfDetrForActionDetection(make_small_config()).save_pretrained(tmp_path / "model")
    SelfDetrProcessor.thumos14(top_k_per_video=50).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "features"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for video, steps in (("video_a", 300), ("video_b", 90)):
        np.save(folder / f"{video}.npy", rng.normal(size=(steps, 16)).astype(np.float32))
    (tmp_path / "annotations.json").write_text(json.dumps(ANNOTATIONS))
    return tmp_path / "annotations.json", folder


def test_evaluate_keeps_an_earlier_evaluation_unless_asked(run_selfdetr, saved_model, dataset, tmp_path):
    annotations, features = dataset
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text("an earlier evaluation")
    arguments = ["evaluate", "--model", str(saved_model), "--annotations", str(annotations), "--features",
                 str(features), "--feature-fps", "7.5", "--output-dir", str(tmp_path / "eval")]  # fmt: skip
    result = run_selfdetr(*arguments)
    assert result.returncode == 2
    assert "already holds metrics.json: replace them with --overwrite" in result.stderr
    assert (tmp_path / "eval" / "metrics.json").read_text() == "an earlier evaluation"
    assert not (tmp_path / "eval" / "submission.json").exists()
    assert run_selfdetr(*arguments, "--overwrite").returncode == 0
    assert "average_mAP" in json.loads((tmp_path / "eval" / "metrics.json").read_text())


def test_evaluate_without_subset_scores_every_video(run_selfdetr, saved_model, dataset, tmp_path):
    annotations, features = dataset
    result = run_selfdetr("evaluate", "--model", str(saved_model), "--annotations", str(annotations),
                      "--features", str(features), "--feature-fps", "7.5", "--output-dir", str(tmp_path / "eval"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert set(read_submission(tmp_path / "eval" / "submission.json")) == {"video_a", "video_b"}
    assert "mAP (%)" in result.stdout


def test_evaluate_scores_the_file_as_written_like_score(run_selfdetr, saved_model, dataset, tmp_path):
    annotations, features = dataset
    evaluated = run_selfdetr("evaluate", "--model", str(saved_model), "--annotations", str(annotations),
                         "--features", str(features), "--feature-fps", "7.5", "--subset", "test",
                         "--tiou", "0.1", "--output-dir", str(tmp_path / "eval"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    submission = tmp_path / "eval" / "submission.json"
    scored = run_selfdetr("score", "--annotations", str(annotations), "--predictions", str(submission),
                      "--subset", "test", "--tiou", "0.1", "--json", str(tmp_path / "score.json"))  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics == json.loads((tmp_path / "score.json").read_text())
    assert printed_average_map(evaluated.stdout) == printed_average_map(scored.stdout)
    # The segment past the video's end is part of the ground truth as written: a detection
    # of its part beyond the video's end is a hit there, and a miss against it clipped.
    written = {"video_a": {"segments": [[3.0, 9.5], [20.0, 24.0], [38.0, 45.0]], "labels": ["jump", "throw", "jump"]}}
    clipped = {"video_a": {"segments": [[3.0, 9.5], [20.0, 24.0], [38.0, 40.0]], "labels": ["jump", "throw", "jump"]}}
    assert evaluate_detections(written, read_submission(submission), [0.1]).to_dict() == metrics
    beyond_the_end = {"video_a": {"segments": np.array([[40.5, 45.0]]), "scores": np.array([1.0]), "labels": ["jump"]}}
    assert evaluate_detections(written, beyond_the_end, [0.1]).per_class_AP["jump"][0] > 0
    assert evaluate_detections(clipped, beyond_the_end, [0.1]).per_class_AP["jump"][0] == 0


def test_evaluate_and_score_agree_on_the_real_thumos14_test_file(
    run_selfdetr, shared_data, make_small_config, tmp_path
):
    from selfdetr_hf.data import label_names, load_annotations

    annotations = shared_data / "thumos14" / "thumos14.json"
    as_written = load_annotations(annotations, subset="Test", invalid_segments="keep")
    with pytest.warns(UserWarning, match="clipped"):
        clipped = load_annotations(annotations, subset="Test")
    # 26 segments of video_test_0000270, _0000814 and _0001081 end past their video.
    assert sum(len(as_written[v].labels) - len(clipped[v].labels) for v in as_written) == 26
    torch.manual_seed(0)
    model = SelfDetrForActionDetection(make_small_config(id2label=dict(enumerate(label_names(as_written)))))
    model.save_pretrained(tmp_path / "model")
    SelfDetrProcessor.thumos14().save_pretrained(tmp_path / "model")
    features, feature_fps = tmp_path / "features", 0.5  # coarse steps keep the test fast
    features.mkdir()
    rng = np.random.default_rng(0)
    for video, record in as_written.items():
        steps = max(1, round(record.duration * feature_fps))
        np.save(features / f"{video}.npy", rng.normal(size=(steps, 16)).astype(np.float32))

    evaluated = run_selfdetr("evaluate", "--model", str(tmp_path / "model"), "--annotations", str(annotations),
                             "--features", str(features), "--feature-fps", str(feature_fps), "--subset", "Test",
                             "--output-dir", str(tmp_path / "eval"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    submission = tmp_path / "eval" / "submission.json"
    scored = run_selfdetr("score", "--annotations", str(annotations), "--predictions", str(submission),
                          "--subset", "Test", "--json", str(tmp_path / "score.json"))  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics == json.loads((tmp_path / "score.json").read_text())
    assert printed_average_map(evaluated.stdout) == printed_average_map(scored.stdout)
    assert metrics["average_mAP"] > 0
    detections = read_submission(submission)
    assert evaluate_detections(clipped, detections, metrics["tiou_thresholds"]).mAP.tolist() != metrics["mAP"]


@pytest.mark.parametrize("class_agnostic", [False, True])
def test_train_evaluates_against_the_file_as_written_and_trains_on_clipped_targets(dataset, class_agnostic):
    from selfdetr_hf.cli import build_parser
    from selfdetr_hf.training.commands import EVERY_SUBSET, load_data

    annotations, features = dataset
    args = build_parser().parse_args(["train", "--output-dir", "unused", "--annotations", str(annotations),
                                      "--features", str(features), "--feature-fps", "7.5"])  # fmt: skip
    with pytest.warns(UserWarning, match="1 segment\\(s\\) clipped"):  # the training targets
        data = load_data(args, SelfDetrProcessor.thumos14(), train_subset=EVERY_SUBSET, eval_subset="test",
                         class_agnostic=class_agnostic)  # fmt: skip
    assert set(data.eval_annotations) == {"video_a"}
    assert data.eval_annotations["video_a"].segments.tolist() == [[3.0, 9.5], [20.0, 24.0], [38.0, 45.0]]
    assert len(set(data.eval_annotations["video_a"].labels)) == (1 if class_agnostic else 2)


def test_evaluate_on_a_trained_model_reproduces_the_mAP_train_wrote(run_selfdetr, dataset, make_small_config, tmp_path):
    from selfdetr_hf.cli import build_parser
    from selfdetr_hf.training.accelerate_loop import AccelerateTrainingArguments, train
    from selfdetr_hf.training.commands import EVERY_SUBSET, load_data

    annotations, features = dataset
    data_options = ["--annotations", str(annotations), "--features", str(features), "--feature-fps", "7.5"]
    args = build_parser().parse_args(["train", "--output-dir", str(tmp_path / "run"), *data_options])
    processor = SelfDetrProcessor.thumos14(top_k_per_video=50)
    with pytest.warns(UserWarning, match="clipped"):
        data = load_data(args, processor, train_subset=EVERY_SUBSET, eval_subset="test")
    model = SelfDetrForActionDetection(make_small_config())
    training = AccelerateTrainingArguments(str(tmp_path / "run"), max_steps=2, progress=False)
    metrics = train(model, processor, data.train_dataset, training, eval_dataset=data.eval_dataset,
                    eval_annotations=data.eval_annotations)  # fmt: skip

    evaluated = run_selfdetr("evaluate", "--model", str(tmp_path / "run"), *data_options, "--subset", "test",
                             "--output-dir", str(tmp_path / "eval"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == {
        key: metrics[key] for key in ("tiou_thresholds", "mAP", "average_mAP", "per_class_AP")
    }
    assert metrics["average_mAP"] > 0


@pytest.mark.parametrize(("preset", "thresholds"), [("thumos14", THUMOS14_TIOU_THRESHOLDS),
                                                    ("activitynet", ACTIVITYNET_TIOU_THRESHOLDS)])  # fmt: skip
def test_train_evaluates_at_the_thresholds_of_its_preset(preset, thresholds, monkeypatch, tmp_path):
    from selfdetr_hf.cli import main
    from selfdetr_hf.training import commands

    used = {}

    def record_arguments(model, processor, train_dataset, training_args, **kwargs):
        used["args"] = training_args
        return {}

    monkeypatch.setattr(commands, "train", record_arguments)
    assert main(["train", "--preset", preset, "--synthetic", "--output-dir", str(tmp_path)]) == 0
    assert tuple(used["args"].tiou_thresholds) == thresholds
