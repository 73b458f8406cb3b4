"""The Accelerate loop: exact resume, DDP equivalence, evaluation gathering."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from conftest import small_config
from safetensors.torch import load_file

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.data.synthetic import make_synthetic_videos
from selfdetr_hf.processing_self_detr import SelfDetrProcessor
from selfdetr_hf.training.accelerate_loop import AccelerateTrainingArguments, predict_windows, train
from selfdetr_hf.training.recipes import TrainingRecipe, learning_rate_factor
from selfdetr_hf.training.run_folder import RunFolderError

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def videos():
    return make_synthetic_videos(12, num_classes=3, feature_dim=16, max_duration=30)


@pytest.fixture(scope="module")
def processor():
    return SelfDetrProcessor.thumos14()


def tiny_model(videos):
    torch.manual_seed(0)
    return SelfDetrForActionDetection(small_config(encoder_layers=2, id2label=dict(enumerate(videos.label_names))))


def run(videos, processor, output_dir, **kwargs):
    recipe = TrainingRecipe(learning_rate=1e-3, batch_size=4, epochs=2, lr_drop_epochs=(1,), ema_decay=0.9, seed=0)
    arguments = AccelerateTrainingArguments(
        output_dir=str(output_dir), recipe=recipe, checkpoint_every=3, eval_every=0, progress=False, **kwargs
    )
    return train(tiny_model(videos), processor, videos.dataset(processor, subset="train"), arguments)


def test_interrupted_and_resumed_run_ends_with_the_same_weights(videos, processor, tmp_path):
    run(videos, processor, tmp_path / "straight")
    run(videos, processor, tmp_path / "interrupted", max_steps=8)  # 7 steps per epoch: stops mid-epoch 2
    assert sorted(p.name for p in (tmp_path / "interrupted" / "checkpoints").iterdir()) == ["step_3", "step_6"]
    run(videos, processor, tmp_path / "interrupted", resume=True)  # from step 6, replays 7 and 8
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "interrupted" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    straight_log = (tmp_path / "straight" / "train_log.jsonl").read_text()
    assert (tmp_path / "interrupted" / "train_log.jsonl").read_text() == straight_log  # steps 7 and 8 once
    before_resume = (tmp_path / "interrupted" / "train_log.before_resume_1.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in before_resume] == list(range(1, 9))


def test_resume_at_an_epoch_boundary_is_exact_although_the_epoch_was_evaluated(videos, processor, tmp_path):
    recipe = TrainingRecipe(learning_rate=1e-3, batch_size=4, epochs=2, seed=0)
    evaluation = {
        "eval_dataset": videos.dataset(processor, subset="test", training=False),
        "eval_annotations": {k: v for k, v in videos.annotations.items() if v.subset == "test"},
    }

    def run_to(folder, **kwargs):
        arguments = AccelerateTrainingArguments(
            output_dir=str(folder), recipe=recipe, checkpoint_every=7, eval_every=1, progress=False, **kwargs
        )
        return train(tiny_model(videos), processor, videos.dataset(processor, subset="train"), arguments, **evaluation)

    run_to(tmp_path / "straight")  # evaluates after epoch 1, between steps 7 and 8
    run_to(tmp_path / "resumed", max_steps=7)
    run_to(tmp_path / "resumed", resume=True)
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_resume_without_a_run_names_the_folder(videos, processor, tmp_path):
    with pytest.raises(RunFolderError, match=f"--resume: {tmp_path} holds no run to continue"):
        run(videos, processor, tmp_path, resume=True)


def test_evaluation_sees_every_window_once(videos, processor):
    dataset = videos.dataset(processor, subset="test", training=False)
    predictions = predict_windows(tiny_model(videos), dataset, Accelerator(), batch_size=4)
    assert predictions["logits"].shape == (len(dataset), 6, 3)


def test_a_model_configured_to_return_tuples_trains_and_evaluates(videos, processor, tmp_path):
    model = tiny_model(videos)
    model.config.return_dict = False
    recipe = TrainingRecipe(learning_rate=1e-3, batch_size=4, epochs=1, seed=0)
    arguments = AccelerateTrainingArguments(output_dir=str(tmp_path), recipe=recipe, max_steps=2, progress=False)
    train(model, processor, videos.dataset(processor, subset="train"), arguments)
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 2
    dataset = videos.dataset(processor, subset="test", training=False)
    assert predict_windows(model, dataset, Accelerator(), batch_size=4)["logits"].shape == (len(dataset), 6, 3)


def test_step_schedule_drops_at_the_given_epochs():
    recipe = TrainingRecipe(learning_rate=2e-4, epochs=120, lr_drop_epochs=(80, 100))
    factors = [learning_rate_factor(epoch * 10, recipe, steps_per_epoch=10) for epoch in (0, 79, 80, 99, 100, 119)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_schedule_warms_up_then_decays():
    recipe = TrainingRecipe(learning_rate=1e-4, epochs=20, schedule="cosine", warmup_epochs=5)
    assert learning_rate_factor(0, recipe, 10) == pytest.approx(1 / 50)
    assert learning_rate_factor(49, recipe, 10) == pytest.approx(1.0)
    assert learning_rate_factor(125, recipe, 10) == pytest.approx(0.5)
    assert learning_rate_factor(199, recipe, 10) < 1e-3


def launch(processes, output_dir):
    """`accelerate launch` of the worker on CPU processes (gloo). In accelerate 1.x,
    ``--cpu --num_processes 2`` starts a single process; ``--multi_gpu`` with
    ``ACCELERATE_USE_CPU`` starts real CPU processes through torchrun."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    command += ["--multi_gpu"] if processes > 1 else ["--cpu"]
    command += [
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(WORKER),
        str(output_dir),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    return log, json.loads((output_dir / "worker_metrics.json").read_text())


def test_two_processes_match_one_process(tmp_path):
    one_log, one_metrics = launch(1, tmp_path / "one")
    two_log, two_metrics = launch(2, tmp_path / "two")
    assert (one_metrics["num_processes"], two_metrics["num_processes"]) == (1, 2)
    assert len(one_log) == len(two_log) == 7
    for single, distributed in zip(one_log, two_log):
        for name in ("loss", "loss_focal", "loss_l1", "loss_tiou", "loss_encoder_feedback", "loss_decoder_feedback"):
            assert distributed[name] == pytest.approx(single[name], abs=1e-5), (single["step"], name)
    assert two_metrics["num_windows_evaluated"] == one_metrics["num_windows_evaluated"] == 9
    assert two_metrics["num_videos_evaluated"] == one_metrics["num_videos_evaluated"] == 3
    assert two_metrics["average_mAP"] == pytest.approx(one_metrics["average_mAP"], abs=1e-6)


def test_tensorboard_logging_writes_event_files(videos, processor, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    run(videos, processor, tmp_path, max_steps=2, tensorboard=True)
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))
