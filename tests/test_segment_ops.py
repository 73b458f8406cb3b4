import torch

from selfdetr_hf.segment_ops import (
    inverse_sigmoid,
    paired_segment_iou,
    segment_cw_to_se,
    segment_iou,
    segment_se_to_cw,
)


def test_center_width_round_trip():
    segments = torch.tensor([[0.5, 0.2], [0.1, 0.05]])
    assert torch.allclose(segment_cw_to_se(segments), torch.tensor([[0.4, 0.6], [0.075, 0.125]]))
    assert torch.allclose(segment_se_to_cw(segment_cw_to_se(segments)), segments)


def test_segment_iou_hand_computed():
    a = torch.tensor([[0.0, 2.0], [1.0, 3.0]])
    b = torch.tensor([[1.0, 2.0], [5.0, 6.0], [0.0, 2.0]])
    expected = torch.tensor([[0.5, 0.0, 1.0], [0.5, 0.0, 1 / 3]])
    assert torch.allclose(segment_iou(a, b), expected)


def test_segment_iou_is_zero_for_empty_union():
    point = torch.tensor([[1.0, 1.0]])
    assert segment_iou(point, point).item() == 0.0


def test_paired_iou_is_the_diagonal_of_pairwise():
    a, b = torch.rand(6, 2).sort(-1).values, torch.rand(6, 2).sort(-1).values
    assert torch.allclose(paired_segment_iou(a, b), segment_iou(a, b).diagonal())


def test_inverse_sigmoid_inverts_sigmoid_inside_the_clamp():
    x = torch.linspace(-5, 5, 11)
    assert torch.allclose(inverse_sigmoid(x.sigmoid()), x, atol=1e-4)


def test_tiou_epsilon_is_added_to_the_union():
    segments = torch.tensor([[0.0, 1e-6], [0.5, 0.5 + 1e-6]])  # an epsilon of 1e-7 is 10% of these unions
    expected = torch.tensor([1e-6 / (1e-6 + 1e-7), 0.0])
    torch.testing.assert_close(segment_iou(segments, segments[:1], eps=1e-7)[:, 0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(paired_segment_iou(segments, segments[:1], eps=1e-7), expected, atol=1e-6, rtol=0)
    assert segment_iou(segments, segments[:1])[0, 0].item() == 1.0
