"""`selfdetr detect` as a user meets it: exit status, the message, the files left behind.

Bad feature files are reported by name after every good video is written; ambiguous
folders, wrong rates, unwritable outputs and wrong model folders are one-line errors.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import small_config

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.cli import COMMANDS, main
from selfdetr_hf.command_options import default_threads
from selfdetr_hf.processing_self_detr import SelfDetrProcessor

CHANNELS = 16


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    SelfDetrForActionDetection(small_config()).save_pretrained(folder)
    SelfDetrProcessor.thumos14(top_k_per_video=5).save_pretrained(folder)
    return folder


def write_videos(folder, lengths, channels=CHANNELS, extension=".npy"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for video, steps in lengths.items():
        array = rng.normal(size=(steps, channels)).astype(np.float32)
        if extension == ".npy":
            np.save(folder / f"{video}{extension}", array)
        else:
            torch.save(torch.from_numpy(array), folder / f"{video}{extension}")
    return folder


def run_cli(*args, check_traceback=True):
    command = [sys.executable, "-m", "selfdetr_hf.cli", *map(str, args), "--threads", "1"]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if check_traceback:
        assert "Traceback" not in result.stderr, result.stderr
    return result


def detect(model, *args):
    return run_cli("detect", "--model", model, *args)


def results(path):
    return json.loads(path.read_text())["results"]


def test_bad_files_are_reported_by_name_after_the_good_videos_are_written(saved_model, tmp_path):
    folder = write_videos(tmp_path / "features", {"good_a": 200, "good_b": 60, "tiny": 10})
    (folder / "broken.npy").write_bytes(b"\x93NUMPY not really")
    np.save(folder / "wide.npy", np.zeros((50, CHANNELS + 1), dtype=np.float32))
    nan = np.ones((300, CHANNELS), dtype=np.float32)
    nan[250, 3] = np.nan
    np.save(folder / "nan.npy", nan)
    output = tmp_path / "out.json"
    result = detect(saved_model, "--features", folder, "--feature-fps", 7.5, "--output", output)
    assert result.returncode == 2
    assert set(results(output)) == {"good_a", "good_b", "tiny"}
    errors = result.stderr
    assert "warning: 1 of 6 videos have fewer than 32 feature steps, a window holds 128: tiny" in errors
    assert "broken.npy" in errors and "wide.npy" in errors and "nan.npy" in errors and "time step 250" in errors
    assert "3 of 6 videos could not be used" in errors
    assert not (tmp_path / "out.json.partial").exists()


def test_an_existing_output_or_plot_is_kept_unless_asked(saved_model, tmp_path):
    features = write_videos(tmp_path / "features", {"a": 200})
    (tmp_path / "mine.json").write_text("my detections")
    (tmp_path / "mine.png").write_text("my plot")
    arguments = ["--features", features, "--feature-fps", 7.5]
    result = detect(saved_model, *arguments, "--output", tmp_path / "mine.json")
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "mine.json already exists: replace it with --overwrite, or choose another file"
    )
    result = detect(saved_model, *arguments, "--output", tmp_path / "new.json", "--plot", tmp_path / "mine.png")
    assert result.returncode == 2 and "mine.png already exists" in result.stderr
    assert (tmp_path / "mine.json").read_text() == "my detections"
    assert (tmp_path / "mine.png").read_text() == "my plot"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["features", "mine.json", "mine.png"]
    assert detect(saved_model, *arguments, "--output", tmp_path / "mine.json", "--overwrite").returncode == 0
    assert list(results(tmp_path / "mine.json")) == ["a"]


def test_a_pt_file_torch_will_not_read_safely_is_one_line_naming_it(saved_model, tmp_path):
    folder = write_videos(tmp_path / "features", {"good": 60})
    torch.save({"feats": np.zeros((60, CHANNELS), dtype=np.float32)}, folder / "numpy_inside.pt")
    result = detect(saved_model, "--features", folder, "--feature-fps", 7.5, "--output", tmp_path / "out.json")
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("selfdetr")] == [
        (
            f"selfdetr detect: error: video 'numpy_inside': {folder / 'numpy_inside.pt'}: not a tensor or a dict of "
            "tensors that torch.load(weights_only=True) can read"
        ),
        f"selfdetr detect: error: 1 of 2 videos could not be used (listed above); the other 1 are in {tmp_path / 'out.json'}",
    ]
    assert set(results(tmp_path / "out.json")) == {"good"}


def test_a_channels_first_file_is_named_with_the_option_that_reads_it(saved_model, tmp_path):
    folder = tmp_path / "features"
    folder.mkdir()
    np.save(folder / "v.npy", np.zeros((CHANNELS, 60), dtype=np.float32))
    result = detect(saved_model, "--features", folder, "--feature-fps", 7.5, "--output", tmp_path / "out.json")
    assert result.returncode == 2
    assert "video 'v': features have 60 channels, expected 16" in result.stderr
    assert "v.npy) (channels first? use layout='CT', or --feature-layout CT)" in result.stderr


def test_strict_stops_at_the_first_bad_file_and_writes_no_result(saved_model, tmp_path):
    folder = write_videos(tmp_path / "features", {"a_good": 60, "c_good": 60})
    (folder / "b_broken.npy").write_bytes(b"garbage")
    output = tmp_path / "out.csv"
    result = detect(saved_model, "--features", folder, "--feature-fps", 7.5, "--output", output, "--strict")
    assert result.returncode == 2 and "b_broken.npy" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1
    assert not output.exists()
    partial = (tmp_path / "out.csv.partial").read_text().splitlines()
    assert partial[0] == "video,start,end,label,score" and {line.split(",")[0] for line in partial[1:]} == {"a_good"}


def test_an_unwritable_output_is_refused_before_the_model_is_loaded(tmp_path):
    result = run_cli("detect", "--model", tmp_path / "no-model", "--features", tmp_path, "--feature-fps", 7.5,
                     "--output", tmp_path / "missing" / "out.json")  # fmt: skip
    assert result.returncode == 2
    assert "out.json: the folder" in result.stderr and "does not exist" in result.stderr


@pytest.mark.parametrize("rate", ["0", "-7.5", "nan"])
def test_non_positive_feature_rates_are_refused(rate, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", "--model", "m", "--features", str(tmp_path), "--feature-fps", rate, "--output", "o.json"])
    assert exit_info.value.code == 2
    assert "--feature-fps: must be a positive number" in capsys.readouterr().err


@pytest.mark.parametrize("offset", ["-1", "nan"])
def test_a_negative_or_non_finite_time_offset_is_refused_before_anything_is_written(offset, saved_model, tmp_path):
    features = write_videos(tmp_path / "features", {"a": 60})
    result = detect(saved_model, "--features", features, "--feature-fps", 7.5, "--time-offset", offset,
                    "--output", tmp_path / "out.json")  # fmt: skip
    assert result.returncode == 2
    assert f"argument --time-offset: must be a finite number >= 0, got {offset}" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["features"]


def test_a_video_in_two_formats_is_an_error_naming_both_files(saved_model, tmp_path):
    folder = write_videos(tmp_path / "features", {"v": 60, "other": 60})
    write_videos(folder, {"v": 60}, extension=".pt")
    output = tmp_path / "out.json"
    result = detect(saved_model, "--features", folder, "--feature-fps", 7.5, "--output", output)
    assert result.returncode == 2
    assert "v.npy" in result.stderr and "v.pt" in result.stderr and "--feature-extension" in result.stderr
    assert set(results(output)) == {"other"}
    result = detect(saved_model, "--features", folder, "--feature-fps", 7.5, "--feature-extension", ".pt",
                    "--output", output, "--overwrite")  # fmt: skip
    assert result.returncode == 0 and set(results(output)) == {"v"}


def test_extracted_features_without_or_with_mismatching_metadata_or_with_nan_are_named(saved_model, tmp_path):
    folder = write_videos(tmp_path / "features", {"timed": 60, "untimed": 60, "mismatched": 60, "nan": 60})
    nan = np.load(folder / "nan.npy")
    nan[42, 0] = np.nan
    np.save(folder / "nan.npy", nan)
    metadata = {"video": "x.mp4", "backbone": "b", "pooling": "mean_tokens", "clip_len": 16, "stride": 4,
                "backbone_frames": 16, "dtype": "float32", "fps": 30.0, "num_frames": 252, "num_steps": 60,
                "feature_dim": CHANNELS}  # fmt: skip
    (folder / "timed.json").write_text(json.dumps(metadata))
    (folder / "mismatched.json").write_text(json.dumps({**metadata, "num_steps": 61}))
    (folder / "nan.json").write_text(json.dumps(metadata))
    output = tmp_path / "out.json"
    result = detect(saved_model, "--features", folder, "--output", output)
    assert result.returncode == 2
    assert "untimed.json beside its features to time them; give their feature fps (--feature-fps)" in result.stderr
    assert "mismatched.npy" in result.stderr and "(60, 16)" in result.stderr
    assert "nan.npy), first at time step 42" in result.stderr and "in-memory" not in result.stderr
    assert set(results(output)) == {"timed"}


def test_several_folders_of_different_lengths_need_resampling_asked_for(saved_model, tmp_path):
    write_videos(tmp_path / "rgb", {"v": 120}, channels=8)
    write_videos(tmp_path / "flow", {"v": 60}, channels=8)
    output = tmp_path / "out.json"
    args = ["--features", tmp_path / "rgb", tmp_path / "flow", "--feature-fps", 7.5, "--output", output]
    refused = detect(saved_model, *args)
    assert refused.returncode == 2 and "different lengths" in refused.stderr
    assert "rgb/v.npy (120, 8)" in refused.stderr and "flow/v.npy (60, 8)" in refused.stderr
    resampled = detect(saved_model, *args, "--resample-features", "--overwrite")
    assert resampled.returncode == 0 and set(results(output)) == {"v"}


def test_feature_key_prefix_and_suffix_select_the_arrays(saved_model, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "features").mkdir()
    np.savez(tmp_path / "features" / "i3d_v1_x.npz", rgb=rng.normal(size=(60, CHANNELS)), flow=np.zeros((60, 2)))
    output = tmp_path / "out.json"
    result = detect(saved_model, "--features", tmp_path / "features", "--feature-key", "rgb", "--feature-prefix",
                    "i3d_", "--feature-suffix", "_x", "--feature-fps", 7.5, "--output", output)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(results(output)) == {"v1"}


def bert_folder(path):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    (path / "model.safetensors").write_bytes(b"")
    return path, "a model of type 'bert'"


def no_config_folder(path):
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"")
    return path, "no config.json"


def truncated_weights(path, saved_model):
    path.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (path / name).write_bytes((saved_model / name).read_bytes())
    weights = (saved_model / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    return path, "unreadable or truncated model weights"


@pytest.mark.parametrize(
    "make_folder",
    [
        bert_folder,
        no_config_folder,
        truncated_weights,
        lambda path: (path / "runs" / "missing", "no such model folder"),
    ],
    ids=["other-model-type", "no-config", "truncated-weights", "missing-folder"],
)
def test_a_wrong_model_folder_is_one_line_naming_it(make_folder, saved_model, tmp_path):
    args = (tmp_path / "model",) if make_folder is not truncated_weights else (tmp_path / "model", saved_model)
    model, expected = make_folder(*args)
    folder = write_videos(tmp_path / "features", {"v": 60})
    result = detect(model, "--features", folder, "--feature-fps", 7.5, "--output", tmp_path / "out.json")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[0]]
    assert str(model) in result.stderr and expected in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_a_model_saved_to_return_tuples_detects_and_diagnoses(tmp_path):
    torch.manual_seed(0)
    SelfDetrForActionDetection(small_config(return_dict=False)).save_pretrained(tmp_path / "model")
    folder = write_videos(tmp_path / "features", {"a": 60, "b": 200})
    result = detect(tmp_path / "model", "--features", folder, "--feature-fps", 7.5, "--output", tmp_path / "out.json")
    assert result.returncode == 0, result.stderr
    assert sorted(results(tmp_path / "out.json")) == ["a", "b"]
    assert main(["diagnose", "--model", str(tmp_path / "model"), "--features", str(folder), "--output-dir",
                 str(tmp_path / "d"), "--threads", "1"]) == 0  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_model_folder_beside_existing_folders_is_not_looked_up_on_the_hub(tmp_path):
    (tmp_path / "runs").mkdir()
    write_videos(tmp_path / "features", {"a": 60})
    command = [sys.executable, "-m", "selfdetr_hf.cli", "detect", "--model", "runs/thumos14", "--features", "features",
               "--feature-fps", "7.5", "--output", "out.json", "--threads", "1"]  # fmt: skip
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}  # a Hub look-up fails at once instead of retrying
    result = subprocess.run(command, cwd=tmp_path, env=environment, check=False, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "selfdetr detect: error: runs/thumos14: no such model folder\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["features", "runs"]


def test_device_cuda_without_cuda_is_one_line(saved_model, tmp_path):
    folder = write_videos(tmp_path / "features", {"v": 60})
    result = detect(saved_model, "--features", folder, "--feature-fps", 7.5, "--output", tmp_path / "o.json",
                    "--device", "cuda")  # fmt: skip
    assert result.returncode == 2 and "--device cuda: CUDA is not available" in result.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_threads_with_a_safe_default(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--threads N" in capsys.readouterr().out
    assert 1 <= default_threads() <= 8
