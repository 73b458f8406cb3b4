"""`selfdetr evaluate` and `selfdetr train` check every input before any compute: every bad
feature file is named at once, a wrong feature rate is refused with the rate that fits,
and nothing is written."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import small_config

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.processing_self_detr import SelfDetrProcessor


@pytest.fixture
def dataset(tmp_path):
    """Three 40 s test videos at 7.5 feature steps per second: one good, one with a NaN
    late in the video, one without a feature file."""
    database = {
        video: {"subset": "test", "duration": 40.0, "fps": 30.0,
                "annotations": [{"label": "jump", "segment": [3.0, 9.5]}]}
        for video in ("good", "nan_late", "no_file")
    }  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps({"database": database}))
    folder = tmp_path / "features"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "good.npy", rng.normal(size=(300, 16)).astype(np.float32))
    late = rng.normal(size=(300, 16)).astype(np.float32)
    late[290, 0] = np.nan
    np.save(folder / "nan_late.npy", late)
    return tmp_path / "annotations.json", folder


def run_cli(*args):
    command = [sys.executable, "-m", "selfdetr_hf.cli", *map(str, args), "--threads", "1"]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_evaluate_names_every_bad_file_before_any_compute(dataset, tmp_path):
    torch.manual_seed(0)
    SelfDetrForActionDetection(small_config()).save_pretrained(tmp_path / "model")
    SelfDetrProcessor.thumos14().save_pretrained(tmp_path / "model")
    annotations, features = dataset
    result = run_cli("evaluate", "--model", tmp_path / "model", "--annotations", annotations, "--features", features,
                     "--feature-fps", 7.5, "--subset", "test", "--output-dir", tmp_path / "eval")  # fmt: skip
    assert result.returncode == 2
    assert "2 of 3 videos cannot be used" in result.stderr
    assert "nan_late.npy" in result.stderr and "time step 290" in result.stderr
    assert "no_file.npy" in result.stderr
    assert not (tmp_path / "eval").exists()


def test_train_refuses_a_feature_rate_that_does_not_fit_the_durations(dataset, tmp_path):
    annotations, features = dataset
    (features / "nan_late.npy").unlink()
    database = json.loads(annotations.read_text())["database"]
    annotations.write_text(json.dumps({"database": {"good": {**database["good"], "subset": "validation"}}}))
    result = run_cli("train", "--annotations", annotations, "--features", features, "--feature-fps", 30,
                     "--train-subset", "validation", "--eval-subset", "validation", "--output-dir", tmp_path / "run",
                     "--epochs", 1, "--no-progress")  # fmt: skip
    assert result.returncode == 2
    assert "'good'" in result.stderr and "good.npy" in result.stderr
    assert "duration is 40.0 s; a feature fps of 7.5 would fit" in result.stderr


def test_evaluate_checks_the_channels_against_the_model_before_any_compute(dataset, tmp_path):
    torch.manual_seed(0)
    SelfDetrForActionDetection(small_config()).save_pretrained(tmp_path / "model")  # 16-d features
    annotations, features = dataset
    (features / "nan_late.npy").unlink()
    database = json.loads(annotations.read_text())["database"]
    annotations.write_text(json.dumps({"database": {"good": database["good"]}}))
    result = run_cli("evaluate", "--model", tmp_path / "model", "--annotations", annotations,
                     "--features", features, features, "--feature-fps", 7.5, "--output-dir", tmp_path / "eval")  # fmt: skip
    assert result.returncode == 2
    assert "video 'good': features have 32 channels, expected 16" in result.stderr
    assert "good.npy" in result.stderr
    assert not (tmp_path / "eval").exists()


def test_evaluate_warns_of_a_feature_span_off_the_duration_in_one_line(dataset, tmp_path):
    torch.manual_seed(0)
    SelfDetrForActionDetection(small_config()).save_pretrained(tmp_path / "model")
    annotations, features = dataset
    database = json.loads(annotations.read_text())["database"]
    annotations.write_text(json.dumps({"database": {"good": database["good"]}}))
    result = run_cli("evaluate", "--model", tmp_path / "model", "--annotations", annotations, "--features", features,
                     "--feature-fps", 10, "--output-dir", tmp_path / "eval")  # fmt: skip
    assert result.returncode == 0
    warning = "selfdetr evaluate: warning: 1 of 1 videos: features span more than 5% more or less than the annotated"
    assert warning in result.stderr
    assert "UserWarning" not in result.stderr and "build_dataset(" not in result.stderr
