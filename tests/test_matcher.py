import torch

from selfdetr_hf.matcher import HungarianMatcher, focal_matching_cost


def test_focal_cost_formula():
    p = torch.tensor([[0.2, 0.9]])
    alpha, gamma = 0.25, 2.0
    expected = alpha * (1 - p) ** gamma * -(p + 1e-8).log() - (1 - alpha) * p**gamma * -(1 - p + 1e-8).log()
    assert torch.allclose(focal_matching_cost(p, alpha, gamma), expected)


def test_matching_recovers_a_permutation_of_perfect_predictions():
    targets = torch.tensor([[0.2, 0.1], [0.5, 0.3], [0.8, 0.05]])
    classes = torch.tensor([1, 0, 1])
    order = torch.tensor([3, 0, 4])  # query index holding each target
    segments = torch.rand(1, 5, 2) * 0.2 + 0.4
    segments[0, order] = targets
    logits = torch.full((1, 5, 2), -5.0)
    logits[0, order, classes] = 5.0
    labels = [{"class_labels": classes, "segments": targets}]
    ((queries, matched),) = HungarianMatcher()(logits, segments, labels)
    assert dict(zip(matched.tolist(), queries.tolist())) == {0: 3, 1: 0, 2: 4}


def test_matching_handles_empty_targets_per_sample():
    labels = [
        {"class_labels": torch.zeros(0, dtype=torch.long), "segments": torch.zeros(0, 2)},
        {"class_labels": torch.tensor([0]), "segments": torch.tensor([[0.5, 0.2]])},
    ]
    matches = HungarianMatcher()(torch.randn(2, 4, 1), torch.rand(2, 4, 2), labels)
    assert [len(q) for q, _ in matches] == [0, 1]
