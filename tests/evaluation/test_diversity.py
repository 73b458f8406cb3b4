"""Attention diversity (spec section 7, Eq. 10)."""

import math

import numpy as np
import pytest
import torch

from selfdetr_hf.evaluation import attention_diversity, norm_1_inf, summarize_layer_diversity


def test_norm_1_inf_hand_computed():
    matrix = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    # largest absolute column sum 4, largest absolute row sum 3
    assert norm_1_inf(matrix).item() == pytest.approx(math.sqrt(12))


def test_rank_one_map_has_zero_diversity():
    row = torch.softmax(torch.randn(16), -1)
    assert attention_diversity(row.expand(10, 16)).item() == 0.0


@pytest.mark.parametrize("size", [2, 4, 7])
def test_identity_has_diversity_sqrt_2_n_minus_1(size):
    # A - 1 e_c^T: every other row holds +1 and -1 (row sum 2), column c sums to n - 1.
    assert attention_diversity(torch.eye(size)).item() == pytest.approx(math.sqrt(2 * (size - 1)))


def test_hand_computed_two_by_two():
    attention = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    # Candidate row 1: residual [[0, 0], [0.5, -0.5]] -> sqrt(0.5 * 1); candidate row 2 the same.
    # ||A||: columns 1.5 and 0.5, rows 1 and 1 -> sqrt(1.5).
    assert attention_diversity(attention).item() == pytest.approx(math.sqrt(0.5) / math.sqrt(1.5))


def test_identical_columns_collapse_only_in_the_transposed_variant():
    weights = torch.tensor([[0.1], [0.3], [0.6]])
    attention = weights.expand(3, 5)  # every column the same: rows differ
    assert attention_diversity(attention).item() > 0.1
    assert attention_diversity(attention, transposed=True).item() == 0.0


def test_diversity_is_invariant_to_scale():
    attention = torch.softmax(torch.randn(6, 9), -1)
    assert attention_diversity(3.0 * attention).item() == pytest.approx(attention_diversity(attention).item())


def test_leading_shape_is_kept():
    attention = torch.softmax(torch.randn(2, 3, 5, 7), -1)
    diversity = attention_diversity(attention)
    assert diversity.shape == (2, 3)
    assert diversity[1, 2].item() == pytest.approx(attention_diversity(attention[1, 2]).item())


def test_summary_is_mean_and_population_std_over_videos():
    summary = summarize_layer_diversity([[0.2, 0.4], [0.4, 0.8]])
    np.testing.assert_allclose(summary.mean, [0.3, 0.6])
    np.testing.assert_allclose(summary.std, [0.1, 0.2])
    assert summary.num_videos == 2


def test_summary_of_no_video_is_an_error():
    with pytest.raises(ValueError, match="at least one video"):
        summarize_layer_diversity(np.zeros((0, 3)))
