"""Pure functions on temporal segments.

A segment is either ``(center, width)`` (the model's normalised parameterisation) or
``(start, end)``. Every function accepts any leading batch shape ``(..., 2)``.
"""

from __future__ import annotations

import torch


def segment_cw_to_se(segments: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` (center, width) -> ``(..., 2)`` (start, end)."""
    center, width = segments.unbind(-1)
    return torch.stack((center - 0.5 * width, center + 0.5 * width), dim=-1)


def segment_se_to_cw(segments: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` (start, end) -> ``(..., 2)`` (center, width)."""
    start, end = segments.unbind(-1)
    return torch.stack(((start + end) / 2, end - start), dim=-1)


def segment_length(segments: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` (start, end) -> ``(...)`` length, 0 for inverted segments."""
    return (segments[..., 1] - segments[..., 0]).clamp(min=0)


def _overlap_ratio(inter: torch.Tensor, union: torch.Tensor, eps: float) -> torch.Tensor:
    """``inter / (union + eps)``; with ``eps`` 0, 0 where the union is empty."""
    if eps > 0:
        return inter / (union + eps)
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def segment_iou(segments1: torch.Tensor, segments2: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Pairwise temporal IoU (plain, not generalised): ``inter / (union + eps)``.

    Args:
        segments1: ``(..., N, 2)`` (start, end).
        segments2: ``(..., M, 2)`` (start, end), same leading shape.
        eps: added to the union (the training objective uses the authors' 1e-7).

    Returns:
        ``(..., N, M)`` tIoU; with ``eps`` 0, 0 where the union is empty.
    """
    inter = (
        torch.minimum(segments1[..., :, None, 1], segments2[..., None, :, 1])
        - torch.maximum(segments1[..., :, None, 0], segments2[..., None, :, 0])
    ).clamp(min=0)
    union = segment_length(segments1)[..., :, None] + segment_length(segments2)[..., None, :] - inter
    return _overlap_ratio(inter, union, eps)


def paired_segment_iou(segments1: torch.Tensor, segments2: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Element-wise temporal IoU of ``(..., 2)`` (start, end) pairs -> ``(...)``,
    ``inter / (union + eps)`` as in `segment_iou`."""
    inter = (
        torch.minimum(segments1[..., 1], segments2[..., 1]) - torch.maximum(segments1[..., 0], segments2[..., 0])
    ).clamp(min=0)
    union = segment_length(segments1) + segment_length(segments2) - inter
    return _overlap_ratio(inter, union, eps)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Logit of ``x`` clamped to ``[eps, 1 - eps]``, the inverse of the reference update."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
