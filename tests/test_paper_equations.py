"""The paper's equations, stated on their own.

Every expected value here is written out from the spec (SELF-DETR-SPEC.md, sections 2-4)
as a slow computation with explicit loops over rows, queries and layers, or computed by
hand; nothing is taken from the library or from a recorded output. The reference fixture
proves equality with the authors' code; these tests prove the method without it.
Inputs are float64 so that the paper's epsilon (1e-7) is visible where it matters.
"""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from slow_self_feedback import (
    PAPER_EPS,
    slow_decoder_guidance,
    slow_encoder_guidance,
    slow_kl_row,
    slow_matmul_aggregation,
    slow_mean_over_layers,
)

from selfdetr_hf import SelfDetrConfig, SelfDetrProcessor
from selfdetr_hf.data import (
    VideoAnnotation,
    build_dataset,
    load_annotations,
    pad_window,
    position_to_seconds,
    resize_features,
    seconds_to_position,
    sliding_windows,
    window_targets,
)
from selfdetr_hf.losses import SelfDetrLoss, sigmoid_focal_loss
from selfdetr_hf.matcher import HungarianMatcher, focal_matching_cost
from selfdetr_hf.nms import nms, soft_nms
from selfdetr_hf.segment_ops import (
    inverse_sigmoid,
    paired_segment_iou,
    segment_cw_to_se,
    segment_iou,
    segment_se_to_cw,
)
from selfdetr_hf.self_feedback import (
    aggregate_encoder_attention,
    decoder_feedback_loss,
    decoder_guidance_map,
    encoder_feedback_loss,
    encoder_guidance_map,
    self_feedback_kl,
)


def sparse_attention(*shape: int, generator: torch.Generator) -> torch.Tensor:
    """Row-stochastic float64 maps in which about half the entries are exactly 0, so that
    some rows share no key and the epsilon under the square root decides their similarity."""
    weights = torch.rand(*shape, generator=generator, dtype=torch.float64)
    weights = weights * (torch.rand(*shape, generator=generator) > 0.5)
    weights[..., 0] += (weights.sum(-1) == 0).double()  # no empty row
    return weights / weights.sum(-1, keepdim=True)


def with_padded_keys(maps: torch.Tensor, pad: int) -> torch.Tensor:
    """``(..., N, M)`` -> ``(..., N, M + pad)``: padded keys hold zero probability."""
    return torch.cat((maps, maps.new_zeros(*maps.shape[:-1], pad)), dim=-1)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(2023)


# --------------------------------------------------------------- self-feedback (Eq. 2-6)


def test_decoder_guidance_map_is_eq2_written_out(generator):
    cross = sparse_attention(2, 4, 6, generator=generator)  # (B, Nq, T)
    guidance = decoder_guidance_map(cross)
    for sample in range(2):
        torch.testing.assert_close(guidance[sample], slow_decoder_guidance(cross[sample]), rtol=1e-9, atol=1e-12)


def test_decoder_guidance_of_disjoint_queries_is_set_by_the_papers_epsilon():
    cross = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # queries share no key
    # C C^T = I, so row 0 is [sqrt(1 + eps), sqrt(eps)] before normalisation
    expected = math.sqrt(PAPER_EPS) / (math.sqrt(1 + PAPER_EPS) + math.sqrt(PAPER_EPS))
    assert decoder_guidance_map(cross)[0, 1].item() == pytest.approx(expected, rel=1e-6)


def test_encoder_guidance_map_is_eq3_written_out_with_padded_columns_removed(generator):
    cross = sparse_attention(3, 2, 4, 6, generator=generator)  # (L_d, B, Nq, T)
    key_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    cross[:, 1] = with_padded_keys(sparse_attention(3, 4, 4, generator=generator), 2)
    guidance = encoder_guidance_map(cross, key_mask)
    for sample in range(2):
        valid = key_mask[sample].bool().tolist()
        rows = [t for t in range(6) if valid[t]]
        expected = slow_encoder_guidance(cross[:, sample], valid)
        torch.testing.assert_close(guidance[sample, rows], expected[rows], rtol=1e-9, atol=1e-12)


