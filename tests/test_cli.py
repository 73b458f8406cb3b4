"""The `selfdetr` command line: every subcommand's help, detect, evaluate and the demo."""

import json

import numpy as np
import pytest
import torch

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.cli import COMMANDS, main
from selfdetr_hf.processing_self_detr import SelfDetrProcessor


@pytest.fixture
def saved_model(tmp_path, make_small_config):
    torch.manual_seed(0)
    SelfDetrForActionDetection(make_small_config()).save_pretrained(tmp_path / "model")
    SelfDetrProcessor.thumos14(top_k_per_video=20).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.fixture
def feature_folder(tmp_path):
    folder = tmp_path / "features"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for video, steps in (("video_a", 300), ("video_b", 90)):
        np.save(folder / f"{video}.npy", rng.normal(size=(steps, 16)).astype(np.float32))
    return folder


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: selfdetr" in capsys.readouterr().out


def test_detect_writes_an_activitynet_submission(saved_model, feature_folder, tmp_path):
    output = tmp_path / "detections.json"
    assert main(["detect", "--model", str(saved_model), "--features", str(feature_folder),
                 "--feature-fps", "7.5", "--output", str(output)]) == 0  # fmt: skip
    results = json.loads(output.read_text())["results"]
    assert set(results) == {"video_a", "video_b"}
    entries = results["video_b"]
    assert 0 < len(entries) <= 20
    assert {entry["label"] for entry in entries} <= {"jump", "throw"}
    assert all(0 <= entry["segment"][0] <= entry["segment"][1] <= 90 / 7.5 + 1e-6 for entry in entries)
    assert [e["score"] for e in entries] == sorted((e["score"] for e in entries), reverse=True)


def test_detect_writes_csv_for_one_file(saved_model, feature_folder, tmp_path):
    output = tmp_path / "detections.csv"
    assert main(["detect", "--model", str(saved_model), "--features", str(feature_folder / "video_a.npy"),
                 "--feature-fps", "7.5", "--output", str(output)]) == 0  # fmt: skip
    lines = output.read_text().splitlines()
    assert lines[0] == "video,start,end,label,score"
    assert all(line.startswith("video_a,") for line in lines[1:])


def test_detect_with_the_wrong_channel_count_names_the_video(saved_model, tmp_path, capsys):
    np.save(tmp_path / "wide.npy", np.zeros((50, 32), dtype=np.float32))
    assert main(["detect", "--model", str(saved_model), "--features", str(tmp_path / "wide.npy"),
                 "--feature-fps", "7.5", "--output", str(tmp_path / "out.json")]) == 2  # fmt: skip
    assert "'wide'" in capsys.readouterr().err


def test_evaluate_on_a_custom_dataset_writes_metrics_and_submission(saved_model, feature_folder, tmp_path, capsys):
    annotations = {
        "database": {
            "video_a": {"subset": "test", "duration": 40.0, "fps": 30.0, "annotations": [
                {"label": "jump", "segment": [3.0, 9.5]}, {"label": "throw", "segment": [20.0, 24.0]}]},
            "video_b": {"subset": "test", "duration": 12.0, "fps": 30.0, "annotations": [
                {"label": "throw", "segment": [1.0, 4.0]}]},
        }
    }  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps(annotations))
    assert main(["evaluate", "--model", str(saved_model), "--annotations", str(tmp_path / "annotations.json"),
                 "--features", str(feature_folder), "--feature-fps", "7.5", "--subset", "test",
                 "--output-dir", str(tmp_path / "eval")]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert len(metrics["mAP"]) == 5 and 0.0 <= metrics["average_mAP"] <= 1.0
    assert set(json.loads((tmp_path / "eval" / "submission.json").read_text())["results"]) == {"video_a", "video_b"}
    assert "mAP (%)" in capsys.readouterr().out


def test_demo_trains_evaluates_saves_reloads_and_plots(tmp_path):
    assert main(["demo", "--output-dir", str(tmp_path), "--epochs", "1", "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["average_mAP"] <= 1.0 and len(metrics["mAP"]) == 5
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "model" / "preprocessor_config.json").is_file()
    assert (tmp_path / "timeline.png").stat().st_size > 10_000
