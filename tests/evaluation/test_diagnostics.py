"""Attention maps per window, diversity per layer over videos, ``selfdetr diagnose``, plots."""

import json

import numpy as np
import pytest
import torch

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.cli import main
from selfdetr_hf.evaluation.diagnostics import model_attention_diversity, window_attention_maps

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny_model(tiny_config):
    return SelfDetrForActionDetection(tiny_config).eval()


@pytest.fixture
def feature_dir(tmp_path, tiny_config):
    rng = np.random.default_rng(0)
    directory = tmp_path / "features"
    directory.mkdir()
    np.save(directory / "video_a.npy", rng.normal(size=(150, tiny_config.feature_dim)).astype(np.float32))
    np.save(directory / "video_b.npy", rng.normal(size=(40, tiny_config.feature_dim)).astype(np.float32))
    return directory


def test_windows_are_cropped_to_their_valid_steps(tiny_model, tiny_config):
    windows = window_attention_maps(tiny_model, torch.randn(150, tiny_config.feature_dim), window_size=128)
    assert len(windows) == 2
    assert [tuple(m.shape) for m in windows[1]["encoder"]] == [(22, 22)] * tiny_config.encoder_layers
    assert [tuple(m.shape) for m in windows[1]["cross"]] == [(tiny_config.num_queries, 22)] * tiny_config.decoder_layers
    assert [tuple(m.shape) for m in windows[1]["decoder"]] == [(8, 8)] * tiny_config.decoder_layers


def test_windows_reach_the_model_on_its_device(tiny_model, tiny_config):
    """A model on a GPU gets its windows there (checked with a model whose first parameter
    lives on the meta device and which runs the real CPU model)."""
    seen = []

    class ElsewhereModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.placement = torch.nn.Parameter(torch.empty(0, device="meta"))
            self.model = tiny_model

        def forward(self, input_features, attention_mask, output_attentions, return_dict):
            seen.extend([input_features.device.type, attention_mask.device.type])
            return self.model(
                input_features=torch.zeros(input_features.shape), attention_mask=torch.ones(attention_mask.shape),
                output_attentions=output_attentions, return_dict=return_dict,
            )  # fmt: skip

    windows = window_attention_maps(ElsewhereModel(), torch.randn(70, tiny_config.feature_dim), window_size=32)
    assert seen == ["meta", "meta"]
    assert len(windows) == 3 and windows[0]["encoder"][0].device.type == "cpu"


def test_padded_window_maps_equal_the_maps_of_the_unpadded_window(tiny_model, tiny_config):
    features = torch.randn(40, tiny_config.feature_dim)
    padded = window_attention_maps(tiny_model, features, window_size=64)[0]
    exact = window_attention_maps(tiny_model, features, window_size=40)[0]
    for kind in ("encoder", "decoder", "cross"):
        for first, second in zip(padded[kind], exact[kind]):
            torch.testing.assert_close(first, second, atol=1e-5, rtol=1e-4)


def test_model_diversity_has_one_value_per_layer_and_kind(tiny_model, tiny_config):
    videos = {"a": np.random.randn(100, tiny_config.feature_dim), "b": np.random.randn(30, tiny_config.feature_dim)}
    diversity = model_attention_diversity(tiny_model, videos, window_size=64)
    assert set(diversity) == {"diversity", "diversity_transposed"}
    layers = {"encoder": tiny_config.encoder_layers, "decoder": tiny_config.decoder_layers,
              "cross": tiny_config.decoder_layers}  # fmt: skip
    for kind, count in layers.items():
        summary = diversity["diversity"][kind]
        assert summary.mean.shape == summary.std.shape == (count,)
        assert summary.num_videos == 2 and np.isfinite(summary.mean).all()


def test_cli_diagnose_writes_diversity_json_and_plots_for_two_models(tmp_path, tiny_config, feature_dir, capsys):
    SelfDetrForActionDetection(tiny_config).save_pretrained(tmp_path / "with_feedback")
    tiny_config.encoder_feedback = tiny_config.decoder_feedback = False
    SelfDetrForActionDetection(tiny_config).save_pretrained(tmp_path / "without_feedback")
    annotations, predictions = tmp_path / "gt.json", tmp_path / "submission.json"
    annotations.write_text(json.dumps({"database": {"video_a": {"subset": "Test", "duration": 30.0, "fps": 5.0,
                                       "annotations": [{"label": "jump", "segment": [2.0, 6.0]}]}}}))  # fmt: skip
    predictions.write_text(
        json.dumps({"results": {"video_a": [{"segment": [2.5, 6.0], "score": 0.8, "label": "jump"}]}})
    )
    out = tmp_path / "out"

    status = main(["diagnose", "--model", str(tmp_path / "with_feedback"), "--features", str(feature_dir),
                   "--compare-model", str(tmp_path / "without_feedback"), "--output-dir", str(out),
                   "--annotations", str(annotations), "--predictions", str(predictions)])  # fmt: skip

    assert status == 0
    report = json.loads((out / "diversity.json").read_text())
    assert report["videos"] == ["video_a", "video_b"]
    assert report["models"]["model"]["self_feedback"] == "with self-feedback"
    assert report["models"]["compare_model"]["self_feedback"] == "without self-feedback"
    assert len(report["models"]["compare_model"]["diversity"]["cross"]["mean"]) == tiny_config.decoder_layers
    for name in ("attention_maps_model", "attention_maps_compare_model", "diversity", "timeline_video_a"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "encoder" in capsys.readouterr().out


def test_cli_diagnose_rejects_features_of_the_wrong_width(tmp_path, tiny_config, capsys):
    SelfDetrForActionDetection(tiny_config).save_pretrained(tmp_path / "model")
    np.save(tmp_path / "wide.npy", np.zeros((20, tiny_config.feature_dim + 1), dtype=np.float32))
    status = main(["diagnose", "--model", str(tmp_path / "model"), "--features", str(tmp_path / "wide.npy"),
                   "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert status == 2 and "wide.npy" in capsys.readouterr().err


def test_cli_diagnose_keeps_earlier_diagnostics_unless_asked(tmp_path, tiny_config, feature_dir, capsys):
    SelfDetrForActionDetection(tiny_config).save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    out.mkdir()
    (out / "attention_maps_model.png").write_bytes(b"an earlier plot")
    arguments = [
        "diagnose",
        "--model",
        str(tmp_path / "model"),
        "--features",
        str(feature_dir),
        "--output-dir",
        str(out),
    ]
    assert main(arguments) == 2
    assert "already holds attention_maps_model.png: replace them with --overwrite" in capsys.readouterr().err
    assert [path.name for path in out.iterdir()] == ["attention_maps_model.png"]
    assert main([*arguments, "--overwrite"]) == 0
    assert (out / "attention_maps_model.png").read_bytes().startswith(PNG_SIGNATURE)


def test_timeline_plot_is_written_for_a_video_without_detections(tmp_path):
    from selfdetr_hf.evaluation.plots import plot_detection_timeline

    path = plot_detection_timeline({"segments": [[1.0, 2.0]], "labels": ["jump"]}, [], tmp_path / "t.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
