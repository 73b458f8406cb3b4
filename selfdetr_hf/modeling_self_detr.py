"""Self-DETR: a DAB-DETR-style encoder-decoder over video feature sequences whose
self-attention is supervised by guidance maps from its cross-attention
(Kim, Lee, Heo, "Self-Feedback DETR for Temporal Action Detection", ICCV 2023).

Layout: batch first everywhere. B batch, T time steps, C input channels, d hidden size,
h heads, Nq queries. Segments are normalised ``(center, width)`` of the input window.
"""

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.dynamic_module_utils import custom_object_save
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_self_detr import SelfDetrConfig
from .losses import SelfDetrLoss
from .segment_ops import inverse_sigmoid

REMOTE_CODE_AUTO_MAP = {
    "AutoConfig": "configuration_self_detr.SelfDetrConfig",
    "AutoModel": "modeling_self_detr.SelfDetrModel",
    "AutoModelForTemporalActionDetection": "modeling_self_detr.SelfDetrForActionDetection",
    "AutoModelForObjectDetection": "modeling_self_detr.SelfDetrForActionDetection",
}
"""The ``auto_map`` every saved config carries: which class of the saved code each Auto class
loads with ``trust_remote_code=True``. ``AutoModelForObjectDetection`` is transformers' own
detection Auto class, which loads the detector where this package (and its
`AutoModelForTemporalActionDetection`) is not installed."""


@dataclass
class SelfDetrModelOutput(ModelOutput):
    r"""Outputs of [`SelfDetrModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_queries, d_model)`):
            Output of the last decoder layer after the decoder LayerNorm.
        intermediate_hidden_states (`torch.FloatTensor` of shape `(decoder_layers, batch_size, num_queries, d_model)`):
            Every decoder layer's output after the decoder LayerNorm: the input of the heads.
        reference_points (`torch.FloatTensor` of shape `(decoder_layers, batch_size, num_queries, 2)`):
            The normalised (center, width) anchor that entered each decoder layer, float32.
        encoder_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, d_model)`):
            The encoder output (the decoder's memory).
        encoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            `encoder_layers + 1` tensors of shape `(batch_size, sequence_length, d_model)`: the
            normalised input projection, then each encoder layer's output.
        decoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            `decoder_layers + 1` tensors of shape `(batch_size, num_queries, d_model)`: the decoder
            input (zero content queries), each layer's output, and last the output after the
            decoder LayerNorm (equal to `last_hidden_state`).
        encoder_attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            `encoder_layers` self-attention maps of shape `(batch_size, sequence_length, sequence_length)`,
            averaged over heads, or `(batch_size, num_heads, sequence_length, sequence_length)` with
            `per_head_attentions=True`. Float32 probabilities; in training mode after attention
            dropout unless `config.feedback_maps="before_dropout"`.
        decoder_attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            `decoder_layers` self-attention maps of shape `(batch_size, num_queries, num_queries)`
            (per head: `(batch_size, num_heads, num_queries, num_queries)`).
        cross_attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            `decoder_layers` cross-attention maps of shape `(batch_size, num_queries, sequence_length)`
            (per head: `(batch_size, num_heads, num_queries, sequence_length)`).
    """

    last_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: torch.FloatTensor | None = None
    reference_points: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class SelfDetrActionDetectionOutput(ModelOutput):
    r"""Outputs of [`SelfDetrForActionDetection`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            The training objective, Eq. 9.
        loss_dict (`dict[str, torch.FloatTensor]`, *optional*, returned when `labels` are given):
            Every unweighted term: `loss_focal`, `loss_l1`, `loss_tiou`, their copies for the
            auxiliary outputs `loss_focal_0`, ..., and `loss_encoder_feedback`, `loss_decoder_feedback`.
        logits (`torch.FloatTensor` of shape `(batch_size, num_queries, num_labels)`):
            Sigmoid classification logits of the last decoder layer.
        pred_segments (`torch.FloatTensor` of shape `(batch_size, num_queries, 2)`):
            Normalised (center, width) of each query's segment in the window, float32.
        auxiliary_outputs (`list[dict]`):
            `logits` and `pred_segments` of every decoder layer but the last.

    The other fields are those of [`SelfDetrModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict | None = None
    logits: torch.FloatTensor | None = None
    pred_segments: torch.FloatTensor | None = None
    auxiliary_outputs: list[dict] | None = None
    last_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: torch.FloatTensor | None = None
    reference_points: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


def sine_embedding(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Interleaved sine/cosine embedding of scalar positions (already scaled to radians).

    ``dim_i = temperature^(2 floor(i/2) / dim)``; output ``[sin(p/dim_0), cos(p/dim_1), ...]``.

    Args:
        positions: ``(...)`` float.

    Returns:
        ``(..., dim)``.
    """
    index = torch.arange(dim, dtype=torch.float32, device=positions.device)
    frequencies = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / dim)
    angles = positions.float()[..., None] / frequencies  # (..., dim)
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def temporal_position_embedding(valid: torch.Tensor, dim: int) -> torch.Tensor:
    """Normalised sine embedding of the valid time steps (spec 1.2).

    ``p_t = cumsum(valid)_t / (number of valid steps + 1e-6) * 2 pi``.

    Args:
        valid: ``(B, T)`` bool, True = valid step.

    Returns:
        ``(B, T, dim)`` float32.
    """
    steps = valid.cumsum(dim=1, dtype=torch.float32)
    positions = steps / (steps[:, -1:] + 1e-6) * (2 * math.pi)
    return sine_embedding(positions, dim)


