"""Configuration of Self-DETR (Kim et al., ICCV 2023) for temporal action detection."""

from __future__ import annotations

from transformers import PreTrainedConfig

THUMOS14_CLASSES = (
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving",
    "CricketBowling", "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow",
    "HighJump", "JavelinThrow", "LongJump", "PoleVault", "Shotput", "SoccerPenalty",
    "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
)  # fmt: skip

ACTIVATIONS = ("prelu", "relu", "gelu")
ENCODER_AGGREGATIONS = ("matmul", "average", "last")
DECODER_GUIDANCES = ("layer", "last", "average")
FEEDBACK_MAPS = ("after_dropout", "before_dropout")


class SelfDetrConfig(PreTrainedConfig):
    r"""Configuration of a [`SelfDetrModel`] / [`SelfDetrForActionDetection`].

    Defaults reproduce the THUMOS14 setting of the paper (I3D two-stream features,
    20 classes): 8,100,973 parameters.

    Args:
        feature_dim (`int`, defaults to 2048): channels of the input feature sequence.
        d_model (`int`, defaults to 256): hidden size of the transformer.
        num_attention_heads (`int`, defaults to 8): heads of every attention block.
        ffn_dim (`int`, defaults to 1024): hidden size of the feed-forward blocks.
        dropout (`float`, defaults to 0.1): attention, residual and feed-forward dropout.
        activation_function (`str`, defaults to `"prelu"`): feed-forward activation,
            one of `prelu` (one learned slope per layer), `relu`, `gelu`.
        encoder_layers (`int`, defaults to 2): post-norm encoder layers.
        decoder_layers (`int`, defaults to 4): post-norm decoder layers.
        num_queries (`int`, defaults to 40): learned anchors (action slots) per window.
        input_norm_groups (`int`, defaults to 32): groups of the GroupNorm after the input
            projection; must divide `d_model`.
        id2label (`dict[int, str]`): class names; defaults to the 20 THUMOS14 classes. Use a
            single class (e.g. `{0: "action"}`) for class-agnostic ActivityNet training.
        class_cost / segment_cost / tiou_cost (`float`, 6 / 5 / 2): Hungarian matching
            cost weights of the focal cost, the L1 distance and the (negated) tIoU.
        focal_loss_weight / l1_loss_weight / tiou_loss_weight (`float`, 2 / 5 / 2):
            weights of the detection losses for the final and every auxiliary output.
        focal_alpha / focal_gamma (`float`, 0.25 / 2.0): sigmoid focal loss parameters.
        auxiliary_loss (`bool`, defaults to `True`): supervise every decoder layer.
        encoder_feedback / decoder_feedback (`bool`, defaults to `True`): the
            self-feedback KL terms on encoder and decoder self-attention (Eq. 5, 6).
        encoder_feedback_weight / decoder_feedback_weight (`float`, 5 / 5): their weights.
        encoder_aggregation (`str`, defaults to `"matmul"`): how encoder layers' maps are
            combined before the KL (Eq. 4): `matmul`, `average`, `last`.
        decoder_guidance (`str`, defaults to `"layer"`): which decoder self-attention is
            paired with which guidance: `layer`, `last`, `average`.
        feedback_maps (`str`, defaults to `"after_dropout"`): which attention maps the
            self-feedback terms see in training: `after_dropout` (the head average of the
            dropped-out probabilities, as the authors' code computes them) or
            `before_dropout` (the softmax itself, rows summing to 1). Identical in eval
            mode and with `dropout=0`.

    Example:

    ```python
    >>> from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection
    >>> config = SelfDetrConfig(id2label={0: "jump", 1: "throw"}, feature_dim=1024)
    >>> model = SelfDetrForActionDetection(config)
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

    feature_dim: int = 2048
    d_model: int = 256
    num_attention_heads: int = 8
    ffn_dim: int = 1024
    dropout: float = 0.1
    activation_function: str = "prelu"
    encoder_layers: int = 2
    decoder_layers: int = 4
    num_queries: int = 40
    input_norm_groups: int = 32
    class_cost: float = 6.0
    segment_cost: float = 5.0
    tiou_cost: float = 2.0
    focal_loss_weight: float = 2.0
    l1_loss_weight: float = 5.0
    tiou_loss_weight: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    auxiliary_loss: bool = True
    encoder_feedback: bool = True
    decoder_feedback: bool = True
    encoder_feedback_weight: float = 5.0
    decoder_feedback_weight: float = 5.0
    encoder_aggregation: str = "matmul"
    decoder_guidance: str = "layer"
    feedback_maps: str = "after_dropout"
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        if self.id2label is None and "num_labels" not in kwargs:
            self.id2label = dict(enumerate(THUMOS14_CLASSES))
        super().__post_init__(**kwargs)
        if self.label2id is None:
            self.label2id = {name: index for index, name in self.id2label.items()}
        self._check_values()

    def _check_values(self) -> None:
        """Raise `ValueError` naming the first field whose value is not allowed."""
        choices = {
            "activation_function": ACTIVATIONS,
            "encoder_aggregation": ENCODER_AGGREGATIONS,
            "decoder_guidance": DECODER_GUIDANCES,
            "feedback_maps": FEEDBACK_MAPS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"SelfDetrConfig.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}"
                )
        positive = ("feature_dim", "d_model", "num_attention_heads", "ffn_dim", "encoder_layers",
                    "decoder_layers", "num_queries", "input_norm_groups")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SelfDetrConfig.{name} must be a positive integer; got {value!r}")
        if self.d_model % self.num_attention_heads:
            raise ValueError(
                f"SelfDetrConfig.d_model ({self.d_model}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.d_model % self.input_norm_groups:
            raise ValueError(
                f"SelfDetrConfig.input_norm_groups ({self.input_norm_groups}) must divide d_model ({self.d_model})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SelfDetrConfig.dropout must lie in [0, 1); got {self.dropout!r}")
        if not 0.0 <= self.focal_alpha <= 1.0:
            raise ValueError(f"SelfDetrConfig.focal_alpha must lie in [0, 1]; got {self.focal_alpha!r}")
        non_negative = ("class_cost", "segment_cost", "tiou_cost", "focal_loss_weight",
                        "l1_loss_weight", "tiou_loss_weight", "focal_gamma",
                        "encoder_feedback_weight", "decoder_feedback_weight")  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"SelfDetrConfig.{name} must be >= 0; got {getattr(self, name)!r}")
        if self.class_cost == self.segment_cost == self.tiou_cost == 0:
            raise ValueError("SelfDetrConfig.class_cost, segment_cost and tiou_cost cannot all be 0")
        if not self.id2label:
            raise ValueError("SelfDetrConfig.id2label must name at least one class")


__all__ = ["SelfDetrConfig"]
