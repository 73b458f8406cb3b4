import math

import torch
import torch.nn.functional as F

from selfdetr_hf.self_feedback import (
    EPS,
    aggregate_encoder_attention,
    decoder_feedback_loss,
    decoder_guidance_map,
    encoder_feedback_loss,
    encoder_guidance_map,
    self_feedback_kl,
)


def random_attention(*shape):
    return torch.rand(*shape).softmax(dim=-1)


def test_decoder_guidance_rows_sum_to_one():
    guidance = decoder_guidance_map(random_attention(2, 5, 7))
    assert guidance.shape == (2, 5, 5)
    assert torch.allclose(guidance.sum(-1), torch.ones(2, 5))


def test_encoder_guidance_rows_sum_to_one():
    guidance = encoder_guidance_map(random_attention(3, 2, 5, 7))
    assert guidance.shape == (2, 7, 7)
    assert torch.allclose(guidance.sum(-1), torch.ones(2, 7))


def test_guidance_is_detached_from_cross_attention():
    cross = random_attention(3, 2, 5, 7).requires_grad_()
    assert not decoder_guidance_map(cross).requires_grad
    assert not encoder_guidance_map(cross).requires_grad


def test_kl_matches_torch_kl_div_with_log_target():
    guidance, attention = random_attention(4, 6), random_attention(4, 6)
    reference = F.kl_div((attention + EPS).log(), (guidance + EPS).log(), log_target=True, reduction="none")
    assert torch.allclose(self_feedback_kl(guidance, attention), reference.sum(-1).mean())


def test_uniform_cross_attention_against_identity_self_attention_gives_analytic_kl():
    queries, steps = 4, 9
    cross = torch.full((1, 1, queries, steps), 1 / steps)  # one layer, uniform over time
    self_attention = torch.eye(queries)[None, None]  # each query attends only to itself
    guidance_value = 1 / queries + EPS  # guidance is uniform: every query pair alike
    per_row = guidance_value * (math.log(guidance_value) - math.log(1 + EPS)) + (queries - 1) * guidance_value * (
        math.log(guidance_value) - math.log(EPS)
    )
    loss = decoder_feedback_loss(self_attention, cross, "layer")
    assert math.isclose(loss.item(), per_row, rel_tol=1e-5)


def test_kl_of_a_map_with_its_own_guidance_is_zero():
    uniform = torch.full((2, 3, 3), 1 / 3)
    assert self_feedback_kl(uniform, uniform).abs().item() < 1e-7


def test_matmul_aggregation_of_one_layer_is_that_layer():
    attention = random_attention(1, 2, 5, 5)
    assert torch.equal(aggregate_encoder_attention(attention, "matmul"), attention[0])


def test_aggregation_modes():
    attention = random_attention(3, 2, 5, 5)
    assert torch.allclose(aggregate_encoder_attention(attention, "average"), attention.mean(0))
    assert torch.equal(aggregate_encoder_attention(attention, "last"), attention[-1])
    manual = attention[0]
    for layer in attention[1:]:
        manual = torch.sqrt(manual @ layer.transpose(-1, -2) + EPS)
        manual = manual / manual.sum(-1, keepdim=True)
    assert torch.allclose(aggregate_encoder_attention(attention, "matmul"), manual)


def test_decoder_pairings():
    self_maps, cross = random_attention(3, 2, 4, 4), random_attention(3, 2, 4, 6)
    last = self_feedback_kl(decoder_guidance_map(cross[-1]), self_maps[-1])
    assert torch.allclose(decoder_feedback_loss(self_maps, cross, "last"), last)
    average = self_feedback_kl(decoder_guidance_map(cross.mean(0)).expand(3, -1, -1, -1), self_maps)
    assert torch.allclose(decoder_feedback_loss(self_maps, cross, "average"), average)


def pad_maps(encoder_maps, cross_maps, pad):
    """Embed maps of T valid steps into T + pad steps: padded keys get zero probability,
    padded query rows hold arbitrary distributions over the valid keys."""
    layers, batch, steps, _ = encoder_maps.shape
    padded_encoder = torch.zeros(layers, batch, steps + pad, steps + pad)
    padded_encoder[..., :steps, :steps] = encoder_maps
    padded_encoder[..., steps:, :steps] = random_attention(layers, batch, pad, steps)
    padded_cross = torch.zeros(*cross_maps.shape[:-1], steps + pad)
    padded_cross[..., :steps] = cross_maps
    return padded_encoder, padded_cross


def test_encoder_feedback_ignores_padded_keys_and_rows():
    steps, pad = 6, 3
    encoder_maps, cross_maps = random_attention(2, 1, steps, steps), random_attention(3, 1, 4, steps)
    padded_encoder, padded_cross = pad_maps(encoder_maps, cross_maps, pad)
    mask = torch.tensor([[1] * steps + [0] * pad])
    for mode in ("matmul", "average", "last"):
        expected = encoder_feedback_loss(encoder_maps, cross_maps, mode)
        assert torch.allclose(encoder_feedback_loss(padded_encoder, padded_cross, mode, mask), expected, atol=1e-6)


def test_masked_encoder_guidance_has_zero_padded_columns_and_stochastic_valid_rows():
    cross = torch.zeros(2, 1, 3, 5)
    cross[..., :3] = random_attention(2, 1, 3, 3)
    guidance = encoder_guidance_map(cross, torch.tensor([[1, 1, 1, 0, 0]]))
    assert torch.all(guidance[0, :, 3:] == 0)
    assert torch.allclose(guidance[0, :3].sum(-1), torch.ones(3))


def test_all_valid_mask_gives_the_unmasked_value():
    encoder_maps, cross_maps = random_attention(2, 2, 5, 5), random_attention(3, 2, 4, 5)
    mask = torch.ones(2, 5)
    assert torch.equal(
        encoder_feedback_loss(encoder_maps, cross_maps, "matmul", mask), encoder_feedback_loss(encoder_maps, cross_maps)
    )
