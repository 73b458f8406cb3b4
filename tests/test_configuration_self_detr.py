import json

import pytest
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError
from transformers import AutoConfig

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection


def test_defaults_are_the_thumos14_setting():
    config = SelfDetrConfig()
    assert (config.feature_dim, config.d_model, config.num_attention_heads, config.ffn_dim) == (2048, 256, 8, 1024)
    assert (config.encoder_layers, config.decoder_layers, config.num_queries) == (2, 4, 40)
    assert config.num_labels == 20 and config.id2label[0] == "BaseballPitch"
    assert (config.class_cost, config.segment_cost, config.tiou_cost) == (6, 5, 2)
    assert (config.focal_loss_weight, config.l1_loss_weight, config.tiou_loss_weight) == (2, 5, 2)
    assert config.encoder_feedback and config.decoder_feedback
    assert (config.encoder_feedback_weight, config.decoder_feedback_weight) == (5, 5)
    assert (config.encoder_aggregation, config.decoder_guidance) == ("matmul", "layer")
    assert config.activation_function == "prelu" and config.dropout == 0.1


def test_id2label_sets_the_classes():
    config = SelfDetrConfig(id2label={0: "action"})
    assert config.num_labels == 1 and config.label2id == {"action": 0}


@pytest.mark.parametrize(
    ("field", "value"),
    [("encoder_aggregation", "sum"), ("decoder_guidance", "first"), ("activation_function", "swish")],
)
def test_invalid_choice_names_field_and_allowed_values(field, value):
    with pytest.raises(
        StrictDataclassFieldValidationError, match=rf"(?s)field '{field}'.*expected one of .*got {value}"
    ):
        SelfDetrConfig(**{field: value})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_queries": 0}, "num_queries"),
        ({"feature_dim": 2048.0}, "feature_dim"),
        ({"encoder_layers": True}, "encoder_layers"),
        ({"dropout": 1.5}, "dropout"),
        ({"encoder_feedback_weight": -1.0}, "encoder_feedback_weight"),
        ({"focal_alpha": 2.0}, "focal_alpha"),
    ],
)
def test_invalid_field_names_it(kwargs, field):
    with pytest.raises(StrictDataclassFieldValidationError, match=f"field '{field}'"):
        SelfDetrConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 100}, r"d_model \(100\) must be divisible by num_attention_heads \(8\)"),
        ({"input_norm_groups": 7}, r"input_norm_groups \(7\) must divide d_model \(256\)"),
        ({"class_cost": 0, "segment_cost": 0, "tiou_cost": 0}, "cannot all be 0"),
        ({"id2label": {}}, "id2label must name at least one class"),
    ],
)
def test_fields_that_constrain_each_other_are_checked_together(kwargs, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        SelfDetrConfig(**kwargs)


def test_integers_are_accepted_for_float_fields():
    config = SelfDetrConfig(dropout=0, class_cost=6, focal_gamma=2)
    assert (config.dropout, config.class_cost, config.focal_gamma) == (0, 6, 2)


OVERRIDES = [
    ({"d_model": 100}, StrictDataclassClassValidationError, "d_model"),
    ({"activation_function": "swish"}, StrictDataclassFieldValidationError, "activation_function"),
    ({"input_norm_groups": 7}, StrictDataclassClassValidationError, "input_norm_groups"),
    ({"num_queries": 0}, StrictDataclassFieldValidationError, "num_queries"),
]


@pytest.mark.parametrize(("override", "error", "field"), OVERRIDES)
@pytest.mark.parametrize("loader", [SelfDetrConfig.from_pretrained, AutoConfig.from_pretrained])
def test_from_pretrained_overrides_are_validated(tmp_path, loader, override, error, field):
    SelfDetrConfig().save_pretrained(tmp_path)
    with pytest.raises(error, match=field):
        loader(tmp_path, **override)


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ({"d_model": 34}, StrictDataclassClassValidationError, r"d_model \(34\) must be divisible"),
        ({"activation_function": "swish"}, StrictDataclassFieldValidationError, "activation_function"),
    ],
)
def test_model_from_pretrained_overrides_are_validated(tmp_path, make_small_config, override, error, message):
    SelfDetrForActionDetection(make_small_config()).save_pretrained(tmp_path)
    with pytest.raises(error, match=message):
        SelfDetrForActionDetection.from_pretrained(tmp_path, **override)


