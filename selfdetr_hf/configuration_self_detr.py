"""Configuration of Self-DETR (Kim et al., ICCV 2023) for temporal action detection."""

import math
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils.type_validators import interval, positive_int_field, probability

THUMOS14_CLASSES = (
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving",
    "CricketBowling", "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow",
    "HighJump", "JavelinThrow", "LongJump", "PoleVault", "Shotput", "SoccerPenalty",
    "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
)  # fmt: skip

Activation = Literal["prelu", "relu", "gelu"]
EncoderAggregation = Literal["matmul", "average", "last"]
DecoderGuidance = Literal["layer", "last", "average"]
FeedbackMaps = Literal["after_dropout", "before_dropout"]

non_negative = interval(min=0, max=math.inf, exclude_max=True)  # finite: an infinite weight or cost is no setting


@strict
class SelfDetrConfig(PreTrainedConfig):
    r"""
    This is the configuration class to store the configuration of a [`SelfDetrModel`] or a
    [`SelfDetrForActionDetection`]. The defaults reproduce the THUMOS14 setting of the paper
    (I3D two-stream features, 20 classes): a model of 8,100,973 parameters.

    Every field is checked when it is set (at construction, by `from_pretrained` overrides and by
    attribute assignment), and the fields that constrain each other (`d_model` against
    `num_attention_heads` and `input_norm_groups`, the matching costs) at construction, after
    `from_pretrained` and `from_dict` overrides, and before `save_pretrained` writes
    `config.json`. A violation raises `huggingface_hub.errors.StrictDataclassFieldValidationError`
    or `StrictDataclassClassValidationError` naming the field.

    Args:
        feature_dim (`int`, *optional*, defaults to 2048):
            Channels `C` of the input feature sequence `(batch_size, sequence_length, C)`.
        d_model (`int`, *optional*, defaults to 256):
            Hidden size of the encoder and decoder; must be divisible by `num_attention_heads` and by
            `input_norm_groups`.
        num_attention_heads (`int`, *optional*, defaults to 8):
            Heads of every self- and cross-attention block.
        ffn_dim (`int`, *optional*, defaults to 1024):
            Hidden size of the feed-forward blocks.
        dropout (`float`, *optional*, defaults to 0.1):
            Attention, residual and feed-forward dropout, in `[0, 1)`.
        activation_function (`str`, *optional*, defaults to `"prelu"`):
            Feed-forward activation: `"prelu"` (one learned slope per layer), `"relu"` or `"gelu"`.
        encoder_layers (`int`, *optional*, defaults to 2):
            Post-norm encoder layers.
        decoder_layers (`int`, *optional*, defaults to 4):
            Post-norm decoder layers, each refining the anchors.
        num_queries (`int`, *optional*, defaults to 40):
            Learned anchors (action slots) per window: the most actions one window can hold.
        input_norm_groups (`int`, *optional*, defaults to 32):
            Groups of the GroupNorm after the input projection; must divide `d_model`.
        id2label (`dict[int, str]`, *optional*):
            Class names; defaults to the 20 THUMOS14 classes. A single class (e.g. `{0: "action"}`)
            gives class-agnostic training (ActivityNet). Ids are 0..n-1, names distinct; `label2id` is
            derived from it.
        class_cost (`float`, *optional*, defaults to 6.0):
            Weight of the focal classification cost in the Hungarian matching.
        segment_cost (`float`, *optional*, defaults to 5.0):
            Weight of the L1 distance of (center, width) in the Hungarian matching.
        tiou_cost (`float`, *optional*, defaults to 2.0):
            Weight of the negated tIoU in the Hungarian matching. The three costs cannot all be 0.
        focal_loss_weight (`float`, *optional*, defaults to 2.0):
            Weight of the sigmoid focal loss, for the final and every auxiliary output.
        l1_loss_weight (`float`, *optional*, defaults to 5.0):
            Weight of the L1 segment loss, for the final and every auxiliary output.
        tiou_loss_weight (`float`, *optional*, defaults to 2.0):
            Weight of the `1 - tIoU` loss, for the final and every auxiliary output.
        focal_alpha (`float`, *optional*, defaults to 0.25):
            Alpha of the sigmoid focal loss, in `[0, 1]`.
        focal_gamma (`float`, *optional*, defaults to 2.0):
            Gamma of the sigmoid focal loss.
        auxiliary_loss (`bool`, *optional*, defaults to `True`):
            Whether every decoder layer's output is supervised (auxiliary losses).
        encoder_feedback (`bool`, *optional*, defaults to `True`):
            Whether the self-feedback KL term on encoder self-attention is trained (Eq. 5).
        decoder_feedback (`bool`, *optional*, defaults to `True`):
            Whether the self-feedback KL term on decoder self-attention is trained (Eq. 6).
        encoder_feedback_weight (`float`, *optional*, defaults to 5.0):
            Weight of the encoder self-feedback term in Eq. 9.
        decoder_feedback_weight (`float`, *optional*, defaults to 5.0):
            Weight of the decoder self-feedback term in Eq. 9.
        encoder_aggregation (`str`, *optional*, defaults to `"matmul"`):
            How the encoder layers' maps are combined before the KL (Eq. 4): `"matmul"`, `"average"`
            or `"last"`.
        decoder_guidance (`str`, *optional*, defaults to `"layer"`):
            Which decoder self-attention is paired with which guidance: `"layer"`, `"last"` or
            `"average"`.
        feedback_maps (`str`, *optional*, defaults to `"after_dropout"`):
            Which attention maps the self-feedback terms see in training: `"after_dropout"` (the head
            average of the dropped-out probabilities, as the authors' code computes them) or
            `"before_dropout"` (the softmax itself, rows summing to 1). Identical in eval mode and with
            `dropout=0`.

    Example:

    ```python
    >>> from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection

    >>> # the THUMOS14 setting
    >>> config = SelfDetrConfig()
    >>> config.num_labels, config.num_queries
    (20, 40)

    >>> # your own classes and feature size
    >>> config = SelfDetrConfig(id2label={0: "jump", 1: "throw"}, feature_dim=1024)
    >>> model = SelfDetrForActionDetection(config)
    >>> model.config.label2id
    {'jump': 0, 'throw': 1}
    ```
    """

    model_type = "self_detr"
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "encoder_layers",
    }
    keys_to_ignore_at_inference = [
        "auxiliary_outputs",
        "last_hidden_state",
        "intermediate_hidden_states",
        "reference_points",
        "encoder_last_hidden_state",
        "encoder_hidden_states",
        "decoder_hidden_states",
        "encoder_attentions",
        "decoder_attentions",
        "cross_attentions",
        "loss_dict",
    ]

    feature_dim: int = positive_int_field(default=2048)
    d_model: int = positive_int_field(default=256)
    num_attention_heads: int = positive_int_field(default=8)
    ffn_dim: int = positive_int_field(default=1024)
    dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.1)
    activation_function: Activation = "prelu"
    encoder_layers: int = positive_int_field(default=2)
    decoder_layers: int = positive_int_field(default=4)
    num_queries: int = positive_int_field(default=40)
    input_norm_groups: int = positive_int_field(default=32)
    class_cost: float | int = non_negative(default=6.0)
    segment_cost: float | int = non_negative(default=5.0)
    tiou_cost: float | int = non_negative(default=2.0)
    focal_loss_weight: float | int = non_negative(default=2.0)
    l1_loss_weight: float | int = non_negative(default=5.0)
    tiou_loss_weight: float | int = non_negative(default=2.0)
    focal_alpha: float | int = probability(default=0.25)
    focal_gamma: float | int = non_negative(default=2.0)
    auxiliary_loss: bool = True
    encoder_feedback: bool = True
    decoder_feedback: bool = True
    encoder_feedback_weight: float | int = non_negative(default=5.0)
    decoder_feedback_weight: float | int = non_negative(default=5.0)
    encoder_aggregation: EncoderAggregation = "matmul"
    decoder_guidance: DecoderGuidance = "layer"
    feedback_maps: FeedbackMaps = "after_dropout"
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        if self.id2label is None and "num_labels" not in kwargs:
            self.id2label = dict(enumerate(THUMOS14_CLASSES))
        given = self.label2id
        super().__post_init__(**kwargs)  # makes the ids of id2label integers; label2id follows
        if given is not None and {name: int(index) for name, index in given.items()} != self.label2id:
            self.label2id = given  # a label2id of other classes: refused by validate_labels

    def __setattr__(self, name: str, value: Any) -> None:
        """`label2id` is derived from `id2label`: setting `id2label` (or `num_labels`) updates it,
        and a `label2id` of None is the inverse of `id2label`."""
        if name == "label2id" and value is None and getattr(self, "id2label", None) is not None:
            value = _inverse(self.id2label)
        super().__setattr__(name, value)
        if name == "id2label" and value is not None:
            super().__setattr__("label2id", _inverse(value))

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        """As `PreTrainedConfig.from_dict`, which `from_pretrained` calls; overrides in `kwargs`
        are set one by one after construction (each field checked alone), so the fields that
        constrain each other are checked again once all are set. The stored `label2id` is
        derived again from `id2label`."""
        loaded = super().from_dict({k: v for k, v in config_dict.items() if k != "label2id"}, **kwargs)
        (loaded[0] if kwargs.get("return_unused_kwargs") else loaded).validate()
        return loaded

    def validate_architecture(self) -> None:
        """`d_model` splits evenly into attention heads and into GroupNorm groups."""
        if self.d_model % self.num_attention_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_attention_heads ({self.num_attention_heads})"
            )
        if self.d_model % self.input_norm_groups:
            raise ValueError(f"input_norm_groups ({self.input_norm_groups}) must divide d_model ({self.d_model})")

    def validate_matching(self) -> None:
        """The Hungarian matching has at least one non-zero cost."""
        if self.class_cost == self.segment_cost == self.tiou_cost == 0:
            raise ValueError("class_cost, segment_cost and tiou_cost cannot all be 0")

    def validate_labels(self) -> None:
        """Classes are numbered 0..n-1 with distinct names, and `label2id` is the inverse of `id2label`."""
        if not self.id2label:
            raise ValueError("id2label must name at least one class")
        ids = sorted(self.id2label)
        if ids != list(range(len(ids))):
            raise ValueError(f"id2label must number its classes 0..{len(ids) - 1}; got ids {ids}")
        names = list(self.id2label.values())
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"id2label names {', '.join(map(repr, repeated))} more than once")
        if self.label2id is None or {name: int(i) for name, i in self.label2id.items()} != _inverse(self.id2label):
            raise ValueError(
                f"label2id {self.label2id} is not the inverse of id2label {self.id2label} (leave label2id out: "
                "it is derived from id2label)"
            )


def _inverse(id2label: dict) -> dict:
    """``{name: id}`` of ``{id: name}``."""
    return {name: index for index, name in id2label.items()}


__all__ = ["SelfDetrConfig"]