def test_matmul_aggregation_is_eq4_written_out(generator):
    encoder = sparse_attention(3, 2, 5, 5, generator=generator)  # (L_e, B, T, T)
    key_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    aggregated = aggregate_encoder_attention(encoder, key_mask=key_mask)  # matmul is the default (THUMOS)
    for sample in range(2):
        valid = key_mask[sample].bool().tolist()
        expected = slow_matmul_aggregation(encoder[:, sample], valid)
        torch.testing.assert_close(aggregated[sample], expected, rtol=1e-9, atol=1e-12)


def test_average_and_last_aggregations_are_eq4_written_out(generator):
    encoder = sparse_attention(3, 1, 4, 4, generator=generator)
    torch.testing.assert_close(aggregate_encoder_attention(encoder, "average")[0], slow_mean_over_layers(encoder[:, 0]))
    assert torch.equal(aggregate_encoder_attention(encoder, "last")[0], encoder[2, 0])


def test_kl_is_eq5_written_out_and_averaged_over_counted_rows(generator):
    guidance, attention = sparse_attention(2, 3, 5, generator=generator), sparse_attention(2, 3, 5, generator=generator)
    row_mask = torch.tensor([[1, 0, 1], [1, 1, 0]])
    counted = [(b, i) for b in range(2) for i in range(3) if row_mask[b, i]]
    expected = sum(slow_kl_row(guidance[b, i], attention[b, i]) for b, i in counted) / len(counted)
    assert self_feedback_kl(guidance, attention, row_mask).item() == pytest.approx(expected, rel=1e-9)
    everything = sum(slow_kl_row(guidance[b, i], attention[b, i]) for b in range(2) for i in range(3)) / 6
    assert self_feedback_kl(guidance, attention).item() == pytest.approx(everything, rel=1e-9)
    one_row = torch.tensor([[0, 0, 1], [0, 0, 0]])
    single = slow_kl_row(guidance[0, 2], attention[0, 2])
    assert self_feedback_kl(guidance, attention, one_row).item() == pytest.approx(single, rel=1e-9)


def test_decoder_feedback_pairs_every_layer_with_its_own_guidance(generator):
    self_maps = sparse_attention(3, 2, 4, 4, generator=generator)  # (L_d, B, Nq, Nq)
    cross = sparse_attention(3, 2, 4, 6, generator=generator)  # (L_d, B, Nq, T)
    rows = [
        slow_kl_row(slow_decoder_guidance(cross[layer, b])[i], self_maps[layer, b, i])
        for layer in range(3) for b in range(2) for i in range(4)
    ]  # fmt: skip
    assert decoder_feedback_loss(self_maps, cross, "layer").item() == pytest.approx(sum(rows) / len(rows), rel=1e-9)


def test_decoder_feedback_last_and_average_pairings_written_out(generator):
    self_maps = sparse_attention(3, 1, 4, 4, generator=generator)
    cross = sparse_attention(3, 1, 4, 6, generator=generator)
    last = [slow_kl_row(slow_decoder_guidance(cross[2, 0])[i], self_maps[2, 0, i]) for i in range(4)]
    assert decoder_feedback_loss(self_maps, cross, "last").item() == pytest.approx(sum(last) / 4, rel=1e-9)
    mean_guidance = slow_decoder_guidance(slow_mean_over_layers(cross[:, 0]))
    average = [slow_kl_row(mean_guidance[i], self_maps[layer, 0, i]) for layer in range(3) for i in range(4)]
    assert decoder_feedback_loss(self_maps, cross, "average").item() == pytest.approx(sum(average) / 12, rel=1e-9)


