"""`selfdetr train` and `selfdetr demo` as a user meets them: output folders that belong to
one run, resume, interrupts, seeds and refused options."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import small_config
from safetensors.torch import load_file

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Ten videos of 16-d features (8 to train on, 2 to test) with their annotation file."""
    root = tmp_path_factory.mktemp("data")
    (root / "features").mkdir()
    rng = np.random.default_rng(0)
    database = {}
    for index in range(10):
        video = f"video_{index}"
        np.save(root / "features" / f"{video}.npy", rng.normal(size=(200, 16)).astype(np.float32))
        segments = [[4.0 + 9 * k + index % 3, 9.0 + 9 * k + index % 3] for k in range(4)]
        database[video] = {
            "subset": "validation" if index < 8 else "test",
            "duration": 40.0,
            "annotations": [
                {"label": ("jump", "throw")[k % 2], "segment": segment} for k, segment in enumerate(segments)
            ],
        }
    (root / "annotations.json").write_text(json.dumps({"database": database}))
    torch.manual_seed(0)
    SelfDetrForActionDetection(small_config()).save_pretrained(root / "tiny_model")
    return root


def train_command(dataset, output_dir, *options):
    """Arguments of a short `selfdetr train` of the tiny model: 8 steps per epoch."""
    return [
        "train", "--annotations", str(dataset / "annotations.json"), "--features", str(dataset / "features"),
        "--feature-fps", "5", "--model", str(dataset / "tiny_model"), "--batch-size", "4", "--epochs", "2",
        "--learning-rate", "1e-3", "--seed", "3", "--output-dir", str(output_dir), "--no-progress", *options,
    ]  # fmt: skip


def run_cli(arguments, env=None, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "selfdetr_hf.cli", *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, **kwargs,
    )  # fmt: skip


