"""The GPU readiness check (benchmarks/gpu_check.py), rehearsed on CPU with tiny sizes."""

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
ANNOTATIONS = ROOT.parent / "shared" / "data" / "thumos14" / "thumos14.json"
# torch.compile's tracing alone takes longer than this whole file should; the compile
# section is the training step's code with a dynamo backend, rehearsed by `--dry-run` itself.
REHEARSED = (
    "environment,train_fp32,train_bf16,train_fp16,scale,fused_attention,device_checks,inference,feature_extraction"
)


@pytest.fixture(scope="module")
def gpu_check():
    """The script imported as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def run_script(*args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, env=environment, timeout=300,
        check=False,
    )  # fmt: skip


def test_dry_run_measures_every_section_writes_the_json_and_prints_the_table(tmp_path):
    out = tmp_path / "results" / "gpu_check.json"
    process = run_script("--dry-run", "--sections", REHEARSED, "--out", str(out))
    assert process.returncode == 0, process.stderr[-2000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert list(sections) == REHEARSED.split(",")
    statuses = {name: result["status"] for name, result in sections.items()}
    assert statuses == dict.fromkeys(sections, "ok"), json.dumps(sections)[:3000]
    for precision in ("fp32", "bf16", "fp16"):
        run = sections[f"train_{precision}"]
        assert run["steps"] == len(run["losses"]) == 3 and run["losses_finite"]
        assert run["median_step_ms"] > 0
    for precision in ("bf16", "fp16"):
        assert set(report["precision_comparison"][precision]) >= {"initial_loss_relative_difference", "close_to_fp32"}
    assert sections["scale"]["gradient_checkpointing"] in ("supported", "not supported")
    assert sections["fused_attention"]["fp32"]["within_tolerance"]
    assert sections["fused_attention"]["bf16"]["within_tolerance"]
    assert all(sections["device_checks"][check]["status"] == "ok" for check in (
        "loss_under_bf16_autocast_equals_fp32", "post_processing_of_device_outputs", "train_mixed_precision_then_evaluate",
    ))  # fmt: skip
    inference = sections["inference"]
    assert inference["videos"] == 3 and inference["detections"] > 0 and inference["end_to_end_s_batch_16"] > 0
    real_timelines = "(subset test)" if ANNOTATIONS.is_file() else "built-in THUMOS14-like statistics"
    assert real_timelines in inference["timelines"]
    assert sections["feature_extraction"]["backbone_clips_per_s"] > 0
    assert sections["feature_extraction"]["end_to_end_clips_per_s"] > 0
    assert "| train_bf16 | ok |" in process.stdout
    assert "| device_checks | ok |" in process.stdout


def test_without_the_annotation_file_inference_runs_on_thumos14_like_timelines(gpu_check, tmp_path):
    settings = replace(gpu_check.DRY_RUN, annotations=str(tmp_path / "missing.json"))
    result = gpu_check.run_section_here("inference", settings, cap_s=60)
    assert result["status"] == "ok", result
    assert result["timelines"] == f"built-in THUMOS14-like statistics ({tmp_path / 'missing.json'} not found)"
    assert result["videos"] == 3 and result["windows"] > 0


def test_a_failing_section_is_recorded_and_the_next_one_still_runs(gpu_check, monkeypatch, tmp_path):
    def broken(settings, deadline):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setitem(gpu_check.SECTIONS, "broken", broken)
    out = tmp_path / "gpu_check.json"
    report = gpu_check.run_check(gpu_check.DRY_RUN, ["broken", "environment"], isolate=False, dry_run=True, out=out)
    broken_result = report["sections"]["broken"]
    assert broken_result["status"] == "error"
    assert broken_result["error"].startswith("RuntimeError: CUDA error: an illegal memory access was encountered")
    assert report["sections"]["environment"]["status"] == "ok"
    assert json.loads(out.read_text())["sections"]["broken"]["status"] == "error"
    assert "| broken | error: RuntimeError: CUDA error" in gpu_check.format_table(report)


def test_a_section_without_enough_time_left_is_skipped_not_started(gpu_check, monkeypatch):
    started = []
    monkeypatch.setitem(gpu_check.SECTIONS, "late", lambda settings, deadline: started.append(True) or {})
    settings = replace(gpu_check.DRY_RUN, budget_s=gpu_check.MIN_SECTION_S - 1)
    report = gpu_check.run_check(settings, ["late"], isolate=False, dry_run=True)
    assert report["sections"]["late"]["status"] == "skipped: time budget"
    assert not started


def test_an_isolated_section_runs_in_its_own_process_and_is_killed_past_its_cap(gpu_check, monkeypatch):
    environment = gpu_check.run_section_isolated("environment", gpu_check.DRY_RUN, cap_s=120, dry_run=True)
    assert environment["status"] == "ok" and environment["torch"]
    monkeypatch.setattr(gpu_check, "KILL_GRACE_S", 0)
    killed = gpu_check.run_section_isolated("environment", gpu_check.DRY_RUN, cap_s=0.01, dry_run=True)
    assert killed["status"] == "skipped: time budget"
    assert killed["error"].startswith("killed")


def test_unknown_sections_are_refused_in_one_line(gpu_check, capsys):
    assert gpu_check.main(["--dry-run", "--sections", "environment,warp_drive"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --sections: unknown warp_drive (known: environment, train_fp32, train_bf16, train_fp16, scale, "
        "fused_attention, device_checks, inference, feature_extraction, compile)"
    )


def test_without_a_gpu_the_full_run_is_refused_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu_check.json"
    process = run_script("--sections", "environment", "--out", str(out))
    if torch.cuda.is_available():  # a machine with a GPU runs it
        assert process.returncode == 0, process.stderr[-2000:]
        return
    assert process.returncode == 2
    assert process.stderr.strip() == "error: no CUDA device; run with --dry-run for the CPU rehearsal"
    assert not out.exists()
