"""Non-maximum suppression of temporal segments, plain PyTorch (no compiled extension).

Both functions run the greedy algorithm on many independent groups at once (videos, for
instance): each of at most ``max_segments`` iterations picks the best remaining segment of
every group and rescales the scores of the rest of its group by a function of their tIoU
with it, all groups in one tensor operation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .segment_ops import paired_segment_iou


def nms(
    segments: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    *,
    labels: torch.Tensor | None = None,
    max_segments: int | None = None,
) -> torch.Tensor:
    """Greedy NMS: keep the best segment, drop those overlapping it by more than ``iou_threshold``.

    Args:
        segments: ``(..., N, 2)`` (start, end); leading dimensions are independent groups.
        scores: ``(..., N)``; entries ``<= 0`` are absent (padding).
        iou_threshold: a segment whose tIoU with a kept one exceeds this is suppressed.
        labels: ``(..., N)`` class ids; when given, only segments of the same class suppress
            each other (per-class NMS).
        max_segments: stop after keeping this many per group (the best ones); None keeps all.

    Returns:
        ``(..., N)`` the input score of every kept segment, 0 for suppressed ones.
    """
    return _greedy_rescoring(
        segments, scores, lambda iou: (iou <= iou_threshold).to(scores.dtype), 0.0, labels, max_segments
    )


def soft_nms(
    segments: torch.Tensor,
    scores: torch.Tensor,
    *,
    sigma: float,
    iou_threshold: float = 0.0,
    min_score: float = 0.0,
    labels: torch.Tensor | None = None,
    max_segments: int | None = None,
) -> torch.Tensor:
    """Gaussian Soft-NMS (Bodla et al., 2017): decay instead of dropping.

    After each pick, a remaining segment with tIoU ``o > iou_threshold`` to the picked one
    has its score multiplied by ``exp(-o**2 / sigma)``; segments whose score falls below
    ``min_score`` are dropped. With ``iou_threshold = 0`` this is the textbook Gaussian rule.

    Args:
        segments: ``(..., N, 2)`` (start, end); leading dimensions are independent groups.
        scores: ``(..., N)``; entries ``<= 0`` are absent (padding).
        sigma: Gaussian width.
        iou_threshold: overlaps at or below it are not decayed.
        min_score: drop segments whose (decayed) score is below it.
        labels: ``(..., N)`` class ids; when given, only the same class decays (per class).
        max_segments: stop after picking this many per group; None picks all.

    Returns:
        ``(..., N)`` the decayed score of every picked segment at the time it was picked,
        0 for dropped ones.
    """

    def decay(iou: torch.Tensor) -> torch.Tensor:
        return torch.where(iou > iou_threshold, torch.exp(-(iou**2) / sigma), 1.0)

    return _greedy_rescoring(segments, scores, decay, min_score, labels, max_segments)


def _greedy_rescoring(
    segments: torch.Tensor,
    scores: torch.Tensor,
    decay: Callable[[torch.Tensor], torch.Tensor],
    min_score: float,
    labels: torch.Tensor | None,
    max_segments: int | None,
) -> torch.Tensor:
    """The greedy loop shared by `nms` and `soft_nms`; ``decay`` maps tIoU to a score factor."""
    batch_shape, num_segments = scores.shape[:-1], scores.shape[-1]
    segments = segments.reshape(-1, num_segments, 2)  # (G, N, 2)
    current = scores.reshape(-1, num_segments).clone()  # (G, N)
    labels = labels.reshape(-1, num_segments) if labels is not None else None
    kept = torch.zeros_like(current)
    remaining = (current > 0) & (current >= min_score)
    groups = torch.arange(current.shape[0], device=scores.device)
    iterations = num_segments if max_segments is None else min(max_segments, num_segments)
    for _ in range(iterations):
        if not remaining.any():
            break
        best_score, best = torch.where(remaining, current, -1.0).max(dim=-1)  # (G,)
        active = best_score > 0
        kept[groups[active], best[active]] = best_score[active]
        remaining[groups, best] = False
        iou = paired_segment_iou(segments[groups, best][:, None, :], segments)  # (G, N)
        if labels is not None:
            iou = torch.where(labels == labels[groups, best][:, None], iou, 0.0)
        current = current * decay(iou)
        remaining &= (current > 0) & (current >= min_score)
    return kept.reshape(*batch_shape, num_segments)


__all__ = ["nms", "soft_nms"]