def folder_bytes(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def error_line(stderr):
    """The one error line of a failed command (progress bars aside), checking there is one."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("selfdetr ")]
    assert len(lines) == 1, stderr
    return lines[0]


def log_steps(folder, name="train_log.jsonl"):
    return [json.loads(line)["step"] for line in (folder / name).read_text().splitlines()]


def test_a_second_run_into_a_used_folder_exits_non_zero_and_changes_nothing(dataset, tmp_path):
    assert main(train_command(dataset, tmp_path / "run", "--max-steps", "4", "--checkpoint-every", "2")) == 0
    before = folder_bytes(tmp_path / "run")
    assert {"run.json", "train_log.jsonl", "model.safetensors", "config.json", "metrics.json", "README.md"} <= set(
        before
    )
    result = run_cli(train_command(dataset, tmp_path / "run", "--max-steps", "2"))
    stderr = result.communicate(timeout=300)[1]
    assert result.returncode == 2
    assert len(stderr.strip().splitlines()) == 1
    stderr = error_line(stderr)
    assert "already holds a training run" in stderr and "checkpoints/" in stderr and "train_log.jsonl" in stderr
    assert "--resume" in stderr and "--overwrite" in stderr
    assert folder_bytes(tmp_path / "run") == before


def test_overwrite_clears_the_old_run_and_nothing_else(dataset, tmp_path):
    output = tmp_path / "run"
    assert main(train_command(dataset, output, "--max-steps", "4", "--checkpoint-every", "2")) == 0
    old_id = json.loads((output / "run.json").read_text())["run_id"]
    (output / "notes.txt").write_text("mine")
    assert main(train_command(dataset, output, "--max-steps", "1", "--overwrite")) == 0
    assert not (output / "checkpoints").exists()
    assert log_steps(output) == [1]
    assert json.loads((output / "run.json").read_text())["run_id"] != old_id
    assert (output / "notes.txt").read_text() == "mine"


def test_resume_with_other_settings_is_refused_naming_them(dataset, tmp_path, capsys):
    output = tmp_path / "run"
    assert main(train_command(dataset, output, "--max-steps", "2", "--checkpoint-every", "2")) == 0
    before = folder_bytes(output)
    capsys.readouterr()
    assert main([*train_command(dataset, output, "--resume"), "--batch-size", "2"]) == 2
    assert "recipe.batch_size (4 -> 2)" in error_line(capsys.readouterr().err)
    assert folder_bytes(output) == before


def test_resume_past_the_steps_asked_is_refused(dataset, tmp_path, capsys):
    output = tmp_path / "run"
    assert main(train_command(dataset, output, "--max-steps", "4", "--checkpoint-every", "2")) == 0
    before = folder_bytes(output)
    capsys.readouterr()
    assert main(train_command(dataset, output, "--resume", "--max-steps", "3")) == 2
    error = error_line(capsys.readouterr().err)
    assert "newest checkpoint of the run" in error and "step 4, past the 3 steps" in error
    assert folder_bytes(output) == before


def test_sigint_mid_epoch_checkpoints_and_resume_matches_an_uninterrupted_run(dataset, tmp_path):
    assert main(train_command(dataset, tmp_path / "straight")) == 0
    interrupted = tmp_path / "interrupted"
    process = run_cli(train_command(dataset, interrupted))
    log = interrupted / "train_log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.stat().st_size) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("selfdetr train: SIGINT: stopped after step ") and message.endswith("--resume")
    step = int(message.split("stopped after step ")[1].split()[0])
    assert 1 <= step < 16 and (interrupted / "checkpoints" / f"step_{step}" / "checkpoint.json").is_file()
    assert not (interrupted / "model.safetensors").exists()

    assert main(train_command(dataset, interrupted, "--resume")) == 0
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(interrupted / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    assert log_steps(interrupted) == list(range(1, 17))
    assert (interrupted / "metrics.json").read_bytes() == (tmp_path / "straight" / "metrics.json").read_bytes()
    assert json.loads((interrupted / "run.json").read_text())["resumed"][0]["step"] == step


def test_the_same_seed_gives_bit_identical_runs_from_a_new_model(dataset, tmp_path):
    def short_run(name, seed):
        command = [*train_command(dataset, tmp_path / name, "--max-steps", "2"), "--seed", str(seed)]
        command.remove("--model")
        command.remove(str(dataset / "tiny_model"))
        assert main([*command, "--num-queries", "6"]) == 0
        return folder_bytes(tmp_path / name)

    first, second, other_seed = short_run("first", 7), short_run("second", 7), short_run("other", 8)
    for name in ("metrics.json", "train_log.jsonl", "model.safetensors"):
        assert first[name] == second[name], name
    assert (
        json.loads(first["train_log.jsonl"].splitlines()[0])["loss"]
        != json.loads(other_seed["train_log.jsonl"].splitlines()[0])["loss"]
    )


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--epochs", "0"], "epochs must be an integer >= 1; got 0"),
        (["--max-steps", "0"], "max_steps must be an integer >= 1; got 0"),
        (["--learning-rate=-1e-3"], "learning_rate must be > 0"),
        (["--learning-rate", "inf"], "learning_rate must be > 0 and finite; got inf"),
        (["--batch-size", "-4"], "batch_size must be an integer >= 1"),
        (["--checkpoint-every", "-1"], "checkpoint_every must be an integer >= 0"),
        (["--batch-size", "6", "--gradient-accumulation-steps", "4"], "must split into gradient_accumulation_steps"),
        (["--seed", "-1"], "seed must be an integer in [0, 2**32)"),
    ],
)
def test_nonsensical_options_are_refused_before_anything_is_written(dataset, tmp_path, capsys, options, named):
    assert main([*train_command(dataset, tmp_path / "run"), *options]) == 2
    assert named in error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_resume_and_overwrite_together_are_refused(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(train_command(dataset, tmp_path / "run", "--resume", "--overwrite"))
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_demo_is_bit_identical_for_a_seed_and_asks_before_replacing_its_results(tmp_path, capsys):
    demo = ["demo", "--output-dir", str(tmp_path), "--epochs", "1", "--max-steps", "3", "--no-progress"]
    assert main(demo) == 0
    first = folder_bytes(tmp_path)
    assert (
        json.loads(first["metrics.json"])["average_mAP"] >= 0.0 and len(json.loads(first["metrics.json"])["mAP"]) == 5
    )
    assert {"model/model.safetensors", "model/preprocessor_config.json", "timeline.png"} <= set(first)
    capsys.readouterr()

    assert main(demo) == 2
    error = error_line(capsys.readouterr().err)
    assert "already holds a demo's results" in error and "--overwrite" in error
    assert folder_bytes(tmp_path) == first

    assert main([*demo, "--overwrite"]) == 0
    second = folder_bytes(tmp_path)
    for name in ("metrics.json", "model/model.safetensors", "model/train_log.jsonl"):
        assert second[name] == first[name], name


def test_a_stop_during_the_final_evaluation_checkpoints_the_trained_steps(dataset, tmp_path, monkeypatch, capsys):
    from selfdetr_hf.training import accelerate_loop

    assert main(train_command(dataset, tmp_path / "straight", "--max-steps", "3")) == 0
    evaluate = accelerate_loop.evaluate

    def interrupted_evaluation(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(accelerate_loop, "evaluate", interrupted_evaluation)
    output = tmp_path / "interrupted"
    capsys.readouterr()
    assert main(train_command(dataset, output, "--max-steps", "3")) == 128 + signal.SIGINT
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("selfdetr train: SIGINT: stopped after step 3 of 3") and message.endswith("--resume")
    assert (output / "checkpoints" / "step_3" / "checkpoint.json").is_file()
    assert not (output / "model.safetensors").exists()

    monkeypatch.setattr(accelerate_loop, "evaluate", evaluate)
    assert main(train_command(dataset, output, "--max-steps", "3", "--resume")) == 0
    assert (output / "metrics.json").read_bytes() == (tmp_path / "straight" / "metrics.json").read_bytes()
    assert (output / "model.safetensors").read_bytes() == (tmp_path / "straight" / "model.safetensors").read_bytes()


def test_a_stop_before_training_names_no_resume_when_nothing_can_resume(dataset, tmp_path, monkeypatch, capsys):
    from selfdetr_hf.training import commands

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "load_data", stopped)
    assert main(train_command(dataset, tmp_path / "run")) == 128 + signal.SIGINT
    assert error_line(capsys.readouterr().err) == (
        "selfdetr train: interrupted, nothing saved now; start again with the same command"
    )
    assert not (tmp_path / "run").exists()


def test_a_repository_id_the_hub_refuses_is_refused_before_training(dataset, tmp_path, capsys):
    assert main(train_command(dataset, tmp_path / "run", "--push-to-hub", "my org/model")) == 2
    error = error_line(capsys.readouterr().err)
    assert error.startswith("selfdetr train: error: --push-to-hub 'my org/model': Repo id must ")
    assert not (tmp_path / "run").exists()


def test_an_unreachable_hub_keeps_the_model_and_says_how_to_push_it(dataset, tmp_path):
    output = tmp_path / "run"
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_test"}
    process = run_cli(train_command(dataset, output, "--max-steps", "1", "--push-to-hub", "me/model"), env=env)
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 2
    assert error_line(stderr).endswith(f"the model is saved: push it with `selfdetr push {output} me/model`")
    assert "Writing model shards" not in stderr  # --no-progress hides transformers' bars too
    assert SelfDetrForActionDetection.from_pretrained(output).config.num_labels == 2


def test_a_second_sigterm_stops_at_once_with_the_sigterm_status(dataset, tmp_path, monkeypatch, capsys):
    from selfdetr_hf.training import accelerate_loop

    def twice_stopped_evaluation(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(accelerate_loop, "evaluate", twice_stopped_evaluation)
    assert main(train_command(dataset, tmp_path / "run", "--max-steps", "1")) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "selfdetr train: SIGTERM again: stopped at once, nothing saved now; "
        "no checkpoint to resume from: start again with --overwrite"
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_compile_follows_the_eager_run_and_resumes_it(dataset, tmp_path):
    """Compiling is not a trajectory setting: same losses as eager to float rounding, and a
    compiled run continues an eager one. Minutes on an empty inductor kernel cache."""
    eager = run_cli(train_command(dataset, tmp_path / "eager", "--max-steps", "2", "--checkpoint-every", "1"))
    _, stderr = eager.communicate(timeout=600)
    assert eager.returncode == 0, stderr[-3000:]

    compiled = run_cli(train_command(dataset, tmp_path / "compiled", "--max-steps", "2", "--compile"))
    _, stderr = compiled.communicate(timeout=1200)
    assert compiled.returncode == 0, stderr[-3000:]
    eager_log, compiled_log = (
        [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
        for name in ("eager", "compiled")
    )
    assert [record["step"] for record in compiled_log] == [1, 2]
    for eager_record, compiled_record in zip(eager_log, compiled_log, strict=True):
        for name, value in eager_record.items():
            assert compiled_record[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    metrics = json.loads((tmp_path / "compiled" / "metrics.json").read_text())
    assert 0.0 <= metrics["average_mAP"] <= 1.0
    assert json.loads((tmp_path / "compiled" / "run.json").read_text())["arguments"]["compile"] is True
    SelfDetrForActionDetection.from_pretrained(tmp_path / "compiled")

    # The eager run stopped at step 1 continues compiled, with no settings refused.
    (tmp_path / "eager" / "checkpoints" / "step_2").rename(tmp_path / "unused_step_2")
    resumed = run_cli(train_command(dataset, tmp_path / "eager", "--max-steps", "2", "--resume", "--compile"))
    _, stderr = resumed.communicate(timeout=1200)
    assert resumed.returncode == 0, error_line(stderr)
    resumed_log = [json.loads(line) for line in (tmp_path / "eager" / "train_log.jsonl").read_text().splitlines()]
    assert resumed_log[1]["loss"] == pytest.approx(eager_log[1]["loss"], rel=1e-4)
