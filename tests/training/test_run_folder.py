"""The run folder's parts: checkpoints by step and by run, log truncation, atomic final save,
trajectory changes, and the stop signals."""

import json
import os
import signal

import pytest

from selfdetr_hf.training.interrupts import stop_requests
from selfdetr_hf.training.run_folder import (
    CHECKPOINT_FILE,
    check_output_dir,
    final_model_folder,
    run_checkpoints,
    trajectory_changes,
    truncate_log,
)


def make_checkpoint(folder, name, run_id, step):
    (folder / "checkpoints" / name).mkdir(parents=True)
    (folder / "checkpoints" / name / CHECKPOINT_FILE).write_text(json.dumps({"run_id": run_id, "step": step}))


def test_checkpoints_are_the_runs_own_ordered_by_step_not_by_name(tmp_path):
    make_checkpoint(tmp_path, "step_9", "mine", 9)
    make_checkpoint(tmp_path, "step_10", "mine", 10)
    make_checkpoint(tmp_path, "step_50", "another run", 50)
    make_checkpoint(tmp_path, ".step_11.partial", "mine", 11)
    (tmp_path / "checkpoints" / "step_12").mkdir()  # a save cut short: no checkpoint.json
    assert [checkpoint.step for checkpoint in run_checkpoints(tmp_path, "mine")] == [9, 10]


def test_log_is_cut_after_the_resumed_step_and_the_full_log_kept(tmp_path):
    records = [json.dumps({"step": step, "loss": 1.0 / step}) + "\n" for step in range(1, 9)]
    original = "".join(records) + '{"step": 9, "lo'  # the last record was cut by a kill
    (tmp_path / "train_log.jsonl").write_text(original)
    copy = truncate_log(tmp_path, 6)
    assert (tmp_path / "train_log.jsonl").read_text() == "".join(records[:6])
    assert copy.name == "train_log.before_resume_1.jsonl" and copy.read_text() == original
    assert truncate_log(tmp_path, 6) is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["train_log.before_resume_1.jsonl", "train_log.jsonl"]


def test_final_save_cut_short_leaves_the_folder_as_it_was(tmp_path):
    (tmp_path / "config.json").write_text("earlier")
    (tmp_path / "model.safetensors").write_text("earlier weights")
    with pytest.raises(KeyboardInterrupt), final_model_folder(tmp_path) as staging:
        (staging / "model.safetensors").write_text("half")
        raise KeyboardInterrupt
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert (tmp_path / "model.safetensors").read_text() == "earlier weights"


def test_final_save_moves_every_file_into_the_folder(tmp_path):
    with final_model_folder(tmp_path) as staging:
        (staging / "config.json").write_text("{}")
        (staging / "model.safetensors").write_text("weights")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_trajectory_changes_name_each_setting():
    recorded = {"recipe": {"batch_size": 16, "lr_drop_epochs": [80, 100]}, "mixed_precision": "no"}
    current = {"recipe": {"batch_size": 8, "lr_drop_epochs": (80, 100)}, "mixed_precision": "bf16"}
    assert trajectory_changes(recorded, current) == ["mixed_precision ('no' -> 'bf16')", "recipe.batch_size (16 -> 8)"]
    assert trajectory_changes(recorded, {**recorded, "recipe": {"batch_size": 16, "lr_drop_epochs": (80, 100)}}) == []


def test_a_folder_with_other_files_only_is_free(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    check_output_dir(tmp_path, resume=False, overwrite=False)


def test_first_signal_is_recorded_and_the_second_stops_at_once():
    previous = signal.getsignal(signal.SIGINT)
    with stop_requests(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal_number == signal.SIGINT
        with pytest.raises(KeyboardInterrupt, match="SIGTERM again: stopped at once"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is previous