def masked_group_norm(features: torch.Tensor, valid: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm over (channels in a group) x (valid time steps) with `norm`'s affine.

    Equal to ``nn.GroupNorm`` on ``(B, d, T)`` when every step is valid; padded steps do
    not enter the statistics, so padding leaves valid outputs unchanged. Statistics are
    float32 whatever the input dtype, as autocast runs ``nn.GroupNorm``.

    Args:
        features: ``(B, T, d)``; valid: ``(B, T)`` bool.

    Returns:
        ``(B, T, d)`` in the dtype of ``features`` promoted with ``norm``'s weights.
    """
    batch, steps, channels = features.shape
    groups = norm.num_groups
    grouped = features.float().view(batch, steps, groups, channels // groups)
    weight = valid.to(grouped.dtype)[:, :, None, None]  # (B, T, 1, 1)
    count = weight.sum(dim=1, keepdim=True) * (channels // groups)  # (B, 1, 1, 1)
    mean = (grouped * weight).sum(dim=(1, 3), keepdim=True) / count
    centred = grouped - mean
    variance = (centred.square() * weight).sum(dim=(1, 3), keepdim=True) / count
    normalised = (centred * torch.rsqrt(variance + norm.eps)).view(batch, steps, channels)
    output_dtype = torch.promote_types(features.dtype, norm.weight.dtype)
    return (normalised * norm.weight + norm.bias).to(output_dtype)


def inverted_dropout(hidden: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by
    ``1 / (1 - p)``. On CPU the mask comes from a uniform draw, which is about twice as
    fast as ``F.dropout``'s Bernoulli sampler; elsewhere ``F.dropout``."""
    if not training or p == 0:
        return hidden
    if hidden.device.type != "cpu":
        return F.dropout(hidden, p, training=True)
    keep = torch.rand_like(hidden) >= p
    return hidden * keep * (1 / (1 - p))


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit scaled dot-product attention, the ``eager`` entry of transformers'
    attention interface and the path of every map the self-feedback reads.

    The softmax runs in float32 whatever the input dtype. The returned map is the
    dropped-out probabilities that weight the values when ``module.maps_after_dropout``
    (the authors' maps, and transformers' convention), else the probabilities before
    dropout (rows summing to 1); the two are equal when ``dropout`` is 0.

    Args:
        query: ``(B, h, L, E)``; key: ``(B, h, S, E)``; value: ``(B, h, S, Ev)``.
        attention_mask: ``(B, 1, 1, S)`` bool, True = key may be attended; None = all.
        scaling: factor of the scores, ``E^-0.5``.
        dropout: attention dropout probability (0 in eval mode).

    Returns:
        ``(B, L, h, Ev)`` attention output and the ``(B, h, L, S)`` float32 map.
    """
    scores = (query * scaling) @ key.transpose(-1, -2)  # (B, h, L, S)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, float("-inf"))
    probabilities = scores.float().softmax(dim=-1)
    dropped = inverted_dropout(probabilities, dropout, training=True)
    output = dropped.to(value.dtype) @ value  # (B, h, L, Ev)
    weights = dropped if getattr(module, "maps_after_dropout", True) else probabilities
    return output.transpose(1, 2).contiguous(), weights


class SelfDetrAttention(nn.Module):
    """Multi-head attention through transformers' attention interface: the maps the
    self-feedback needs come from `eager_attention_forward`; without them the configured
    backend (``config._attn_implementation``: ``sdpa``, ``eager``, ...) runs.

    One exception keeps the explicit path under ``sdpa``: on CPU, where query and value
    head sizes differ (the conditional cross-attention), PyTorch's fused kernels fall back
    to an unfused path slower than the explicit one.
    """

    is_causal = False

    def __init__(self, config: SelfDetrConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.dropout = config.dropout
        self.maps_after_dropout = config.feedback_maps == "after_dropout"

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_valid: torch.Tensor | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query: ``(B, h, L, E)``; key: ``(B, h, S, E)``; value: ``(B, h, S, Ev)``;
        key_valid: ``(B, S)`` bool or None. Scale ``E^-0.5``.

        Returns ``(B, L, h * Ev)`` merged heads and, with ``need_weights``, the
        ``(B, h, L, S)`` map (see `eager_attention_forward`), else None.
        """
        implementation = self.config._attn_implementation
        interface = eager_attention_forward
        explicit_is_faster = implementation == "sdpa" and query.device.type == "cpu" and (
            query.shape[-1] != value.shape[-1]
        )  # fmt: skip
        if not need_weights and implementation != "eager" and not explicit_is_faster:
            interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        mask = None if key_valid is None else key_valid[:, None, None, :]  # (B, 1, 1, S)
        output, weights = interface(
            self, query, key, value, mask,
            scaling=query.shape[-1] ** -0.5, dropout=self.dropout if self.training else 0.0,
        )  # fmt: skip
        return output.flatten(2), weights if need_weights else None


def split_heads(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, L, h * e)`` -> ``(B, h, L, e)``."""
    batch, length, _ = tensor.shape
    return tensor.view(batch, length, heads, -1).transpose(1, 2)


class SelfDetrInputProjection(nn.Conv1d):
    """The authors' input projection, a 1x1 convolution over time ``(B, C, T) -> (B, d, T)``,
    computed as one matrix product on the channels-last view: on CPU the convolution
    kernel takes twice as long (forward and backward). Any ``nn.Conv1d`` adapter (LoRA)
    wraps it as it would the convolution."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features.transpose(1, 2), self.weight.squeeze(-1), self.bias).transpose(1, 2)


class SelfDetrMLP(nn.Module):
    """Linear layers with ReLU between them (the reference's MLP)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(dims, dims[1:] + [output_dim]))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden)
            if index < len(self.layers) - 1:
                hidden = F.relu(hidden)
        return hidden


def build_activation(name: str) -> nn.Module:
    """``prelu`` (one learned slope), ``relu`` or ``gelu`` as a module."""
    return {"prelu": nn.PReLU, "relu": nn.ReLU, "gelu": nn.GELU}[name]()


class SelfDetrFeedForward(nn.Module):
    """``fc2(dropout(act(fc1(x))))``, residual, dropout, LayerNorm (post-norm)."""

    def __init__(self, config: SelfDetrConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.ffn_dim)
        self.activation = build_activation(config.activation_function)
        self.fc2 = nn.Linear(config.ffn_dim, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)
        self.dropout = config.dropout

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        update = inverted_dropout(self.activation(self.fc1(hidden)), self.dropout, self.training)
        update = inverted_dropout(self.fc2(update), self.dropout, self.training)
        return self.final_layer_norm(hidden + update)


class SelfDetrEncoderSelfAttention(SelfDetrAttention):
    """Standard multi-head self-attention: ``q_proj`` and ``k_proj`` of the position-scaled
    input, ``v_proj`` of the input (the authors' packed ``in_proj``, split on conversion)."""

    def __init__(self, config: SelfDetrConfig):
        super().__init__(config)
        d = config.d_model
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(
        self, hidden: torch.Tensor, query_key: torch.Tensor, valid: torch.Tensor | None, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden: ``(B, T, d)`` values' input; query_key: ``(B, T, d)`` = hidden + scaled pos.

        Returns ``(B, T, d)`` and, with ``need_weights``, the ``(B, h, T, T)`` map.
        """
        heads = self.num_heads
        query, key = split_heads(self.q_proj(query_key), heads), split_heads(self.k_proj(query_key), heads)
        output, attention_map = self.attend(query, key, split_heads(self.v_proj(hidden), heads), valid, need_weights)
        return self.out_proj(output), attention_map


class SelfDetrEncoderLayer(GradientCheckpointingLayer):
    """Post-norm encoder layer: ``q = k = x + pos``, ``v = x`` (spec 1.3)."""

    def __init__(self, config: SelfDetrConfig):
        super().__init__()
        self.self_attn = SelfDetrEncoderSelfAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = SelfDetrFeedForward(config)
        self.dropout = config.dropout

    def forward(
        self, hidden: torch.Tensor, position: torch.Tensor, valid: torch.Tensor | None, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        update, attention_map = self.self_attn(hidden, hidden + position, valid, need_weights)
        hidden = self.self_attn_layer_norm(hidden + inverted_dropout(update, self.dropout, self.training))
        return self.feed_forward(hidden), attention_map


class SelfDetrDecoderSelfAttention(SelfDetrAttention):
    """Decoder self-attention with separate content and position projections and no
    input projection of its own: ``q = Wq_c(tgt) + Wq_p(pos)``, ``k = Wk_c(tgt) + Wk_p(pos)``."""

    def __init__(self, config: SelfDetrConfig):
        super().__init__(config)
        d = config.d_model
        self.q_content_proj = nn.Linear(d, d)
        self.q_pos_proj = nn.Linear(d, d)
        self.k_content_proj = nn.Linear(d, d)
        self.k_pos_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(
        self, hidden: torch.Tensor, query_pos: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden, query_pos: ``(B, Nq, d)`` -> ``(B, Nq, d)`` and the ``(B, h, Nq, Nq)`` map."""
        heads = self.num_heads
        query = split_heads(self.q_content_proj(hidden) + self.q_pos_proj(query_pos), heads)
        key = split_heads(self.k_content_proj(hidden) + self.k_pos_proj(query_pos), heads)
        value = split_heads(self.v_proj(hidden), heads)
        output, attention_map = self.attend(query, key, value, None, need_weights)
        return self.out_proj(output), attention_map


class SelfDetrDecoderCrossAttention(SelfDetrAttention):
    """Conditional cross-attention: per head, content and position halves are
    concatenated, so attention runs in ``2d / h`` dims per head with scale ``(2d/h)^-0.5``.

    The query's positional part (``q_pos_proj``) exists on the first layer only.
    """

    def __init__(self, config: SelfDetrConfig, is_first: bool):
        super().__init__(config)
        d = config.d_model
        self.q_content_proj = nn.Linear(d, d)
        self.q_pos_proj = nn.Linear(d, d) if is_first else None
        self.k_content_proj = nn.Linear(d, d)
        self.k_pos_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_pos_sine_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(
        self,
        hidden: torch.Tensor,
        query_pos: torch.Tensor,
        query_sine: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        valid: torch.Tensor | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden, query_pos, query_sine: ``(B, Nq, d)``; memory, memory_pos: ``(B, T, d)``.

        Returns ``(B, Nq, d)`` and, with ``need_weights``, the ``(B, h, Nq, T)`` map.
        """
        heads = self.num_heads
        query_content = self.q_content_proj(hidden)
        key_content = self.k_content_proj(memory)
        key_pos = self.k_pos_proj(memory_pos)
        if self.q_pos_proj is not None:
            query_content = query_content + self.q_pos_proj(query_pos)
            key_content = key_content + key_pos
        query = torch.cat(
            (split_heads(query_content, heads), split_heads(self.q_pos_sine_proj(query_sine), heads)), dim=-1
        )  # (B, h, Nq, 2d/h)
        key = torch.cat((split_heads(key_content, heads), split_heads(key_pos, heads)), dim=-1)
        value = split_heads(self.v_proj(memory), heads)  # (B, h, T, d/h)
        output, attention_map = self.attend(query, key, value, valid, need_weights)
        return self.out_proj(output), attention_map


class SelfDetrDecoderLayer(GradientCheckpointingLayer):
    """Post-norm decoder layer: self-attention, conditional cross-attention, FFN."""

    def __init__(self, config: SelfDetrConfig, is_first: bool):
        super().__init__()
        self.self_attn = SelfDetrDecoderSelfAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.cross_attn = SelfDetrDecoderCrossAttention(config, is_first)
        self.cross_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = SelfDetrFeedForward(config)
        self.dropout = config.dropout

    def forward(
        self,
        hidden: torch.Tensor,
        query_pos: torch.Tensor,
        query_sine: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        valid: torch.Tensor | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        update, self_map = self.self_attn(hidden, query_pos, need_weights)
        hidden = self.self_attn_layer_norm(hidden + inverted_dropout(update, self.dropout, self.training))
        update, cross_map = self.cross_attn(hidden, query_pos, query_sine, memory, memory_pos, valid, need_weights)
        hidden = self.cross_attn_layer_norm(hidden + inverted_dropout(update, self.dropout, self.training))
        return self.feed_forward(hidden), self_map, cross_map


class SelfDetrEncoder(nn.Module):
    """``L_e`` post-norm layers sharing one ``query_scale`` MLP:
    layer input ``q = k = x + pos * query_scale(x)``. No final norm."""

    def __init__(self, config: SelfDetrConfig):
        super().__init__()
        d = config.d_model
        self.layers = nn.ModuleList(SelfDetrEncoderLayer(config) for _ in range(config.encoder_layers))
        self.query_scale = SelfDetrMLP(d, d, d, 2)

    def forward(
        self, hidden: torch.Tensor, position: torch.Tensor, valid: torch.Tensor | None, need_weights: bool,
        output_hidden_states: bool,
    ) -> tuple[torch.Tensor, tuple, tuple]:  # fmt: skip
        attention_maps, hidden_states = (), (hidden,) if output_hidden_states else ()
        for layer in self.layers:
            hidden, attention_map = layer(hidden, position * self.query_scale(hidden), valid, need_weights)
            attention_maps += (attention_map,)
            if output_hidden_states:
                hidden_states += (hidden,)
        return hidden, attention_maps, hidden_states


class SelfDetrDecoder(nn.Module):
    """DAB-DETR-style decoder with 1-D anchors (center, width) refined layer by layer.

    The segment head lives here because the iterative refinement needs it; the detection
    head reuses the same module for its predictions.
    """

    def __init__(self, config: SelfDetrConfig):
        super().__init__()
        d = config.d_model
        self.layers = nn.ModuleList(
            SelfDetrDecoderLayer(config, is_first=index == 0) for index in range(config.decoder_layers)
        )
        self.layernorm = nn.LayerNorm(d)
        self.query_scale = SelfDetrMLP(d, d, d, 2)
        self.ref_point_head = SelfDetrMLP(2 * d, d, d, 2)
        self.ref_anchor_head = SelfDetrMLP(d, d, 1, 2)
        self.segment_head = SelfDetrMLP(d, d, 2, 3)

    def forward(
        self,
        anchors: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        valid: torch.Tensor | None,
        need_weights: bool,
        output_hidden_states: bool,
    ) -> dict[str, torch.Tensor | tuple]:
        """anchors: ``(B, Nq, 2)`` unsigmoided; memory, memory_pos: ``(B, T, d)``.

        References, their sine embeddings, the width modulation and the refinement through
        the inverse sigmoid stay in float32 under any dtype or autocast: in bfloat16 the
        refined anchors drift layer after layer. Only what enters a linear layer is cast.
        """
        d = memory.shape[-1]
        hidden = memory.new_zeros(anchors.shape[0], anchors.shape[1], d)  # content queries start at 0
        reference = anchors.float().sigmoid()
        references = [reference]  # what each layer's prediction is relative to (not detached)
        intermediate, self_maps, cross_maps = [], (), ()
        hidden_states = (hidden,) if output_hidden_states else ()
        for index, layer in enumerate(self.layers):
            sine = sine_embedding(reference * (2 * math.pi), d).flatten(-2)  # (B, Nq, 2d) float32
            query_pos = self.ref_point_head(sine.to(memory.dtype))
            center_sine = sine[..., :d]
            if index > 0:
                center_sine = center_sine * self.query_scale(hidden).float()
            width_modulation = self.ref_anchor_head(hidden).float().sigmoid() / reference[..., 1:]  # (B, Nq, 1)
            query_sine = (center_sine * width_modulation).to(memory.dtype)
            hidden, self_map, cross_map = layer(hidden, query_pos, query_sine, memory, memory_pos, valid, need_weights)
            self_maps += (self_map,)
            cross_maps += (cross_map,)
            intermediate.append(self.layernorm(hidden))
            if output_hidden_states:
                hidden_states += (hidden if index + 1 < len(self.layers) else intermediate[-1],)
            if index + 1 < len(self.layers):
                # Iterative refinement from the un-normalised output; the next layer's
                # reference is detached, the prediction's is not.
                refined = (self.segment_head(hidden).float() + inverse_sigmoid(reference)).sigmoid()
                references.append(refined)
                reference = refined.detach()
        return {
            "intermediate": torch.stack(intermediate),  # (L_d, B, Nq, d)
            "references": torch.stack(references),  # (L_d, B, Nq, 2)
            "self_maps": self_maps,
            "cross_maps": cross_maps,
            "hidden_states": hidden_states,
        }


class SelfDetrPreTrainedModel(PreTrainedModel):
    config: SelfDetrConfig
    base_model_prefix = "model"
    main_input_name = "input_features"
    input_modalities = ("video",)
    _no_split_modules = ["SelfDetrEncoderLayer", "SelfDetrDecoderLayer"]
    _supports_sdpa = True
    supports_gradient_checkpointing = True
    # The loss is normalised by the batch's segment count; Trainer divides it by the
    # gradient accumulation steps (it passes no `num_items_in_batch`).
    accepts_loss_kwargs = False

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """Two windows of 16 feature steps, the second padded after 12."""
        features = torch.randn(2, 16, self.config.feature_dim, generator=torch.Generator().manual_seed(0))
        attention_mask = torch.ones(2, 16, dtype=torch.long)
        attention_mask[1, 12:] = 0
        return {"input_features": features.to(self.device), "attention_mask": attention_mask.to(self.device)}

    @property
    def loss_function(self) -> SelfDetrLoss:
        """The training objective (Eq. 9) of this config, a `SelfDetrLoss`:
        ``loss, loss_dict = model.loss_function(logits, pred_segments, labels, ...)``."""
        return getattr(self, "criterion", None) or SelfDetrLoss(self.config)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained`, plus this model's code: ``modeling_self_detr.py``
        and the modules it imports are copied beside the weights and the config gets
        `REMOTE_CODE_AUTO_MAP` (entries set with ``register_for_auto_class`` win), so that
        ``from_pretrained(folder, trust_remote_code=True)`` loads it where this package is not
        installed. Where it is, its own classes load the folder, with or without the flag."""
        self.config.auto_map = {**REMOTE_CODE_AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True) and not self.is_remote_code():
            custom_object_save(self, save_directory)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Spec 1.6: xavier-uniform transformer weights; input projection xavier with zero
        bias; anchors N(0, 1); segment head with its last layer zero; class bias at the
        0.01 prior. The heads keep PyTorch's default Linear init otherwise.

        Called on the modules that own parameters, so each case is decided there.
        """
        base = self.model if isinstance(self, SelfDetrForActionDetection) else self
        segment_layers = list(base.decoder.segment_head.layers)
        encoder_attentions = [layer.self_attn for layer in base.encoder.layers]
        if isinstance(module, nn.Linear):
            if any(module in (a.q_proj, a.k_proj, a.v_proj) for a in encoder_attentions):
                # the authors' packed (3d, d) in_proj: xavier-uniform over the packed shape, zero bias
                bound = math.sqrt(6 / (4 * module.in_features))
                init.uniform_(module.weight, -bound, bound)
                init.zeros_(module.bias)
            elif any(module is a.out_proj for a in encoder_attentions):
                init.xavier_uniform_(module.weight)
                init.zeros_(module.bias)
            elif module is getattr(self, "class_head", None):
                _default_linear_init(module)
                init.constant_(module.bias, -math.log((1 - 0.01) / 0.01))
            elif module is segment_layers[-1]:
                init.zeros_(module.weight)
                init.zeros_(module.bias)
            elif any(module is layer for layer in segment_layers):
                _default_linear_init(module)
            else:
                init.xavier_uniform_(module.weight)
                bound = 1 / math.sqrt(module.in_features)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.Conv1d):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.PReLU):
            init.constant_(module.weight, 0.25)


def _default_linear_init(linear: nn.Linear) -> None:
    """PyTorch's own ``nn.Linear`` initialisation."""
    init.kaiming_uniform_(linear.weight, a=math.sqrt(5))
    bound = 1 / math.sqrt(linear.in_features)
    init.uniform_(linear.bias, -bound, bound)


def _check_inputs(input_features: torch.Tensor, attention_mask: torch.Tensor | None, feature_dim: int) -> torch.Tensor:
    """Validate shapes and return the ``(B, T)`` bool validity mask."""
    if input_features.dim() != 3 or input_features.shape[-1] != feature_dim:
        hint = " (channels last: transpose a (B, C, T) tensor)" if (
            input_features.dim() == 3 and input_features.shape[1] == feature_dim
        ) else ""  # fmt: skip
        raise ValueError(
            f"input_features must have shape (batch, time, {feature_dim}) for this config "
            f"(feature_dim={feature_dim}); got {tuple(input_features.shape)}{hint}"
        )
    if attention_mask is None:
        return torch.ones(input_features.shape[:2], dtype=torch.bool, device=input_features.device)
    if attention_mask.shape != input_features.shape[:2]:
        raise ValueError(
            f"attention_mask must have shape {tuple(input_features.shape[:2])} (batch, time); "
            f"got {tuple(attention_mask.shape)}"
        )
    valid = attention_mask.bool()
    if not torch.compiler.is_compiling():  # reads the mask on the host: eager only, never in a traced graph
        empty = (~valid.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"attention_mask marks no valid time step for batch sample(s) {empty}")
    return valid


class SelfDetrModel(SelfDetrPreTrainedModel):
    """The bare Self-DETR encoder-decoder: input projection, sine positions, encoder,
    anchor-refining decoder. Returns hidden states, references and attention maps."""

    def __init__(self, config: SelfDetrConfig):
        super().__init__(config)
        self.input_projection = SelfDetrInputProjection(config.feature_dim, config.d_model, kernel_size=1)
        self.input_norm = nn.GroupNorm(config.input_norm_groups, config.d_model)
        self.encoder = SelfDetrEncoder(config)
        self.decoder = SelfDetrDecoder(config)
        self.query_anchors = nn.Embedding(config.num_queries, 2)
        self.post_init()

    def get_input_embeddings(self) -> SelfDetrInputProjection:
        """The input projection, the model's entry point: `enable_input_require_grads` hooks it,
        so that checkpointed layers of a frozen model (adapters, reentrant checkpointing) pass
        gradients."""
        return self.input_projection

    @can_return_tuple
    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        per_head_attentions: bool = False,
    ) -> SelfDetrModelOutput:
        r"""
        Args:
            input_features (`torch.FloatTensor` of shape `(batch_size, sequence_length, feature_dim)`):
                Pre-extracted feature sequence of each window, channels last; cast to the model's dtype.
            attention_mask (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for valid time steps, 0 for padding. Padding never changes the outputs of
                valid steps. Defaults to all valid.
            output_attentions (`bool`, *optional*):
                Return the attention maps of every layer. They are computed explicitly, whatever
                the attention backend; without them the configured backend (`sdpa` by default)
                runs and no map is materialised.
            output_hidden_states (`bool`, *optional*):
                Return the hidden states of every encoder and decoder layer.
            per_head_attentions (`bool`, *optional*, defaults to `False`):
                Return the maps per head, `(batch_size, num_heads, queries, keys)` (transformers'
                convention), instead of averaged over heads (what the self-feedback uses).

        Returns:
            [`SelfDetrModelOutput`] or `tuple(torch.FloatTensor)` (with `return_dict=False`).

        Example:

        ```python
        >>> import torch
        >>> from selfdetr_hf import SelfDetrConfig, SelfDetrModel
        >>> model = SelfDetrModel(SelfDetrConfig(feature_dim=64, id2label={0: "action"})).eval()
        >>> outputs = model(input_features=torch.randn(2, 96, 64), output_attentions=True)
        >>> outputs.last_hidden_state.shape, outputs.cross_attentions[-1].shape
        (torch.Size([2, 40, 256]), torch.Size([2, 40, 96]))
        ```
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        valid = _check_inputs(input_features, attention_mask, self.config.feature_dim)
        key_valid = (
            None if attention_mask is None else valid
        )  # a given mask is always applied: no data-dependent branch
        need_weights = bool(output_attentions)

        features = input_features.to(self.dtype)  # float32 features from the processor into a bfloat16 model
        hidden = self.input_projection(features.transpose(1, 2)).transpose(1, 2).contiguous()  # (B, T, d)
        hidden = masked_group_norm(hidden, valid, self.input_norm)
        position = temporal_position_embedding(valid, self.config.d_model).to(hidden.dtype)  # (B, T, d)

        memory, encoder_maps, encoder_states = self.encoder(
            hidden, position, key_valid, need_weights, bool(output_hidden_states)
        )
        anchors = self.query_anchors.weight.unsqueeze(0).expand(input_features.shape[0], -1, -1)
        decoded = self.decoder(anchors, memory, position, key_valid, need_weights, bool(output_hidden_states))

        def maps(per_layer: tuple) -> tuple | None:  # L x (B, h, q, k) -> as requested
            if not need_weights:
                return None
            return per_layer if per_head_attentions else tuple(m.mean(dim=1) for m in per_layer)

        return SelfDetrModelOutput(
            last_hidden_state=decoded["intermediate"][-1],
            intermediate_hidden_states=decoded["intermediate"],
            reference_points=decoded["references"],
            encoder_last_hidden_state=memory,
            encoder_hidden_states=encoder_states or None,
            decoder_hidden_states=decoded["hidden_states"] or None,
            encoder_attentions=maps(encoder_maps),
            decoder_attentions=maps(decoded["self_maps"]),
            cross_attentions=maps(decoded["cross_maps"]),
        )


class SelfDetrForActionDetection(SelfDetrPreTrainedModel):
    """Self-DETR with its class and segment heads: detects action instances
    (class, normalised center and width) in a window of video features."""

    def __init__(self, config: SelfDetrConfig):
        super().__init__(config)
        self.model = SelfDetrModel(config)
        self.class_head = nn.Linear(config.d_model, config.num_labels)
        self.criterion = SelfDetrLoss(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: list[dict[str, torch.Tensor]] | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        per_head_attentions: bool = False,
    ) -> SelfDetrActionDetectionOutput:
        r"""
        Args:
            input_features (`torch.FloatTensor` of shape `(batch_size, sequence_length, feature_dim)`):
                Pre-extracted feature sequence of each window, channels last.
            attention_mask (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for valid time steps, 0 for padding. Defaults to all valid.
            labels (`list[dict]`, *optional*):
                One dict per window: `class_labels` (`torch.LongTensor` of shape `(n,)`) and
                `segments` (`torch.FloatTensor` of shape `(n, 2)`, normalised (center, width));
                `n` may be 0. With labels the output holds the loss (Eq. 9) and its terms.
            output_attentions (`bool`, *optional*):
                Return the attention maps of every layer. The maps the self-feedback loss needs
                are computed whenever `labels` are given, whatever the attention backend; in
                training mode they are those the feedback sees (`config.feedback_maps`).
            output_hidden_states (`bool`, *optional*):
                Return the hidden states of every encoder and decoder layer.
            per_head_attentions (`bool`, *optional*, defaults to `False`):
                Return the maps per head, `(batch_size, num_heads, queries, keys)`, instead of
                averaged over heads; the loss always uses the head average.

        Returns:
            [`SelfDetrActionDetectionOutput`] or `tuple(torch.FloatTensor)` (with `return_dict=False`).

        Example:

        ```python
        >>> import torch
        >>> from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection
        >>> model = SelfDetrForActionDetection(SelfDetrConfig()).eval()
        >>> outputs = model(input_features=torch.randn(1, 128, 2048))
        >>> outputs.logits.shape, outputs.pred_segments.shape
        (torch.Size([1, 40, 20]), torch.Size([1, 40, 2]))
        >>> labels = [{"class_labels": torch.tensor([3]), "segments": torch.tensor([[0.4, 0.1]])}]
        >>> outputs = model.train()(input_features=torch.randn(1, 128, 2048), labels=labels)
        >>> outputs.loss.backward()
        >>> sorted(name for name in outputs.loss_dict if not name[-2:-1] == "_")  # without the auxiliary terms
        ['loss_decoder_feedback', 'loss_encoder_feedback', 'loss_focal', 'loss_l1', 'loss_tiou']
        ```
        """
        config = self.config
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        needs_maps = labels is not None and (config.encoder_feedback or config.decoder_feedback)
        outputs = self.model(
            input_features,
            attention_mask=attention_mask,
            output_attentions=bool(output_attentions) or needs_maps,
            output_hidden_states=output_hidden_states,
            per_head_attentions=per_head_attentions,
            return_dict=True,
        )
        hidden = outputs.intermediate_hidden_states  # (L_d, B, Nq, d)
        logits = self.class_head(hidden)  # (L_d, B, Nq, K)
        segment_offsets = self.model.decoder.segment_head(hidden)  # (L_d, B, Nq, 2)
        pred_segments = (segment_offsets.float() + inverse_sigmoid(outputs.reference_points)).sigmoid()  # float32
        auxiliary_outputs = [
            {"logits": layer_logits, "pred_segments": layer_segments}
            for layer_logits, layer_segments in zip(logits[:-1], pred_segments[:-1])
        ]

        loss = loss_dict = None
        if labels is not None:
            maps = [outputs.encoder_attentions, outputs.decoder_attentions, outputs.cross_attentions]
            if per_head_attentions:
                maps = [None if kind is None else tuple(m.mean(dim=1) for m in kind) for kind in maps]
            loss, loss_dict = self.criterion(
                logits[-1],
                pred_segments[-1],
                labels,
                auxiliary_outputs=auxiliary_outputs,
                encoder_attentions=maps[0],
                decoder_attentions=maps[1],
                cross_attentions=maps[2],
                attention_mask=attention_mask,
            )
        return SelfDetrActionDetectionOutput(
            loss=loss,
            loss_dict=loss_dict,
            logits=logits[-1],
            pred_segments=pred_segments[-1],
            auxiliary_outputs=auxiliary_outputs,
            last_hidden_state=outputs.last_hidden_state,
            intermediate_hidden_states=hidden,
            reference_points=outputs.reference_points,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            decoder_hidden_states=outputs.decoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
        )


__all__ = ["SelfDetrForActionDetection", "SelfDetrModel", "SelfDetrPreTrainedModel"]
