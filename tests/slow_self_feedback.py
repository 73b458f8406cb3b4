"""Self-feedback (spec section 2) written out with explicit loops, sharing no code with
the library: the expected values of `test_paper_equations.py` and `test_paper_model.py`."""

import math

import torch

PAPER_EPS = 1e-7  # spec section 2


def slow_norm_rows(rows: list[list[float]]) -> list[list[float]]:
    return [[value / sum(row) for value in row] for row in rows]


def slow_sqrt_similarity(left: torch.Tensor, right: torch.Tensor) -> list[list[float]]:
    """``sqrt(sum_k left[i, k] * right[j, k] + eps)`` for every (i, j): ``sqrt(L R^T + eps)``."""
    return [
        [math.sqrt(sum(float(left[i, k]) * float(right[j, k]) for k in range(left.shape[1])) + PAPER_EPS)
         for j in range(right.shape[0])]
        for i in range(left.shape[0])
    ]  # fmt: skip


def slow_decoder_guidance(cross: torch.Tensor) -> torch.Tensor:
    """Eq. 2 for one ``(Nq, T)`` map: ``norm_rows(sqrt(C C^T + eps))``."""
    return torch.tensor(slow_norm_rows(slow_sqrt_similarity(cross, cross)), dtype=torch.float64)


def slow_mean_over_layers(maps: torch.Tensor) -> torch.Tensor:
    """``(L, N, M)`` -> the element-wise mean over the L layers, one element at a time."""
    layers, rows, columns = maps.shape
    return torch.tensor(
        [[sum(float(maps[l, i, j]) for l in range(layers)) / layers for j in range(columns)] for i in range(rows)],
        dtype=torch.float64,
    )


def slow_encoder_guidance(cross: torch.Tensor, valid: list[bool]) -> torch.Tensor:
    """Eq. 3 for one sample, ``cross`` ``(L_d, Nq, T)``: ``norm_rows(sqrt(C_bar^T C_bar + eps))``
    with padded columns removed."""
    mean_cross = slow_mean_over_layers(cross)  # (Nq, T)
    similarity = slow_sqrt_similarity(mean_cross.T, mean_cross.T)  # (T, T)
    masked = [[value if valid[j] else 0.0 for j, value in enumerate(row)] for row in similarity]
    return torch.tensor(slow_norm_rows(masked), dtype=torch.float64)


def slow_matmul_aggregation(encoder: torch.Tensor, valid: list[bool]) -> torch.Tensor:
    """Eq. 4 (``matmul``) for one sample, ``encoder`` ``(L_e, T, T)``:
    ``Â = A_1``, then ``Â = norm_rows(sqrt(Â A_k^T + eps))`` with padded columns removed."""
    aggregated = encoder[0]
    for layer in range(1, encoder.shape[0]):
        similarity = slow_sqrt_similarity(aggregated, encoder[layer])
        masked = [[value if valid[j] else 0.0 for j, value in enumerate(row)] for row in similarity]
        aggregated = torch.tensor(slow_norm_rows(masked), dtype=torch.float64)
    return aggregated


def slow_kl_row(guidance_row: torch.Tensor, attention_row: torch.Tensor) -> float:
    """Eq. 5/6 for one row: ``sum_j (G_j + eps) (log(G_j + eps) - log(S_j + eps))``."""
    return sum(
        (float(g) + PAPER_EPS) * (math.log(float(g) + PAPER_EPS) - math.log(float(s) + PAPER_EPS))
        for g, s in zip(guidance_row, attention_row)
    )
