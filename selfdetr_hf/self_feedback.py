"""Self-feedback: guidance maps from cross-attention supervise self-attention.

The paper's contribution (Kim et al., "Self-Feedback DETR for Temporal Action Detection",
ICCV 2023, Sec. 3.2). Cross-attention maps are detached, turned into guidance maps, and
the encoder's and decoder's head-averaged self-attention maps are pulled towards them
with a KL divergence, so that self-attention does not collapse onto a few key elements.

Every map is a row-stochastic attention matrix with a leading batch shape. Padded time
steps are given by ``key_mask`` ``(B, T)`` (1 or True = valid step): they are removed as
columns of the temporal maps and as rows of the temporal means. On fully valid input
every function returns exactly the reference implementation's value.
"""

from __future__ import annotations

import torch

EPS = 1e-7


def _normalize_rows(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / matrix.sum(dim=-1, keepdim=True)


def _zero_padded_columns(matrix: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """``(B, ..., T)`` with ``key_mask`` ``(B, T)`` -> padded columns set to 0."""
    if key_mask is None:
        return matrix
    shape = (key_mask.shape[0],) + (1,) * (matrix.dim() - 2) + (key_mask.shape[1],)
    return matrix * key_mask.reshape(shape).to(matrix.dtype)


def decoder_guidance_map(cross_attention: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Decoder guidance map (Eq. 2): ``G = norm_rows(sqrt(C C^T + eps))``.

    Two queries should attend to each other as much as they attend to the same
    temporal positions.

    Args:
        cross_attention: ``(..., Nq, T)`` head-averaged cross-attention probabilities;
            padded keys already hold zero probability.

    Returns:
        ``(..., Nq, Nq)`` row-stochastic guidance map (detached).
    """
    cross_attention = cross_attention.detach()
    return _normalize_rows(torch.sqrt(cross_attention @ cross_attention.transpose(-1, -2) + eps))


def encoder_guidance_map(
    cross_attentions: torch.Tensor, key_mask: torch.Tensor | None = None, eps: float = EPS
) -> torch.Tensor:
    """Encoder guidance map (Eq. 3): ``G = norm_rows(sqrt(C_bar^T C_bar + eps))``.

    ``C_bar`` is the mean of the decoder layers' cross-attention: two time steps should
    attend to each other as much as the same queries look at both.

    Args:
        cross_attentions: ``(L_d, B, Nq, T)`` head-averaged cross-attention per layer.
        key_mask: ``(B, T)``, 1 = valid step; padded columns get zero guidance.

    Returns:
        ``(B, T, T)`` guidance map (detached); rows of valid steps sum to 1.
    """
    mean_cross = cross_attentions.detach().mean(dim=0)
    similarity = torch.sqrt(mean_cross.transpose(-1, -2) @ mean_cross + eps)
    return _normalize_rows(_zero_padded_columns(similarity, key_mask))


def aggregate_encoder_attention(
    encoder_attentions: torch.Tensor,
    mode: str = "matmul",
    key_mask: torch.Tensor | None = None,
    eps: float = EPS,
) -> torch.Tensor:
    """Aggregate the encoder layers' self-attention into one map (Eq. 4).

    - ``matmul``: ``Â = A_1``, then ``Â = norm_rows(sqrt(Â A_k^T + eps))`` for k = 2..L_e.
    - ``average``: ``Â = mean_k A_k``.
    - ``last``: ``Â = A_{L_e}``.

    Args:
        encoder_attentions: ``(L_e, B, T, T)`` head-averaged self-attention per layer.
        mode: one of ``matmul``, ``average``, ``last``.
        key_mask: ``(B, T)``, 1 = valid step; padded columns get zero weight.

    Returns:
        ``(B, T, T)`` aggregated map; gradients flow into every layer used.
    """
    if mode == "average":
        return encoder_attentions.mean(dim=0)
    if mode == "last":
        return encoder_attentions[-1]
    if mode != "matmul":
        raise ValueError(f"mode must be one of 'matmul', 'average', 'last', got {mode!r}")
    aggregated = encoder_attentions[0]
    for attention in encoder_attentions[1:]:
        similarity = torch.sqrt(aggregated @ attention.transpose(-1, -2) + eps)
        aggregated = _normalize_rows(_zero_padded_columns(similarity, key_mask))
    return aggregated


def self_feedback_kl(
    guidance: torch.Tensor,
    attention: torch.Tensor,
    row_mask: torch.Tensor | None = None,
    eps: float = EPS,
    num_rows: float | None = None,
) -> torch.Tensor:
    """KL(guidance || self-attention) averaged over rows (Eq. 5 and 6).

    Per row: ``sum_j (G_ij + eps) (log(G_ij + eps) - log(S_ij + eps))``, exactly
    ``F.kl_div(log(S + eps), log(G + eps), log_target=True)`` summed over the last axis.

    Args:
        guidance: ``(..., N, M)`` target distribution (no gradient expected).
        attention: ``(..., N, M)`` self-attention probabilities (receives the gradient).
        row_mask: ``(..., N)`` broadcastable to the row shape; 1 = row counted in the mean.
        num_rows: divide the sum over counted rows by this instead of their number (data
            parallel training passes the count averaged over processes).

    Returns:
        Scalar mean KL over the counted rows.
    """
    log_guidance = torch.log(guidance + eps)
    log_attention = torch.log(attention + eps)
    per_row = ((guidance + eps) * (log_guidance - log_attention)).sum(dim=-1)
    if row_mask is not None:
        weights = row_mask.to(per_row.dtype).expand_as(per_row)
        per_row = per_row * weights
        count = weights.sum().clamp(min=1)
    else:
        count = per_row.numel()
    return per_row.sum() / (count if num_rows is None else num_rows)


def encoder_feedback_loss(
    encoder_attentions: torch.Tensor,
    cross_attentions: torch.Tensor,
    aggregation: str = "matmul",
    key_mask: torch.Tensor | None = None,
    num_rows: float | None = None,
) -> torch.Tensor:
    """Encoder self-feedback term ``L_enc`` (Eq. 6).

    Args:
        encoder_attentions: ``(L_e, B, T, T)``.
        cross_attentions: ``(L_d, B, Nq, T)``; detached here.
        aggregation: encoder aggregation mode of :func:`aggregate_encoder_attention`.
        key_mask: ``(B, T)``, 1 = valid step.
        num_rows: see :func:`self_feedback_kl`.

    Returns:
        Scalar KL averaged over the valid rows of ``B x T``.
    """
    guidance = encoder_guidance_map(cross_attentions, key_mask)
    aggregated = aggregate_encoder_attention(encoder_attentions, aggregation, key_mask)
    return self_feedback_kl(guidance, aggregated, key_mask, num_rows=num_rows)


def decoder_feedback_loss(
    decoder_attentions: torch.Tensor, cross_attentions: torch.Tensor, pairing: str = "layer"
) -> torch.Tensor:
    """Decoder self-feedback term ``L_dec`` (Eq. 5).

    - ``layer``: every layer's self-attention ``S_l`` against ``G_dec(C_l)``.
    - ``last``: only the last layer's pair.
    - ``average``: every ``S_l`` against the guidance of the mean cross-attention.

    Args:
        decoder_attentions: ``(L_d, B, Nq, Nq)``.
        cross_attentions: ``(L_d, B, Nq, T)``; detached here.

    Returns:
        Scalar KL averaged over the rows of the layers x batch x queries used.
    """
    if pairing == "layer":
        return self_feedback_kl(decoder_guidance_map(cross_attentions), decoder_attentions)
    if pairing == "last":
        return self_feedback_kl(decoder_guidance_map(cross_attentions[-1]), decoder_attentions[-1])
    if pairing == "average":
        guidance = decoder_guidance_map(cross_attentions.mean(dim=0))
        return self_feedback_kl(guidance.expand_as(decoder_attentions), decoder_attentions)
    raise ValueError(f"pairing must be one of 'layer', 'last', 'average', got {pairing!r}")
