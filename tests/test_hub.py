"""Hub push and pull against a loopback Hub server, model cards, and ``selfdetr push``.

Every Hub call runs the real ``huggingface_hub`` client in a fresh interpreter
(``hub_endpoint.run_python``) pointed at the server of the ``hub_endpoint`` fixture.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.cli import main
from selfdetr_hf.hub import SAVED_CODE_FILES, push_model
from selfdetr_hf.model_card import TEMPLATES_DIR, available_templates, render_model_card

THUMOS_METRICS = {
    "tiou_thresholds": [0.3, 0.4, 0.5, 0.6, 0.7],
    "mAP": [0.746, 0.698, 0.6, 0.471, 0.3182],
    "average_mAP": 0.56664,
}

PUSH_THEN_PULL = """
import sys, torch
from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection

config_dir, features_file, repo_id, cache_dir, outputs_file = sys.argv[1:]
features = torch.load(features_file)
torch.manual_seed(0)
pushed = SelfDetrForActionDetection(SelfDetrConfig.from_pretrained(config_dir)).eval()
pushed.push_to_hub(repo_id)
pulled = SelfDetrForActionDetection.from_pretrained(repo_id, cache_dir=cache_dir).eval()
with torch.no_grad():
    outputs = {name: model(input_features=features) for name, model in [("pushed", pushed), ("pulled", pulled)]}
torch.save({name: (out.logits, out.pred_segments) for name, out in outputs.items()}, outputs_file)
"""

PUSH_PROCESSOR_THEN_PULL = """
import json, sys
from selfdetr_hf.processing_self_detr import SelfDetrProcessor

repo_id = sys.argv[1]
SelfDetrProcessor(nms_method="soft_nms", top_k_per_video=100).push_to_hub(repo_id)
print(json.dumps(SelfDetrProcessor.from_pretrained(repo_id).to_dict()))
"""

PUSH_MODEL_THEN_MODEL_INFO = """
import json, sys
from huggingface_hub import model_info
from selfdetr_hf.hub import SAVED_CODE_FILES, push_model

model_dir, repo_id = sys.argv[1:]
push_model(model_dir, repo_id)
info = model_info(repo_id)
print(json.dumps({result.metric_name: result.metric_value for result in info.card_data.eval_results}))
"""

PUSH_MODEL = """
import sys
from selfdetr_hf.hub import SAVED_CODE_FILES, push_model

push_model(*sys.argv[1:])
"""

CLI = """
import sys
from selfdetr_hf.cli import main

sys.exit(main(sys.argv[1:]))
"""


def _front_matter(card: str) -> dict:
    """The YAML block between the leading ``---`` lines of a model card."""
    _, block, _ = card.split("---\n", 2)
    return yaml.safe_load(block)


def _model_index_values(card: str) -> dict[str, float]:
    """``{metric name: value}`` of the card's ``model-index``."""
    (entry,) = _front_matter(card)["model-index"]
    (result,) = entry["results"]
    return {metric["name"]: metric["value"] for metric in result["metrics"]}


def _expected_values(metrics: dict) -> dict[str, float]:
    """The ``model-index`` values (percent) that ``metrics`` (fractions) must produce."""
    thresholds = metrics["tiou_thresholds"]
    expected = {f"mAP@{t:g}": 100 * m for t, m in zip(thresholds, metrics["mAP"])}
    expected[f"average mAP (tIoU {min(thresholds):g}:{max(thresholds):g})"] = 100 * metrics["average_mAP"]
    return expected


@pytest.fixture
def saved_model(tiny_config, tmp_path: Path) -> Path:
    """A tiny Self-DETR saved with ``save_pretrained``."""
    model_dir = tmp_path / "model"
    SelfDetrForActionDetection(tiny_config).save_pretrained(model_dir)
    return model_dir