def test_from_pretrained_keeps_unused_kwargs_and_valid_overrides(tmp_path):
    SelfDetrConfig().save_pretrained(tmp_path)
    config, unused = SelfDetrConfig.from_pretrained(tmp_path, num_queries=30, colour="red", return_unused_kwargs=True)
    assert config.num_queries == 30 and unused == {"colour": "red"}


def test_a_config_file_with_an_invalid_value_is_refused(tmp_path):
    SelfDetrConfig().save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**settings, "encoder_aggregation": "sum"}))
    with pytest.raises(StrictDataclassFieldValidationError, match="encoder_aggregation"):
        SelfDetrConfig.from_pretrained(tmp_path)


def test_attribute_assignment_is_validated():
    config = SelfDetrConfig()
    with pytest.raises(StrictDataclassFieldValidationError, match="num_queries"):
        config.num_queries = 0
    with pytest.raises(StrictDataclassFieldValidationError, match="decoder_guidance"):
        config.decoder_guidance = "first"
    assert config.num_queries == 40 and config.decoder_guidance == "layer"


def test_save_pretrained_refuses_an_inconsistent_config_and_writes_nothing(tmp_path):
    config = SelfDetrConfig()
    config.d_model = 100  # valid alone; inconsistent with the 8 heads
    with pytest.raises(StrictDataclassClassValidationError, match="d_model"):
        config.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved" / "config.json").exists()


def test_save_and_auto_config_round_trip(tmp_path):
    config = SelfDetrConfig(id2label={0: "a", 1: "b"}, encoder_aggregation="average", decoder_feedback=False)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SelfDetrConfig)
    assert loaded.id2label == {0: "a", 1: "b"}
    assert loaded.encoder_aggregation == "average" and loaded.decoder_feedback is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id2label": {0: "a", 2: "b"}}, r"id2label must number its classes 0\.\.1; got ids \[0, 2\]"),
        ({"id2label": {0: "a", 1: "a"}}, "id2label names 'a' more than once"),
        ({"id2label": {0: "a", 1: "b"}, "label2id": {"b": 0, "a": 1}}, "label2id .* is not the inverse of id2label"),
    ],
)
def test_ambiguous_class_names_are_refused(kwargs, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        SelfDetrConfig(**kwargs)


def test_label2id_follows_id2label_however_it_is_set(tmp_path, make_small_config):
    config = SelfDetrConfig(id2label={"0": "a", "1": "b"})  # JSON keys
    assert config.id2label == {0: "a", 1: "b"} and config.label2id == {"a": 0, "b": 1}
    config.id2label = {0: "x"}
    assert config.label2id == {"x": 0}
    config.num_labels = 2
    assert config.label2id == {"LABEL_0": 0, "LABEL_1": 1}

    SelfDetrForActionDetection(make_small_config()).save_pretrained(tmp_path / "model")
    names = {0: "run", 1: "walk", 2: "sit"}
    for label2id in ({}, {"label2id": None}):
        model = SelfDetrForActionDetection.from_pretrained(
            tmp_path / "model", id2label=names, ignore_mismatched_sizes=True, **label2id
        )
        assert model.config.label2id == {"run": 0, "walk": 1, "sit": 2}
    model.save_pretrained(tmp_path / "fine-tuned")
    saved = json.loads((tmp_path / "fine-tuned" / "config.json").read_text())
    assert saved["label2id"] == {"run": 0, "walk": 1, "sit": 2}


def test_a_stored_label2id_that_disagrees_with_id2label_is_derived_again(tmp_path):
    SelfDetrConfig(id2label={0: "a", 1: "b"}).save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**settings, "label2id": {"old": 0}}))
    assert SelfDetrConfig.from_pretrained(tmp_path).label2id == {"a": 0, "b": 1}


@pytest.mark.parametrize("field", ["class_cost", "l1_loss_weight", "focal_gamma", "decoder_feedback_weight"])
def test_an_infinite_weight_or_cost_is_refused(field):
    with pytest.raises(StrictDataclassFieldValidationError, match=f"(?s)field '{field}'.*smaller than inf, got inf"):
        SelfDetrConfig(**{field: float("inf")})
