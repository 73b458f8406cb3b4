import pytest
from transformers import AutoConfig

from selfdetr_hf import SelfDetrConfig


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
    ("field", "value", "allowed"),
    [
        ("encoder_aggregation", "sum", "matmul, average, last"),
        ("decoder_guidance", "first", "layer, last, average"),
        ("activation_function", "swish", "prelu, relu, gelu"),
    ],
)
def test_invalid_choice_names_field_and_allowed_values(field, value, allowed):
    with pytest.raises(ValueError, match=rf"{field} must be one of {allowed}; got '{value}'"):
        SelfDetrConfig(**{field: value})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"d_model": 100}, "d_model"),
        ({"num_queries": 0}, "num_queries"),
        ({"input_norm_groups": 7}, "input_norm_groups"),
        ({"dropout": 1.5}, "dropout"),
        ({"encoder_feedback_weight": -1.0}, "encoder_feedback_weight"),
        ({"focal_alpha": 2.0}, "focal_alpha"),
    ],
)
def test_invalid_number_names_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SelfDetrConfig(**kwargs)


def test_save_and_auto_config_round_trip(tmp_path):
    config = SelfDetrConfig(id2label={0: "a", 1: "b"}, encoder_aggregation="average", decoder_feedback=False)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SelfDetrConfig)
    assert loaded.id2label == {0: "a", 1: "b"}
    assert loaded.encoder_aggregation == "average" and loaded.decoder_feedback is False
