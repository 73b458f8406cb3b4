"""The collapse reproduction study (benchmarks/reproduce_collapse.py) on a tiny budget."""

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce_collapse.py"


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
def tiny_budget(study):
    return replace(
        study.CPU_BUDGET,
        model={"d_model": 32, "num_attention_heads": 4, "ffn_dim": 64, "input_norm_groups": 8, "num_queries": 8},
        feature_dim=16,
        train_videos=3,
        test_videos=2,
        max_steps=2,
    )


@pytest.fixture(scope="module")
def report(study, tiny_budget, shared_data, tmp_path_factory):
    """Two variants, one seed, two optimiser steps each."""
    json_path = tmp_path_factory.mktemp("collapse") / "collapse.json"
    study.run_study(
        shared_data / "thumos14" / "thumos14.json",
        tiny_budget,
        variants=["self_detr", "detr"],
        seeds=[0],
        json_path=json_path,
    )
    return json_path


def test_report_holds_map_and_diversity_of_every_run_and_variant(report):
    data = json.loads(report.read_text())
    assert set(data) >= {"environment", "budget", "data", "runs", "summary"}
    assert [(run["variant"], run["seed"]) for run in data["runs"]] == [("self_detr", 0), ("detr", 0)]
    assert set(data["summary"]) == {"self_detr", "detr"}
    for run in data["runs"]:
        assert run["steps"] == 2
        assert list(run["mAP"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]
        assert 0.0 <= run["average_mAP"] <= 1.0
    for summary in data["summary"].values():
        assert summary["seeds"] == [0]
        assert set(summary["mAP"]) == {"0.3", "0.4", "0.5", "0.6", "0.7"}
        assert set(summary["diversity"]) == {"encoder", "decoder", "cross", "encoder_guidance", "decoder_guidance"}


def test_diversity_per_layer_lies_in_unit_interval(report):
    """Eq. 10 is not bounded by 1 in general (the N x N identity scores sqrt(2 (N - 1))), but
    a model two steps from initialisation attends almost uniformly: its maps lie close to
    rank 1 and every value is in [0, 1]."""
    data = json.loads(report.read_text())
    layers = {"encoder": 2, "decoder": 4, "cross": 4, "encoder_guidance": 1, "decoder_guidance": 4}
    for run in data["runs"]:
        for name in ("diversity", "diversity_transposed"):
            for kind, count in layers.items():
                values = run[name][kind]["mean"]
                assert len(values) == count
                assert all(0.0 <= value <= 1.0 for value in values), (name, kind, values)


def test_diversity_plots_are_written_beside_the_json(report):
    for name in ("collapse_diversity.png", "collapse_guidance.png"):
        assert report.with_name(name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variants_start_from_the_same_weights(study, tiny_budget):
    detr = study.build_model(tiny_budget, ["a", "b"], "detr", seed=3).state_dict()
    self_detr = study.build_model(tiny_budget, ["a", "b"], "self_detr", seed=3).state_dict()
    assert detr.keys() == self_detr.keys()
    assert all(detr[name].equal(self_detr[name]) for name in detr)


def test_missing_annotations_exit_with_a_message(study, tmp_path, capsys):
    assert study.main(["--annotations", str(tmp_path / "absent.json")]) == 2
    assert "THUMOS14 timelines not found" in capsys.readouterr().err