def test_unknown_aggregation_or_pairing_is_refused_with_the_choices(generator):
    maps = sparse_attention(2, 1, 3, 3, generator=generator)
    with pytest.raises(ValueError, match=r"^mode must be one of 'matmul', 'average', 'last', got 'sum'$"):
        aggregate_encoder_attention(maps, "sum")
    with pytest.raises(ValueError, match=r"^pairing must be one of 'layer', 'last', 'average', got 'first'$"):
        decoder_feedback_loss(maps, maps, "first")


def test_encoder_feedback_is_eq6_over_valid_rows(generator):
    encoder = sparse_attention(2, 2, 5, 5, generator=generator)  # (L_e, B, T, T)
    cross = sparse_attention(3, 2, 4, 5, generator=generator)  # (L_d, B, Nq, T)
    key_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    encoder[:, 1] = with_padded_keys(sparse_attention(2, 5, 3, generator=generator), 2)
    cross[:, 1] = with_padded_keys(sparse_attention(3, 4, 3, generator=generator), 2)
    rows = []
    for b in range(2):
        valid = key_mask[b].bool().tolist()
        guidance = slow_encoder_guidance(cross[:, b], valid)
        aggregated = slow_matmul_aggregation(encoder[:, b], valid)
        rows += [slow_kl_row(guidance[t], aggregated[t]) for t in range(5) if valid[t]]
    loss = encoder_feedback_loss(encoder, cross, "matmul", key_mask)
    assert loss.item() == pytest.approx(sum(rows) / len(rows), rel=1e-9)
    # data-parallel training divides the row sum by the row count averaged over processes
    shared = encoder_feedback_loss(encoder, cross, "matmul", key_mask, num_rows=2.5)
    assert shared.item() == pytest.approx(sum(rows) / 2.5, rel=1e-9)


# ------------------------------------------------------------------- segments and tIoU


def test_tiou_by_hand():
    first = torch.tensor([[0.0, 2.0], [1.0, 2.0]])
    second = torch.tensor([[1.0, 4.0], [5.0, 6.0], [0.5, 1.5]])
    expected = torch.tensor([[1 / 4, 0.0, 1 / 2], [1 / 3, 0.0, 0.5 / 1.5]])
    torch.testing.assert_close(segment_iou(first, second), expected)
    torch.testing.assert_close(paired_segment_iou(first, second[[0, 2]]), torch.tensor([1 / 4, 0.5 / 1.5]))


def test_tiou_of_empty_segments_is_zero():
    empty = torch.tensor([[1.0, 1.0]])
    assert segment_iou(empty, empty).item() == 0 and paired_segment_iou(empty, empty).item() == 0


def test_inverse_sigmoid_clamps_to_the_unit_interval_by_hand():
    # the reference: x clamped to [0, 1], then log(max(x, 1e-5) / max(1 - x, 1e-5))
    values = inverse_sigmoid(torch.tensor([-0.5, 1.5, 0.25], dtype=torch.float64))
    expected = torch.tensor([math.log(1e-5), math.log(1 / 1e-5), math.log(0.25 / 0.75)], dtype=torch.float64)
    torch.testing.assert_close(values, expected)


def test_center_width_to_start_end_by_hand():
    segments = torch.tensor([[0.5, 0.2], [0.1, 0.4], [0.3, 0.0]])
    expected = torch.tensor([[0.4, 0.6], [-0.1, 0.3], [0.3, 0.3]])
    torch.testing.assert_close(segment_cw_to_se(segments), expected)
    torch.testing.assert_close(segment_cw_to_se(segments.expand(2, 3, 2)), expected.expand(2, 3, 2))  # any batch shape
    torch.testing.assert_close(segment_se_to_cw(expected.expand(2, 3, 2)), segments.expand(2, 3, 2))


# --------------------------------------------------------------- matching and losses


