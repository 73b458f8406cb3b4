"""`selfdetr extract-features` and `selfdetr detect --videos` end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrProcessor
from selfdetr_hf.cli import main


@pytest.fixture
def saved_detector(tmp_path):
    torch.manual_seed(0)
    config = SelfDetrConfig(
        feature_dim=32, d_model=32, num_attention_heads=4, ffn_dim=64, encoder_layers=1, decoder_layers=2,
        num_queries=6, input_norm_groups=8, id2label={0: "wave", 1: "stir"},
    )  # fmt: skip
    SelfDetrForActionDetection(config).save_pretrained(tmp_path / "detector")
    SelfDetrProcessor.thumos14(top_k_per_video=10).save_pretrained(tmp_path / "detector")
    return tmp_path / "detector"


def extract(*arguments):
    return main(["extract-features", *map(str, arguments), "--no-progress"])


def test_extract_features_writes_each_video_and_a_rerun_skips_them(video_folder, tiny_backbone, tmp_path, capsys):
    assert extract("--videos", video_folder, "--out", tmp_path / "out", "--backbone", tiny_backbone) == 0
    assert "2 videos extracted, 0 already complete, 0 unreadable and skipped" in capsys.readouterr().out
    assert np.load(tmp_path / "out" / "kitchen_01.npy").shape == (15, 32)
    assert extract("--videos", video_folder, "--out", tmp_path / "out", "--backbone", tiny_backbone) == 0
    assert "0 videos extracted, 2 already complete" in capsys.readouterr().out


def test_extract_features_skips_a_bad_video_and_strict_stops_at_it(
    video_folder, bad_videos, tiny_backbone, tmp_path, capsys
):
    common = ["--out", tmp_path / "out", "--backbone", tiny_backbone, "--clip-len", 8, "--stride", 8]
    with pytest.warns(UserWarning, match="skipped 1 of 3 videos"):
        assert extract("--videos", video_folder, bad_videos["truncated"], *common) == 0
    assert "2 videos extracted, 0 already complete, 1 unreadable and skipped" in capsys.readouterr().out
    assert extract("--videos", bad_videos["truncated"], *common, "--strict") == 2
    assert "selfdetr extract-features: error:" in capsys.readouterr().err


def test_detect_videos_chains_extraction_and_detection(video_folder, tiny_backbone, saved_detector, tmp_path):
    output = tmp_path / "detections.json"
    assert main(["detect", "--model", str(saved_detector), "--videos", str(video_folder), "--backbone",
                 str(tiny_backbone), "--feature-dir", str(tmp_path / "features"), "--output", str(output)]) == 0  # fmt: skip
    results = json.loads(output.read_text())["results"]
    assert set(results) == {"kitchen_01", "kitchen_02"}
    assert all(0 <= e["segment"][0] <= e["segment"][1] <= 3.0 + 1e-6 for e in results["kitchen_01"])

    again = tmp_path / "again.json"
    assert main(["detect", "--model", str(saved_detector), "--features", str(tmp_path / "features"),
                 "--output", str(again)]) == 0  # fmt: skip
    assert json.loads(again.read_text())["results"] == results


def test_detect_features_without_rate_or_metadata_is_an_error(saved_detector, tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    np.save(tmp_path / "plain" / "video.npy", np.zeros((20, 32), dtype=np.float32))
    assert main(["detect", "--model", str(saved_detector), "--features", str(tmp_path / "plain"),
                 "--output", str(tmp_path / "out.json")]) == 2  # fmt: skip
    assert "no extract" in capsys.readouterr().err


def test_detect_takes_features_or_videos_not_both(saved_detector, video_folder, tmp_path, capsys):
    assert main(["detect", "--model", str(saved_detector), "--features", str(tmp_path), "--videos", str(video_folder),
                 "--output", str(tmp_path / "out.json")]) == 2  # fmt: skip
    assert "give --features or --videos" in capsys.readouterr().err


def test_two_processes_split_the_videos_and_write_what_one_process_writes(video_folder, tiny_backbone, tmp_path):
    """``accelerate launch`` on CPU processes (``--multi_gpu`` with ``ACCELERATE_USE_CPU``, as
    ``--cpu --num_processes 2`` starts a single process in accelerate 1.x)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "selfdetr_hf.cli",
               "extract-features", "--videos", str(video_folder), "--out", str(tmp_path / "two"), "--backbone",
               str(tiny_backbone), "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("videos extracted") == 1  # one summary, from the main process
    assert "2 videos extracted" in result.stdout
    assert extract("--videos", video_folder, "--out", tmp_path / "one", "--backbone", tiny_backbone) == 0
    for video_id in ("kitchen_01", "kitchen_02"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "two" / f"{video_id}.npy"), np.load(tmp_path / "one" / f"{video_id}.npy")
        )


def test_an_output_that_is_a_file_is_refused_before_the_backbone_is_loaded(tmp_path):
    (tmp_path / "video.mp4").write_bytes(b"not decoded: the output is checked first")
    (tmp_path / "notes.txt").write_text("mine")
    command = [sys.executable, "-m", "selfdetr_hf.cli", "extract-features", "--videos", str(tmp_path / "video.mp4"),
               "--out", str(tmp_path / "notes.txt"), "--threads", "1"]  # fmt: skip
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}  # a backbone look-up fails at once instead of retrying
    result = subprocess.run(command, env=environment, check=False, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == f"selfdetr extract-features: error: {tmp_path / 'notes.txt'}: a file, not a folder\n"
    assert (tmp_path / "notes.txt").read_text() == "mine"
