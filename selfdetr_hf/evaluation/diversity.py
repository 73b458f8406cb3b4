"""Diversity of attention maps (spec section 7; paper Eq. 10, after Dong et al. 2021).

An attention map whose rows are all alike has collapsed to rank 1: every query reads the
same few keys ("temporal collapse"). The diversity measures the distance to the nearest
such map, relative to the map's size, in the mixed norm
``||M||_{1,inf} = sqrt(||M||_1 * ||M||_inf)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def norm_1_inf(matrix: torch.Tensor) -> torch.Tensor:
    """``||M||_{1,inf} = sqrt(||M||_1 * ||M||_inf)``.

    Args:
        matrix: ``(..., N, M)``.

    Returns:
        ``(...)``: square root of (largest absolute column sum) times (largest absolute
        row sum).
    """
    magnitude = matrix.abs()
    return torch.sqrt(magnitude.sum(-2).amax(-1) * magnitude.sum(-1).amax(-1))


def attention_diversity(attention: torch.Tensor, *, transposed: bool = False) -> torch.Tensor:
    """Diversity of an attention map (Eq. 10).

    ``diversity(A) = min_x ||A - 1 x^T||_{1,inf} / ||A||_{1,inf}``, the minimum taken over
    the rows x of A: 0 for a rank-1 (collapsed) map, ``sqrt(2 (N - 1))`` for the N x N
    identity. With ``transposed=True`` the candidates are the rows of ``A^T`` (the
    columns of A) and the residual is ``A^T - 1 x^T``, as in the authors' analysis code.

    Args:
        attention: ``(..., N, M)`` attention probabilities (rows are queries). Memory
            grows as ``N * N * M`` per map.
        transposed: measure ``A^T`` instead of ``A``.

    Returns:
        ``(...)`` diversity; NaN for an all-zero map.
    """
    maps = attention.transpose(-1, -2) if transposed else attention
    residuals = maps.unsqueeze(-3) - maps.unsqueeze(-2)  # (..., N, N, M): [c] = A - 1 a_c^T
    return norm_1_inf(residuals).amin(-1) / norm_1_inf(maps)


@dataclass(frozen=True)
class LayerDiversity:
    """Diversity of one kind of attention map, per layer, over a set of videos.

    Attributes:
        mean: ``(L,)`` mean over videos of each video's mean diversity over its windows.
        std: ``(L,)`` standard deviation over videos (population, ddof 0).
        num_videos: how many videos were averaged.
    """

    mean: np.ndarray
    std: np.ndarray
    num_videos: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "num_videos": self.num_videos}


def summarize_layer_diversity(per_video: Sequence[Sequence[float]] | np.ndarray) -> LayerDiversity:
    """``(V, L)`` diversity of each video at each layer -> mean and std over videos."""
    values = np.asarray(per_video, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"expected a (videos, layers) array with at least one video, got shape {values.shape}")
    return LayerDiversity(mean=values.mean(0), std=values.std(0), num_videos=len(values))
