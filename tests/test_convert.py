"""The converter reproduces the authors' model and never runs pickled code."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.cli import main
from selfdetr_hf.convert import (
    CheckpointConversionError,
    convert_original_checkpoint,
    convert_state_dict,
    load_original_checkpoint,
)
from selfdetr_hf.hub import SAVED_CODE_FILES

ORIGINAL_LOSS_NAMES = {
    "loss_ce": "loss_focal",
    "loss_segments": "loss_l1",
    "loss_iou": "loss_tiou",
    "loss_KK": "loss_encoder_feedback",
    "loss_QQ": "loss_decoder_feedback",
}


@pytest.fixture(scope="module")
def fixture_dir(shared_data):
    return shared_data / "reference_fixture"


@pytest.fixture(scope="module")
def recorded(fixture_dir):
    return load_file(fixture_dir / "outputs.safetensors")


@pytest.fixture(scope="module")
def converted(fixture_dir):
    return convert_original_checkpoint(fixture_dir / "checkpoint.pth")


@pytest.fixture(scope="module")
def outputs(converted, recorded):
    features = recorded["input_features_BCT"].transpose(1, 2)  # (B, C, T) -> (B, T, C)
    with torch.no_grad():
        return converted(input_features=features, output_attentions=True)


def test_config_is_inferred_from_tensor_shapes(converted, fixture_dir):
    expected = json.loads((fixture_dir / "expected.json").read_text())
    config = converted.config
    assert (config.encoder_layers, config.decoder_layers, config.ffn_dim, config.num_queries) == (2, 3, 256, 10)
    assert (config.num_labels, config.feature_dim, config.activation_function) == (20, 2048, "prelu")
    assert sum(p.numel() for p in converted.parameters()) == expected["parameter_count"]


def test_final_predictions_match_the_reference(outputs, recorded):
    torch.testing.assert_close(outputs.logits, recorded["pred_logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs.pred_segments, recorded["pred_segments"], atol=1e-5, rtol=0)


def test_auxiliary_predictions_match_the_reference(outputs, recorded):
    for index, auxiliary in enumerate(outputs.auxiliary_outputs):
        torch.testing.assert_close(auxiliary["logits"], recorded[f"aux_{index}_pred_logits"], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            auxiliary["pred_segments"], recorded[f"aux_{index}_pred_segments"], atol=1e-5, rtol=0
        )


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("encoder_attentions", "encoder_self_attentions"),
        ("decoder_attentions", "decoder_self_attentions"),
        ("cross_attentions", "cross_attentions"),
    ],
)
def test_attention_maps_match_the_reference(outputs, recorded, ours, theirs):
    # the recorded maps are laid out (layers, batch, ...)
    torch.testing.assert_close(torch.stack(getattr(outputs, ours)), recorded[theirs], atol=1e-5, rtol=0)


def test_loss_terms_match_the_reference(converted, recorded, fixture_dir):
    expected = json.loads((fixture_dir / "expected.json").read_text())
    assert expected["matcher_costs"] == {"class": 6, "segment_l1": 5, "tiou": 2}
    labels = [
        {"class_labels": torch.tensor(t["labels"]), "segments": torch.tensor(t["segments_center_width"])}
        for t in expected["targets"]
    ]
    with torch.no_grad():
        loss_dict = converted(input_features=recorded["input_features_BCT"].transpose(1, 2), labels=labels).loss_dict
    for name, value in expected["losses_eval_mode"].items():
        base = re.sub(r"_\d+$", "", name)
        ours = ORIGINAL_LOSS_NAMES[base] + name[len(base) :]
        assert abs(loss_dict[ours].item() - value) < 1e-5, name
        assert converted.criterion.weight(ours) == expected["loss_weights"][base]


def test_cli_convert_writes_a_loadable_directory(fixture_dir, recorded, outputs, tmp_path):
    assert main(["convert", str(fixture_dir / "checkpoint.pth"), str(tmp_path / "out")]) == 0
    loaded = SelfDetrForActionDetection.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        logits = loaded(input_features=recorded["input_features_BCT"].transpose(1, 2)).logits
    torch.testing.assert_close(logits, outputs.logits, atol=1e-5, rtol=0)


def test_cli_convert_sets_class_names(fixture_dir, tmp_path):
    names = [f"class_{i}" for i in range(20)]
    assert main(["convert", str(fixture_dir / "checkpoint.pth"), str(tmp_path), "--id2label", json.dumps(names)]) == 0
    assert SelfDetrForActionDetection.from_pretrained(tmp_path).config.id2label[19] == "class_19"


def test_wrong_number_of_classes_is_refused(fixture_dir, tmp_path, capsys):
    assert main(["convert", str(fixture_dir / "checkpoint.pth"), str(tmp_path), "--num-labels", "5"]) == 2
    assert "class_embed has 20" in capsys.readouterr().err


class _Payload:
    """Unpickling this would create a file: the converter must never do so."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "executed"
    torch.save({"model": {"w": torch.zeros(1)}, "args": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointConversionError, match="evil.pth: refused"):
        load_original_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_missing_tensor_is_named(fixture_dir):
    checkpoint = load_original_checkpoint(fixture_dir / "checkpoint.pth")
    state = dict(checkpoint["model"])
    del state["transformer.decoder.layers.1.ca_v_proj.weight"]
    model = SelfDetrForActionDetection(convert_original_checkpoint(fixture_dir / "checkpoint.pth").config)
    with pytest.raises(CheckpointConversionError, match=r"model\.decoder\.layers\.1\.cross_attn\.v_proj\.weight"):
        convert_state_dict(state, model)


def test_unexpected_tensor_is_named(fixture_dir):
    checkpoint = load_original_checkpoint(fixture_dir / "checkpoint.pth")
    state = {**checkpoint["model"], "transformer.extra_head.weight": torch.zeros(2)}
    model = SelfDetrForActionDetection(convert_original_checkpoint(fixture_dir / "checkpoint.pth").config)
    with pytest.raises(CheckpointConversionError, match=r"unexpected tensor .*transformer\.extra_head\.weight"):
        convert_state_dict(state, model)


def test_shape_mismatch_is_named(fixture_dir):
    checkpoint = load_original_checkpoint(fixture_dir / "checkpoint.pth")
    state = {**checkpoint["model"], "refpoint_embed.weight": torch.zeros(11, 2)}
    model = SelfDetrForActionDetection(convert_original_checkpoint(fixture_dir / "checkpoint.pth").config)
    with pytest.raises(CheckpointConversionError, match=r"shape mismatch for refpoint_embed\.weight: \(11, 2\)"):
        convert_state_dict(state, model)


def test_truncated_checkpoint_is_an_error_naming_the_file(fixture_dir, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((fixture_dir / "checkpoint.pth").read_bytes()[:4096])
    with pytest.raises(CheckpointConversionError, match="truncated.pth"):
        load_original_checkpoint(truncated)


def test_training_settings_of_the_checkpoint_reach_the_config(fixture_dir, tmp_path, capsys):
    checkpoint = load_original_checkpoint(fixture_dir / "checkpoint.pth")
    checkpoint["cfg"].update(use_KK=False, QQ_loss_coef=3.0, cls_loss_coef=1, set_cost_iou=4, aux_loss=False)
    torch.save(checkpoint, tmp_path / "no_encoder_feedback.pth")
    assert main(["convert", str(tmp_path / "no_encoder_feedback.pth"), str(tmp_path / "out")]) == 0
    config = SelfDetrForActionDetection.from_pretrained(tmp_path / "out").config
    assert (config.encoder_feedback, config.decoder_feedback) == (False, True)
    assert (config.decoder_feedback_weight, config.focal_loss_weight, config.tiou_cost) == (3.0, 1.0, 4.0)
    assert (config.l1_loss_weight, config.class_cost, config.auxiliary_loss) == (5.0, 6.0, False)
    printed = capsys.readouterr().out
    assert "use_KK=False -> encoder_feedback" in printed
    assert "QQ_loss_coef=3.0 -> decoder_feedback_weight" in printed


def test_checkpoint_without_training_settings_keeps_the_defaults(fixture_dir, tmp_path, capsys):
    checkpoint = load_original_checkpoint(fixture_dir / "checkpoint.pth")
    torch.save({"model": checkpoint["model"]}, tmp_path / "weights_only.pth")
    assert main(["convert", str(tmp_path / "weights_only.pth"), str(tmp_path / "out")]) == 0
    config = SelfDetrForActionDetection.from_pretrained(tmp_path / "out").config
    assert (config.encoder_feedback, config.decoder_feedback, config.focal_loss_weight) == (True, True, 2.0)
    assert "training settings from the checkpoint: none recorded, defaults kept" in capsys.readouterr().out


def test_cli_convert_refuses_a_folder_holding_a_model_unless_asked_to_overwrite(fixture_dir, tmp_path, run_selfdetr):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text('{"mine": 1}')
    (out / "model-00001-of-00002.safetensors").write_text("mine")
    (out / "notes.txt").write_text("mine")
    result = run_selfdetr("convert", str(fixture_dir / "checkpoint.pth"), str(out), "--threads", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"selfdetr convert: error: {out} already holds a model (config.json, model-00001-of-00002.safetensors): "
        "choose another folder, or replace it with --overwrite"
    )
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model-00001-of-00002.safetensors", "notes.txt"]
    assert (out / "config.json").read_text() == '{"mine": 1}'

    assert main(["convert", str(fixture_dir / "checkpoint.pth"), str(out), "--overwrite"]) == 0
    written = {p.name for p in out.iterdir()} - {"config.json", "model.safetensors", "notes.txt"}
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".py") == [
        "config.json",
        "model.safetensors",
        "notes.txt",
    ]
    assert written and written <= set(SAVED_CODE_FILES)  # the model's code, for remote code
    assert SelfDetrForActionDetection.from_pretrained(out).config.num_queries == 10


def test_cli_convert_names_id2label_when_it_is_not_class_names(tmp_path, run_selfdetr):
    names = '{"jump": 0}'  # a label2id, not an id2label
    result = run_selfdetr("convert", str(tmp_path / "original.pth"), str(tmp_path / "out"), "--id2label", names)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "selfdetr convert: error: --id2label: expected a list of names or an {id: name} object with ids 0, 1, ...; "
        f"got {names}"
    )
    assert not (tmp_path / "out").exists()