def test_from_pretrained_after_push_to_hub_gives_identical_outputs(hub_endpoint, tiny_config, tmp_path):
    tiny_config.save_pretrained(tmp_path / "config")
    torch.save(torch.randn(2, 32, tiny_config.feature_dim), tmp_path / "features.pt")
    fresh_cache = tmp_path / "fresh_cache"

    hub_endpoint.run_python(
        PUSH_THEN_PULL,
        str(tmp_path / "config"),
        str(tmp_path / "features.pt"),
        "org/self-detr-tiny",
        str(fresh_cache),
        str(tmp_path / "outputs.pt"),
    )

    outputs = torch.load(tmp_path / "outputs.pt")
    for pushed, pulled in zip(outputs["pushed"], outputs["pulled"]):
        torch.testing.assert_close(pulled, pushed, rtol=0, atol=0)
    assert any("resolve" in line and "model.safetensors 200" in line for line in hub_endpoint.requests)
    assert list(fresh_cache.glob("models--org--self-detr-tiny/snapshots/*/model.safetensors"))


def test_processor_from_pretrained_after_push_to_hub_has_the_same_settings(hub_endpoint):
    from selfdetr_hf.processing_self_detr import SelfDetrProcessor

    stdout = hub_endpoint.run_python(PUSH_PROCESSOR_THEN_PULL, "org/self-detr-processor")

    pulled = json.loads(stdout.strip().splitlines()[-1])
    assert pulled.pop("auto_map") == {"AutoFeatureExtractor": "processing_self_detr.SelfDetrProcessor"}  # remote code
    assert pulled == SelfDetrProcessor(nms_method="soft_nms", top_k_per_video=100).to_dict()
    assert "preprocessor_config.json" in hub_endpoint.files("org/self-detr-processor")


def test_push_model_card_metrics_appear_in_model_info(hub_endpoint, saved_model, tiny_config):
    card = render_model_card(
        "thumos14_i3d",
        repo_id="org/self-detr-thumos",
        config=tiny_config,
        metrics=THUMOS_METRICS,
        dataset_name="THUMOS14",
    )
    (saved_model / "README.md").write_text(card, encoding="utf-8")

    stdout = hub_endpoint.run_python(PUSH_MODEL_THEN_MODEL_INFO, str(saved_model), "org/self-detr-thumos")

    reported = json.loads(stdout.strip().splitlines()[-1])
    assert reported == pytest.approx(_expected_values(THUMOS_METRICS), abs=5e-3)


