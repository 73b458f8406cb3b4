"""The example scripts run end to end on the synthetic data on CPU."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.processing_self_detr import SelfDetrProcessor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_finetune_trainer_from_a_pretrained_model_with_new_labels(tmp_path, make_small_config):
    torch.manual_seed(0)
    pretrained = SelfDetrForActionDetection(make_small_config(id2label={0: "old_a", 1: "old_b"}))
    pretrained.save_pretrained(tmp_path / "pretrained")
    metrics = load_example("finetune_trainer").main(
        [
            "--model", str(tmp_path / "pretrained"), "--synthetic", "--synthetic-feature-dim", "16",
            "--epochs", "1", "--batch-size", "16", "--learning-rate", "1e-3", "--output-dir", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    assert 0.0 <= metrics["eval_average_mAP"] <= 1.0
    assert {"eval_mAP@0.3", "eval_mAP@0.7"} <= set(metrics)
    model = SelfDetrForActionDetection.from_pretrained(tmp_path / "out")
    assert model.config.id2label == {i: f"action_{i}" for i in range(5)}
    assert model.class_head.weight.shape == (5, 32)
    kept = pretrained.model.encoder.layers[0].self_attn.q_proj.weight
    assert kept.shape == model.model.encoder.layers[0].self_attn.q_proj.weight.shape
    assert SelfDetrProcessor.from_pretrained(tmp_path / "out").window_size == 128


def test_train_accelerate_script_shows_its_options():
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_accelerate.py"), "--help"], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--resume" in result.stdout and "--mixed-precision" in result.stdout


def test_train_accelerate_script_trains_in_bf16_and_writes_a_card(tmp_path):
    command = [
        sys.executable, str(EXAMPLES / "train_accelerate.py"), "--synthetic", "--synthetic-feature-dim", "16",
        "--output-dir", str(tmp_path), "--epochs", "1", "--max-steps", "3", "--batch-size", "8",
        "--num-queries", "6", "--mixed-precision", "bf16", "--no-progress",
    ]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(torch.isfinite(torch.tensor(record["loss"])) for record in log)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["average_mAP"] <= 1.0
    card = (tmp_path / "README.md").read_text()
    assert "model-index" in card and "Self-DETR" in card
    assert SelfDetrForActionDetection.from_pretrained(tmp_path).config.num_queries == 6


@pytest.mark.parametrize(
    ("script", "program", "files"),
    [
        ("train_accelerate.py", "selfdetr train", ("model.safetensors", "run.json")),
        ("finetune_trainer.py", "finetune_trainer.py", ("config.json", "model.safetensors")),
    ],
)
def test_example_refuses_a_used_folder_in_one_line_and_keeps_it(tmp_path, script, program, files):
    for name in files:
        (tmp_path / name).write_bytes(b"made by the user")
    command = [sys.executable, str(EXAMPLES / script), "--synthetic", "--output-dir", str(tmp_path)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{program}: error: {tmp_path} already holds a training run ({', '.join(files)}): "
        + "continue it with --resume, or delete it and start afresh with --overwrite"
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == list(files)
    assert all((tmp_path / name).read_bytes() == b"made by the user" for name in files)


def test_finetune_trainer_overwrites_only_its_run_and_resumes_from_its_checkpoint(tmp_path, make_small_config):
    example = load_example("finetune_trainer")
    torch.manual_seed(0)
    SelfDetrForActionDetection(make_small_config()).save_pretrained(tmp_path / "pretrained")
    output = tmp_path / "out"
    output.mkdir()
    (output / "checkpoint-99").mkdir()
    (output / "notes.txt").write_text("mine")
    options = [
        "--model", str(tmp_path / "pretrained"), "--synthetic", "--synthetic-feature-dim", "16", "--epochs", "0.1",
        "--output-dir", str(output),
    ]  # fmt: skip
    example.main([*options, "--overwrite"])
    assert sorted(path.name for path in output.glob("checkpoint-*")) == ["checkpoint-3"]
    assert (output / "notes.txt").read_text() == "mine"
    state = (output / "checkpoint-3" / "trainer_state.json").read_bytes()
    example.main([*options, "--resume"])  # every step is in checkpoint-3: nothing is trained or saved again
    assert (output / "checkpoint-3" / "trainer_state.json").read_bytes() == state


def test_finetune_trainer_refuses_zero_epochs_before_writing_anything(tmp_path):
    command = [
        sys.executable, str(EXAMPLES / "finetune_trainer.py"), "--synthetic", "--epochs", "0",
        "--output-dir", str(tmp_path / "out"),
    ]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("argument --epochs: must be a positive number, got 0")
    assert not (tmp_path / "out").exists()