def slow_interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Plain tIoU of two (center, width) segments."""
    a_start, a_end, b_start, b_end = a[0] - a[1] / 2, a[0] + a[1] / 2, b[0] - b[1] / 2, b[0] + b[1] / 2
    intersection = max(0.0, min(a_end, b_end) - max(a_start, b_start))
    union = (a_end - a_start) + (b_end - b_start) - intersection
    return intersection / union if union > 0 else 0.0


def slow_match_cost(logit: float, prediction, target) -> float:
    """Spec 3: ``6 * focal_cost + 5 * L1 - 2 * tIoU`` of one (query, target) pair."""
    p = 1 / (1 + math.exp(-logit))
    focal_cost = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8) - 0.75 * p**2 * -math.log(1 - p + 1e-8)
    l1 = abs(prediction[0] - target[0]) + abs(prediction[1] - target[1])
    return 6 * focal_cost + 5 * l1 - 2 * slow_interval_iou(prediction, target)


def slow_best_assignment(logits: torch.Tensor, segments: torch.Tensor, target) -> dict[int, int]:
    """Exhaustive search over every injective target -> query assignment: ``{target: query}``."""
    classes, boxes = target["class_labels"].tolist(), target["segments"].tolist()
    best, best_cost = {}, math.inf
    for queries in itertools.permutations(range(len(segments)), len(classes)):
        cost = sum(
            slow_match_cost(float(logits[q, c]), segments[q].tolist(), box)
            for q, c, box in zip(queries, classes, boxes)
        )
        if cost < best_cost:
            best, best_cost = dict(enumerate(queries)), cost
    return best


def slow_sigmoid_focal(logit: float, target: float) -> float:
    """Spec 3: ``-alpha_t (1 - p_t)^gamma log(p_t)`` with alpha 0.25, gamma 2."""
    p = 1 / (1 + math.exp(-logit))
    p_t = p if target else 1 - p
    alpha_t = 0.25 if target else 0.75
    return -alpha_t * (1 - p_t) ** 2 * math.log(p_t)


def slow_detection_terms(logits: torch.Tensor, segments: torch.Tensor, labels) -> dict[str, float]:
    """Focal, L1 and 1 - tIoU of one decoder output, each divided by the number of segments."""
    num_segments = sum(len(t["class_labels"]) for t in labels)
    focal = l1 = tiou = 0.0
    for b, target in enumerate(labels):
        assignment = slow_best_assignment(logits[b], segments[b], target)
        positives = {(assignment[j], int(c)) for j, c in enumerate(target["class_labels"])}
        for q in range(logits.shape[1]):
            for k in range(logits.shape[2]):
                focal += slow_sigmoid_focal(float(logits[b, q, k]), (q, k) in positives)
        for j, query in assignment.items():
            prediction, box = segments[b, query].tolist(), target["segments"][j].tolist()
            l1 += abs(prediction[0] - box[0]) + abs(prediction[1] - box[1])
            tiou += 1 - slow_interval_iou(prediction, box)
    return {"loss_focal": focal / num_segments, "loss_l1": l1 / num_segments, "loss_tiou": tiou / num_segments}


def random_output(generator: torch.Generator, batch: int = 2, queries: int = 5, classes: int = 3):
    logits = torch.randn(batch, queries, classes, generator=generator) * 2
    centers = torch.rand(batch, queries, 1, generator=generator) * 0.8 + 0.1
    widths = torch.rand(batch, queries, 1, generator=generator) * 0.3 + 0.05
    return logits, torch.cat((centers, widths), dim=-1)


def random_labels(generator: torch.Generator, sizes=(2, 1), classes: int = 3):
    labels = []
    for size in sizes:
        centers = torch.rand(size, 1, generator=generator) * 0.8 + 0.1
        widths = torch.rand(size, 1, generator=generator) * 0.3 + 0.05
        labels.append(
            {
                "class_labels": torch.randint(classes, (size,), generator=generator),
                "segments": torch.cat((centers, widths), -1),
            }
        )
    return labels


def test_matcher_finds_the_assignment_of_least_spec_cost(generator):
    for _ in range(6):
        logits, segments = random_output(generator, queries=4)
        labels = random_labels(generator, sizes=(3, 1))
        matches = HungarianMatcher()(logits, segments, labels)
        for b, (queries, targets) in enumerate(matches):
            found = dict(zip(targets.tolist(), queries.tolist()))
            assert found == slow_best_assignment(logits[b], segments[b], labels[b])


def test_matcher_defaults_are_the_spec_costs():
    matcher = HungarianMatcher()
    assert (matcher.class_cost, matcher.segment_cost, matcher.tiou_cost) == (6.0, 5.0, 2.0)
    assert (matcher.focal_alpha, matcher.focal_gamma) == (0.25, 2.0)


def test_focal_matching_cost_at_certain_probabilities_by_hand():
    # spec: 1e-8 inside both logarithms keeps the cost finite at p = 0 and p = 1
    cost = focal_matching_cost(torch.tensor([[0.0, 1.0]]), 0.25, 2.0)
    torch.testing.assert_close(cost, torch.tensor([[0.25 * -math.log(1e-8), -0.75 * -math.log(1e-8)]]))


def test_matcher_prefers_the_higher_tiou_at_equal_l1_and_class():
    target = {"class_labels": torch.tensor([0]), "segments": torch.tensor([[0.5, 0.2]])}
    # both queries are 0.1 away in L1; the first overlaps the target by 2/3, the second by 1/3
    segments = torch.tensor([[[0.6, 0.2], [0.5, 0.3]]])
    ((queries, _),) = HungarianMatcher()(torch.zeros(1, 2, 1), segments, [target])
    assert queries.tolist() == [1]


def test_sigmoid_focal_loss_by_hand():
    config = SelfDetrConfig(id2label={0: "a", 1: "b"}, encoder_feedback=False, decoder_feedback=False)
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # p = 1/2 for class a, 3/4 for class b
    segments = torch.tensor([[[0.5, 0.2]]])
    labels = [{"class_labels": torch.tensor([1]), "segments": torch.tensor([[0.5, 0.2]])}]
    _, terms = SelfDetrLoss(config)(logits, segments, labels)
    negative_a = 0.75 * 0.5**2 * math.log(2.0)  # target 0, p = 1/2: (1 - alpha) p^2 (-log(1 - p))
    positive_b = 0.25 * 0.25**2 * math.log(4 / 3)  # target 1, p = 3/4: alpha (1 - p)^2 (-log p)
    assert terms["loss_focal"].item() == pytest.approx(negative_a + positive_b, rel=1e-6)
    assert terms["loss_l1"].item() == 0 and terms["loss_tiou"].item() == pytest.approx(0.0, abs=1e-6)


def test_focal_loss_with_an_odd_gamma_by_hand():
    # gamma 1 tells (1 - p_t) from its negative, which gamma 2 squares away
    logits, targets = torch.tensor([[[0.0, math.log(3.0)]]]), torch.tensor([[[0.0, 1.0]]])
    expected = 0.75 * 0.5 * math.log(2.0) + 0.25 * 0.25 * math.log(4 / 3)
    assert sigmoid_focal_loss(logits, targets, 1.0, 0.25, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_the_loss_matches_with_the_configured_focal_parameters():
    matcher = SelfDetrLoss(SelfDetrConfig(id2label={0: "a"}, focal_alpha=0.5, focal_gamma=1.0)).matcher
    assert (matcher.focal_alpha, matcher.focal_gamma) == (0.5, 1.0)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], r"^labels has 0 entries for a batch of 1 samples$"),
        ([{"segments": torch.zeros(1, 2)}], r"^labels\[0\] has no 'class_labels' \(keys: \['segments'\]\)$"),
        (
            [{"class_labels": torch.tensor([0]), "segments": torch.zeros(1, 3)}],
            r"^labels\[0\]: segments must be \(n, 2\) with n = len\(class_labels\) = 1; got \(1, 3\)$",
        ),
        (
            [{"class_labels": torch.tensor([2]), "segments": torch.zeros(1, 2)}],
            r"^labels\[0\]\['class_labels'\] holds \[2\], outside 0..1$",
        ),
        (
            [{"class_labels": torch.tensor([0]), "segments": torch.tensor([[0.5, math.nan]])}],
            r"^labels\[0\]\['segments'\] holds NaN or Inf$",
        ),
    ],
)
def test_malformed_targets_are_refused_naming_the_sample_and_field(labels, message):
    criterion = SelfDetrLoss(SelfDetrConfig(id2label={0: "a", 1: "b"}, encoder_feedback=False, decoder_feedback=False))
    with pytest.raises(ValueError, match=message):
        criterion(torch.zeros(1, 3, 2), torch.full((1, 3, 2), 0.5), labels)


def test_detection_terms_and_their_normaliser_written_out(generator):
    config = SelfDetrConfig(id2label={0: "a", 1: "b", 2: "c"}, encoder_feedback=False, decoder_feedback=False)
    logits, segments = random_output(generator)
    labels = random_labels(generator, sizes=(2, 1))  # 3 segments in 2 samples
    auxiliary_logits, auxiliary_segments = random_output(generator)
    auxiliary = [{"logits": auxiliary_logits, "pred_segments": auxiliary_segments}]
    loss, terms = SelfDetrLoss(config)(logits, segments, labels, auxiliary_outputs=auxiliary)
    expected = slow_detection_terms(logits, segments, labels)
    expected |= {
        f"{name}_0": value for name, value in slow_detection_terms(auxiliary_logits, auxiliary_segments, labels).items()
    }
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-5, abs=1e-6), name
    weights = {"loss_focal": 2, "loss_l1": 5, "loss_tiou": 2}  # Eq. 9
    total = sum(weights[name.removesuffix("_0")] * value for name, value in expected.items())
    assert loss.item() == pytest.approx(total, rel=1e-5)


def test_feedback_terms_enter_the_objective_with_weight_five(generator):
    config = SelfDetrConfig(id2label={0: "a"})
    logits, segments = random_output(generator, batch=1, queries=4, classes=1)
    labels = random_labels(generator, sizes=(1,), classes=1)
    encoder = sparse_attention(2, 1, 6, 6, generator=generator).float()
    decoder = sparse_attention(2, 1, 4, 4, generator=generator).float()
    cross = sparse_attention(2, 1, 4, 6, generator=generator).float()
    loss, terms = SelfDetrLoss(config)(
        logits, segments, labels, encoder_attentions=list(encoder), decoder_attentions=list(decoder),
        cross_attentions=list(cross), attention_mask=torch.ones(1, 6),
    )  # fmt: skip
    detection = 2 * terms["loss_focal"] + 5 * terms["loss_l1"] + 2 * terms["loss_tiou"]
    feedback = 5 * terms["loss_encoder_feedback"] + 5 * terms["loss_decoder_feedback"]
    assert loss.item() == pytest.approx((detection + feedback).item(), rel=1e-6)
    assert terms["loss_decoder_feedback"].item() == pytest.approx(
        decoder_feedback_loss(decoder.double(), cross.double()).item(), rel=1e-4
    )


def test_config_decoder_guidance_and_aggregation_reach_the_feedback_terms(generator):
    config = SelfDetrConfig(id2label={0: "a"}, decoder_guidance="last", encoder_aggregation="average")
    encoder = sparse_attention(2, 1, 6, 6, generator=generator)
    decoder = sparse_attention(2, 1, 4, 4, generator=generator)
    cross = sparse_attention(2, 1, 4, 6, generator=generator)
    terms = SelfDetrLoss(config).feedback_losses(list(encoder), list(decoder), list(cross), None)
    last = [slow_kl_row(slow_decoder_guidance(cross[1, 0])[i], decoder[1, 0, i]) for i in range(4)]
    assert terms["loss_decoder_feedback"].item() == pytest.approx(sum(last) / 4, rel=1e-5)
    guidance, average = slow_encoder_guidance(cross[:, 0], [True] * 6), slow_mean_over_layers(encoder[:, 0])
    rows = [slow_kl_row(guidance[t], average[t]) for t in range(6)]
    assert terms["loss_encoder_feedback"].item() == pytest.approx(sum(rows) / 6, rel=1e-5)


def test_feedback_without_its_maps_is_refused_naming_them(generator):
    maps = list(sparse_attention(2, 1, 4, 4, generator=generator))
    criterion = SelfDetrLoss(SelfDetrConfig(id2label={0: "a"}))
    with pytest.raises(ValueError, match=r"needs the cross-attention maps; run the model with output_attentions=True"):
        criterion.feedback_losses(maps, maps, None, None)
    with pytest.raises(ValueError, match=r"^encoder_feedback needs encoder_attentions in the model outputs$"):
        criterion.feedback_losses(None, maps, maps, None)
    with pytest.raises(ValueError, match=r"^decoder_feedback needs decoder_attentions in the model outputs$"):
        criterion.feedback_losses(maps, None, maps, None)


# ----------------------------------------------------------------- NMS at its threshold


def test_nms_keeps_a_segment_exactly_at_the_threshold():
    segments = torch.tensor([[0.0, 2.0], [0.0, 1.0], [0.0, 1.1]])  # tIoU with the first: 1/2 and 0.55
    kept = nms(segments, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert kept.tolist() == pytest.approx([0.9, 0.8, 0.0])


def test_nms_at_the_thumos_preset_threshold_keeps_exact_overlap():
    threshold = SelfDetrProcessor.thumos14().nms_iou_threshold
    segments = torch.tensor([[0.0, 5.0], [0.0, 2.0], [0.0, 2.5]])  # tIoU 0.4 and 0.5
    kept = nms(segments, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=threshold)
    assert kept.tolist() == pytest.approx([0.9, 0.8, 0.0])


def test_soft_nms_decays_only_above_its_threshold_by_the_gaussian_rule():
    # tIoU 1/2 and 0.8 with the first; 0.3 between the second and the third
    segments = torch.tensor([[0.0, 2.0], [0.0, 1.0], [0.4, 2.0]])
    kept = soft_nms(segments, torch.tensor([0.9, 0.8, 0.7]), sigma=0.5, iou_threshold=0.5)
    assert kept.tolist() == pytest.approx([0.9, 0.8, 0.7 * math.exp(-(0.8**2) / 0.5)], rel=1e-6)


def test_soft_nms_per_class_top_k_and_min_score_boundary():
    segments = torch.tensor([[0.0, 2.0], [0.0, 1.9], [5.0, 6.0], [8.0, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.25, 0.0005])
    # other class: no decay; exactly min_score: kept; below it from the start: dropped
    kept = soft_nms(segments, scores, sigma=0.5, min_score=0.25, labels=torch.tensor([0, 1, 0, 0]))
    assert kept.tolist() == pytest.approx([0.9, 0.8, 0.25, 0.0])
    assert soft_nms(segments, scores, sigma=0.5, max_segments=1).tolist() == pytest.approx([0.9, 0, 0, 0])
    assert soft_nms(segments[:1], torch.tensor([0.1]), sigma=0.5, min_score=0.25).tolist() == [0.0]


def test_per_class_nms_on_several_groups_at_once():
    segments = torch.tensor([[0.0, 2.0], [0.0, 1.9], [0.1, 2.0]]).expand(2, 3, 2)
    scores = torch.tensor([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]])
    labels = torch.tensor([[0, 0, 1], [0, 1, 1]])
    kept = nms(segments, scores, iou_threshold=0.5, labels=labels)
    assert kept.tolist() == [pytest.approx([0.9, 0.0, 0.7]), pytest.approx([0.9, 0.8, 0.0])]
    # a group that runs out of segments keeps its result while the others go on
    disjoint = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]).expand(2, 3, 2)
    kept = nms(disjoint, torch.tensor([[0.9, 0.8, 0.7], [0.9, 0.0, 0.0]]), iou_threshold=0.5)
    assert kept.tolist() == [pytest.approx([0.9, 0.8, 0.7]), pytest.approx([0.9, 0.0, 0.0])]


# ------------------------------------------------------- windows and annotation parsing


def test_training_windows_keep_a_segment_exactly_75_percent_inside_with_the_preset_defaults():
    processor = SelfDetrProcessor.thumos14()
    features = {name: np.zeros((256, 2), dtype=np.float32) for name in ("exact", "less")}
    annotations = {
        # window [0, 128) at 1 step per second: [104, 136] has 24 of 32 seconds inside (0.75),
        # [105, 137] has 23 of 32 (0.72)
        "exact": VideoAnnotation("train", 256.0, None, np.array([[10.0, 20.0], [104.0, 136.0]]), ["a", "a"]),
        "less": VideoAnnotation("train", 256.0, None, np.array([[10.0, 20.0], [105.0, 137.0]]), ["a", "a"]),
    }
    dataset = build_dataset(annotations, features, processor, feature_fps=1.0)
    first = {row["video_id"]: row for row in dataset if row["window_offset"] == 0}
    assert first["exact"]["time_offset"] == 0 and first["exact"]["window_length"] == 128
    np.testing.assert_allclose(first["exact"]["segments"], [[15 / 128, 10 / 128], [116 / 128, 24 / 128]], rtol=1e-6)
    np.testing.assert_allclose(first["less"]["segments"], [[15 / 128, 10 / 128]], rtol=1e-6)


def test_seconds_and_feature_positions_by_hand():
    assert seconds_to_position(10.0, 7.5) == 75.0  # no offset by default
    assert seconds_to_position(10.0, 7.5, 0.5) == 71.25
    assert position_to_seconds(75.0, 7.5) == 10.0
    assert position_to_seconds(71.25, 7.5, 0.5) == 10.0


def test_resize_is_centre_aligned_linear_interpolation_by_hand():
    features = np.array([[0.0], [1.0]], dtype=np.float32)
    # output step i reads position (i + 0.5) * 2 / 4 - 0.5, clamped to [0, 1]
    resized = resize_features(features, 4)
    assert resized.dtype == np.float32
    np.testing.assert_allclose(resized[:, 0], [0.0, 0.25, 0.75, 1.0])


def test_last_window_is_zero_padded_with_a_mask_by_hand():
    padded, mask = pad_window(np.array([[1.5, 2.0], [3.0, 4.0]]), 4)
    assert (padded.dtype, mask.dtype) == (np.float32, np.int64)
    np.testing.assert_array_equal(padded, [[1.5, 2.0], [3.0, 4.0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(mask, [1, 1, 0, 0])


def test_window_targets_coverage_boundary():
    # 24/32 inside (kept), 23/32 inside, and a segment shorter than a step half inside
    segments = np.array([[104.0, 136.0], [105.0, 137.0], [127.6, 128.4]])
    kept, labels = window_targets(segments, np.array([0, 1, 2]), offset=0, length=128, min_coverage=0.75)
    assert labels.tolist() == [0]
    np.testing.assert_allclose(kept, [[116 / 128, 24 / 128]], rtol=1e-6)


def test_sliding_windows_by_hand_and_refusals():
    assert sliding_windows(3, 1, 1).tolist() == [[0, 1], [1, 1], [2, 1]]
    assert sliding_windows(300, 128, 96).tolist() == [[0, 128], [96, 128], [192, 108]]
    for arguments in ((0, 128, 32), (100, 0, 32), (100, 128, 0)):
        with pytest.raises(ValueError, match="must be positive"):
            sliding_windows(*arguments)


def test_string_segments_with_decimals_are_parsed_exactly(tmp_path):
    path = tmp_path / "annotations.json"
    database = {"v": {"subset": "test", "duration": 30.0, "annotations": [
        {"label": "a", "segment": ["3.25", "6.75"]}, {"label": "a", "segment": ["12.4", "17.93"]},
    ]}}  # fmt: skip
    path.write_text(json.dumps({"database": database}))
    assert load_annotations(path)["v"].segments.tolist() == [[3.25, 6.75], [12.4, 17.93]]