def test_push_model_uploads_only_model_processor_code_and_card(hub_endpoint, saved_model):
    (saved_model / "preprocessor_config.json").write_text("{}", encoding="utf-8")
    (saved_model / "README.md").write_text("---\nlibrary_name: transformers\n---\n# card\n", encoding="utf-8")
    (saved_model / "metrics.json").write_text("{}", encoding="utf-8")
    (saved_model / "checkpoint-10").mkdir()
    (saved_model / "checkpoint-10" / "optimizer.bin").write_bytes(b"state")

    hub_endpoint.run_python(PUSH_MODEL, str(saved_model), "org/self-detr-files")

    uploaded = set(hub_endpoint.files("org/self-detr-files"))
    model_code = {path.name for path in saved_model.glob("*.py")}  # written by save_pretrained, for remote code
    assert model_code and model_code <= set(SAVED_CODE_FILES)
    assert uploaded == {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", *model_code}


def test_cli_push_uploads_model_with_rendered_card(hub_endpoint, saved_model, tmp_path):
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(json.dumps(THUMOS_METRICS), encoding="utf-8")

    arguments = ["push", str(saved_model), "org/self-detr-cli", "--card-template", "thumos14_i3d"]

    hub_endpoint.run_python(CLI, *arguments, "--metrics", str(metrics_file))

    files = hub_endpoint.files("org/self-detr-cli")
    assert {"config.json", "model.safetensors"} <= set(files)
    card = files["README.md"].decode()
    assert _model_index_values(card) == pytest.approx(_expected_values(THUMOS_METRICS), abs=5e-3)


@pytest.mark.parametrize("template", ["thumos14_i3d", "activitynet_i3d", "custom_dataset"])
def test_render_model_card_puts_metrics_in_model_index(template, tiny_config):
    metrics = {"tiou_thresholds": [0.5, 0.75, 0.95], "mAP": [0.523, 0.351, 0.0812], "average_mAP": 0.3377}

    card = render_model_card(
        template, repo_id="org/self-detr", config=tiny_config, metrics=metrics, dataset_name="My: Videos"
    )

    front_matter = _front_matter(card)
    assert front_matter["library_name"] == "transformers"
    assert {"temporal-action-detection", "self-detr", "video"} <= set(front_matter["tags"])
    assert front_matter["datasets"] == ["My: Videos"]
    assert _model_index_values(card) == pytest.approx(_expected_values(metrics), abs=5e-3)


@pytest.mark.parametrize("template", ["thumos14_i3d", "activitynet_i3d", "custom_dataset"])
def test_render_model_card_fills_every_placeholder(template, tiny_config):
    card = render_model_card(
        template, repo_id="org/self-detr", config=tiny_config, metrics=THUMOS_METRICS, dataset_name="THUMOS14"
    )

    assert "$" not in card
    assert 'SelfDetrForActionDetection.from_pretrained("org/self-detr")' in card
    assert "| mAP (%) | 74.60 | 69.80 | 60.00 | 47.10 | 31.82 | 56.66 |" in card
    assert "Self-Feedback DETR for Temporal Action Detection" in card


def test_render_model_card_without_metrics_has_no_model_index(tiny_config):
    card = render_model_card(
        "custom_dataset", repo_id="org/self-detr", config=tiny_config, metrics=None, dataset_name="mine"
    )

    assert "model-index" not in _front_matter(card)
    assert "No evaluation results" in card


def test_render_model_card_rejects_percentages(tiny_config):
    with pytest.raises(ValueError, match="fractions"):
        render_model_card(
            "thumos14_i3d",
            repo_id="org/self-detr",
            config=tiny_config,
            metrics={**THUMOS_METRICS, "average_mAP": 56.7},
            dataset_name="THUMOS14",
        )


def test_render_model_card_rejects_unknown_template(tiny_config):
    with pytest.raises(ValueError, match="thumos14_i3d"):
        render_model_card("kinetics", repo_id="o/n", config=tiny_config, metrics=None, dataset_name="x")


def test_top_level_model_cards_folder_holds_the_shipped_templates():
    top_level = Path(__file__).resolve().parents[1] / "model_cards"

    assert sorted(path.stem for path in top_level.glob("*.md")) == available_templates()
    assert top_level.resolve() == TEMPLATES_DIR


def test_push_model_rejects_directory_without_weights(saved_model):
    (saved_model / "model.safetensors").unlink()

    with pytest.raises(ValueError, match="safetensors"):
        push_model(saved_model, "org/self-detr", model_card="---\n---\n")


def test_cli_push_of_missing_directory_is_a_one_line_error(tmp_path, capsys):
    status = main(["push", str(tmp_path / "missing"), "org/self-detr"])

    error = capsys.readouterr().err
    assert status == 2
    assert "missing has no config.json" in error
    assert "Traceback" not in error


def test_cli_push_to_an_unreachable_hub_is_a_one_line_error(tmp_path, tiny_config):
    """No server listens on the loopback discard port: the push fails fast, without a traceback."""
    SelfDetrForActionDetection(tiny_config).save_pretrained(tmp_path / "model")
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_TOKEN": "dummy-token",
        "HF_HOME": str(tmp_path / "hf"),
    }
    command = [
        sys.executable,
        "-m",
        "selfdetr_hf.cli",
        "push",
        str(tmp_path / "model"),
        "org/model",
        "--dataset-name",
        "mine",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "could not push" in result.stderr and "127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
