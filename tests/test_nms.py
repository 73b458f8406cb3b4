"""NMS and Soft-NMS: agreement with the sequential textbook algorithm, grouping, classes."""

import math

import pytest
import torch

from selfdetr_hf.nms import nms, soft_nms


def random_segments(count, generator):
    starts = torch.rand(count, generator=generator) * 50
    return torch.stack((starts, starts + 0.5 + torch.rand(count, generator=generator) * 10), dim=1)


def interval_iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def sequential_nms(segments, scores, threshold):
    """The textbook loop: visit by descending score, keep what no kept segment overlaps."""
    kept = [0.0] * len(scores)
    chosen = []
    for index in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if all(interval_iou(segments[index], segments[other]) <= threshold for other in chosen):
            chosen.append(index)
            kept[index] = scores[index]
    return kept


def sequential_soft_nms(segments, scores, sigma, threshold, min_score):
    """The textbook Gaussian Soft-NMS loop on Python lists."""
    current = list(scores)
    remaining = {i for i, s in enumerate(current) if s >= min_score and s > 0}
    kept = [0.0] * len(scores)
    while remaining:
        best = max(sorted(remaining), key=lambda i: current[i])
        kept[best] = current[best]
        remaining.discard(best)
        for other in list(remaining):
            overlap = interval_iou(segments[best], segments[other])
            if overlap > threshold:
                current[other] *= math.exp(-(overlap**2) / sigma)
            if current[other] < min_score:
                remaining.discard(other)
    return kept


@pytest.mark.parametrize("threshold", [0.1, 0.4, 0.7])
def test_nms_equals_the_sequential_algorithm(threshold):
    generator = torch.Generator().manual_seed(0)
    segments, scores = random_segments(60, generator), torch.rand(60, generator=generator)
    expected = sequential_nms(segments.tolist(), scores.tolist(), threshold)
    torch.testing.assert_close(nms(segments, scores, threshold), torch.tensor(expected))


@pytest.mark.parametrize(("sigma", "threshold", "min_score"), [(0.5, 0.0, 0.0), (0.75, 0.1, 0.001), (0.3, 0.3, 0.05)])
def test_soft_nms_equals_the_sequential_algorithm(sigma, threshold, min_score):
    generator = torch.Generator().manual_seed(1)
    segments, scores = random_segments(60, generator).double(), torch.rand(60, generator=generator).double()
    expected = sequential_soft_nms(segments.tolist(), scores.tolist(), sigma, threshold, min_score)
    result = soft_nms(segments, scores, sigma=sigma, iou_threshold=threshold, min_score=min_score)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_groups_are_independent():
    generator = torch.Generator().manual_seed(2)
    segments, scores = random_segments(80, generator).reshape(4, 20, 2), torch.rand(4, 20, generator=generator)
    together = soft_nms(segments, scores, sigma=0.5, max_segments=10)
    alone = torch.stack([soft_nms(segments[g], scores[g], sigma=0.5, max_segments=10) for g in range(4)])
    torch.testing.assert_close(together, alone)


def test_segments_of_different_classes_do_not_suppress_each_other():
    segments = torch.tensor([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept = nms(segments, scores, 0.4, labels=torch.tensor([0, 1, 0]))
    assert kept.tolist() == pytest.approx([0.9, 0.8, 0.0])


def test_max_segments_keeps_the_best_ones():
    segments = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    kept = nms(segments, torch.tensor([0.2, 0.9, 0.5, 0.7]), 0.4, max_segments=2)
    assert kept.tolist() == pytest.approx([0.0, 0.9, 0.0, 0.7])


def test_padding_scores_are_never_kept():
    segments = torch.tensor([[0.0, 1.0], [5.0, 6.0]])
    assert soft_nms(segments, torch.tensor([0.0, 0.3]), sigma=0.5).tolist() == pytest.approx([0.0, 0.3])


def test_soft_nms_decays_an_overlapping_segment_instead_of_dropping_it():
    segments = torch.tensor([[0.0, 10.0], [1.0, 10.0]])
    decayed = soft_nms(segments, torch.tensor([0.9, 0.8]), sigma=0.5)
    assert decayed[1].item() == pytest.approx(0.8 * math.exp(-(0.9**2) / 0.5))
