"""Hungarian matching of predicted segments to ground-truth segments."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from .segment_ops import segment_cw_to_se, segment_iou

TIOU_EPS = 1e-7  # added to the union of the tIoU in matching and in the loss, as in the authors' code


def focal_matching_cost(probabilities: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Focal classification cost of every (prediction, class) pair.

    ``alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p))`` with 1e-8 inside both
    logarithms, where ``p`` is the sigmoid probability.

    Args:
        probabilities: ``(N, K)`` sigmoid probabilities.

    Returns:
        ``(N, K)`` cost; low where the class is likely.
    """
    positive = alpha * (1 - probabilities) ** gamma * -(probabilities + 1e-8).log()
    negative = (1 - alpha) * probabilities**gamma * -(1 - probabilities + 1e-8).log()
    return positive - negative


class HungarianMatcher:
    """One-to-one assignment minimising ``w_cls * focal + w_l1 * L1(c, w) - w_tiou * tIoU``
    (tIoU with ``TIOU_EPS`` added to the union).

    Args:
        class_cost, segment_cost, tiou_cost: weights of the three cost terms (6, 5, 2).
        focal_alpha, focal_gamma: parameters of the focal cost (0.25, 2).
    """

    def __init__(
        self,
        class_cost: float = 6.0,
        segment_cost: float = 5.0,
        tiou_cost: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        self.class_cost = class_cost
        self.segment_cost = segment_cost
        self.tiou_cost = tiou_cost
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def __call__(
        self, logits: torch.Tensor, pred_segments: torch.Tensor, labels: list[dict[str, torch.Tensor]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match each sample's queries to its targets.

        Args:
            logits: ``(B, Nq, K)`` classification logits.
            pred_segments: ``(B, Nq, 2)`` normalised (center, width).
            labels: B dicts with ``class_labels`` ``(n_b,)`` and ``segments`` ``(n_b, 2)``.

        Returns:
            B pairs ``(query_indices, target_indices)``, each ``(min(Nq, n_b),)`` int64.
        """
        batch_size, num_queries = logits.shape[:2]
        probabilities = logits.flatten(0, 1).float().sigmoid()  # (B * Nq, K)
        predicted = pred_segments.flatten(0, 1).float()  # (B * Nq, 2)
        target_classes = torch.cat([target["class_labels"] for target in labels])  # (sum n_b,)
        target_segments = torch.cat([target["segments"] for target in labels]).float()

        class_cost = focal_matching_cost(probabilities, self.focal_alpha, self.focal_gamma)
        cost = (
            self.class_cost * class_cost[:, target_classes]
            + self.segment_cost * torch.cdist(predicted, target_segments, p=1)
            - self.tiou_cost * segment_iou(segment_cw_to_se(predicted), segment_cw_to_se(target_segments), TIOU_EPS)
        )  # (B * Nq, sum n_b)
        cost = cost.view(batch_size, num_queries, -1).cpu()

        sizes = [len(target["segments"]) for target in labels]
        matches = []
        for sample, sample_cost in enumerate(cost.split(sizes, dim=-1)):
            queries, targets = linear_sum_assignment(sample_cost[sample].numpy())
            matches.append((torch.as_tensor(queries, dtype=torch.int64), torch.as_tensor(targets, dtype=torch.int64)))
        return matches
