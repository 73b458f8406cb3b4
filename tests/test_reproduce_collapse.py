"""The reproduction study (benchmarks/reproduce_collapse.py): its quick mode runs the whole
pipeline and writes the per-run JSON and the report; its statistics are right."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "reproduce_collapse.py"
KINDS = {"encoder": 2, "decoder": 4, "cross": 4, "encoder_guidance": 1, "decoder_guidance": 4}


@pytest.fixture(scope="module")
def study():
    """The benchmark script imported as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("reproduce_collapse", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """``run --quick`` then ``report --quick``, as a user runs them."""
    out = tmp_path_factory.mktemp("collapse")
    for command in ("run", "report"):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), command, "--quick", "--out", str(out)],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
    return out


def test_quick_run_writes_one_json_per_task_variant_and_seed(quick_results):
    runs = sorted(path.relative_to(quick_results).as_posix() for path in quick_results.glob("runs/*/*.json"))
    assert runs == [
        "runs/phase_order/detr_seed0.json",
        "runs/phase_order/self_detr_seed0.json",
        "runs/signature/detr_seed0.json",
        "runs/signature/self_detr_seed0.json",
    ]
    run = json.loads((quick_results / "runs/signature/self_detr_seed0.json").read_text())
    assert (run["task"], run["variant"], run["seed"], run["steps"]) == ("signature", "self_detr", 0, 4)
    assert [point["step"] for point in run["diversity"]] == [0, 2, 4]
    assert [point["step"] for point in run["map_curve"]] == [4]
    for point in run["diversity"]:
        assert {kind: len(point[kind]) for kind in KINDS} == KINDS
    assert list(run["mAP"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]
    assert 0.0 <= run["average_mAP"] <= 1.0
    assert run["wall_seconds"] > 0 and run["seconds_per_step"] > 0


def test_report_summarises_every_task_and_writes_plots(quick_results):
    summary = json.loads((quick_results / "summary.json").read_text())
    assert summary["runs"] == 4
    for task in ("signature", "phase_order"):
        entry = summary["tasks"][task]
        assert set(entry["variants"]) == {"detr", "self_detr"}
        paired = entry["paired_to_detr"]["self_detr"]
        assert paired["seeds"] == [0]
        assert len(paired["final_diversity"]["decoder"]) == 4
        assert set(entry["collapse"]["detr"]["0"]) == {"encoder", "decoder"}
        assert (quick_results / f"diversity_{task}.png").read_bytes()[:4] == b"\x89PNG"
    assert (quick_results / "final_map.png").read_bytes()[:4] == b"\x89PNG"
    assert "### Task `phase_order`" in (quick_results / "summary.md").read_text()


def test_a_second_run_reuses_finished_runs_and_refuses_another_protocols(study, quick_results):
    path = quick_results / "runs/signature/detr_seed0.json"
    before = path.read_bytes()
    assert study.run_study(study.QUICK, quick_results) == []
    assert path.read_bytes() == before
    with pytest.raises(SystemExit, match="measured under another protocol"):
        study.run_study(study.PROTOCOL, quick_results, tasks=["signature"])
    assert path.read_bytes() == before


def test_sign_test_matches_the_binomial_distribution(study):
    assert study.sign_test_p(5, 0) == pytest.approx(2 / 32)
    assert study.sign_test_p(4, 1) == pytest.approx(2 * 6 / 32)
    assert study.sign_test_p(0, 0) == 1.0
    assert study.sign_test_p(3, 3) == 1.0


def test_paired_difference_is_per_seed(study):
    paired = study.paired_difference([0.5, 0.6, 0.7], [0.4, 0.4, 0.8])
    assert paired["differences"] == pytest.approx([0.1, 0.2, -0.1])
    assert paired["mean"] == pytest.approx(0.2 / 3)
    low, high = paired["bootstrap_95"]
    assert -0.1 - 1e-9 <= low <= paired["mean"] <= high <= 0.2 + 1e-9
    assert (paired["positive"], paired["negative"]) == (2, 1)


def test_collapse_is_a_final_diversity_below_half_the_peak(study):
    run = {
        "diversity": [
            {"encoder": [0.2, 0.2], "decoder": [0.1, 0.1, 0.1, 0.1]},
            {"encoder": [0.8, 0.3], "decoder": [0.1, 0.6, 0.1, 0.1]},
            {"encoder": [0.39, 0.3], "decoder": [0.1, 0.31, 0.1, 0.1]},
        ]
    }
    assert study.collapsed_layers(run) == {"encoder": [1], "decoder": []}


def test_variants_start_from_the_same_weights(study):
    detr = study.build_model(study.QUICK, ["a", "b"], "detr", seed=3).state_dict()
    self_detr = study.build_model(study.QUICK, ["a", "b"], "self_detr", seed=3).state_dict()
    assert detr.keys() == self_detr.keys()
    assert all(detr[name].equal(self_detr[name]) for name in detr)


def test_learning_rate_drops_tenfold_at_two_thirds_and_five_sixths(study):
    factors = [study.learning_rate_factor(step, study.PROTOCOL) for step in (0, 999, 1000, 1249, 1250, 1499)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_a_bad_shard_is_refused_in_one_line(study, capsys):
    assert study.main(["run", "--quick", "--shard", "2/2"]) == 2
    assert capsys.readouterr().err.strip() == "reproduce_collapse: --shard must be I/N with 0 <= I < N; got '2/2'"
