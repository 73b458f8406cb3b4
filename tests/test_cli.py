"""The `selfdetr` command line: every subcommand's help, detect and evaluate (train and demo: tests/training)."""

import json
import subprocess
import sys

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


def test_a_model_whose_config_has_an_invalid_value_is_a_one_line_error(saved_model, feature_folder, tmp_path):
    settings = json.loads((saved_model / "config.json").read_text())
    (saved_model / "config.json").write_text(json.dumps({**settings, "d_model": 34}))
    command = [sys.executable, "-m", "selfdetr_hf.cli", "detect", "--model", str(saved_model), "--features",
               str(feature_folder), "--feature-fps", "7.5", "--output", str(tmp_path / "out.json")]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "invalid configuration" in result.stderr
    assert "d_model (34) must be divisible by num_attention_heads (4)" in result.stderr
    assert not (tmp_path / "out.json").exists()
