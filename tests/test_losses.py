import torch
import torch.nn.functional as F

from selfdetr_hf import SelfDetrConfig
from selfdetr_hf.losses import SelfDetrLoss, sigmoid_focal_loss


def test_focal_loss_is_the_reference_mean_times_queries():
    logits, targets = torch.randn(2, 5, 3), (torch.rand(2, 5, 3) > 0.8).float()
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = (0.25 * targets + 0.75 * (1 - targets)) * ce * (1 - p_t) ** 2
    reference = loss.mean(1).sum() / 4.0 * 5  # DETR's form: mean over queries, times Nq
    assert torch.allclose(sigmoid_focal_loss(logits, targets, 4.0, 0.25, 2.0), reference)


def test_box_losses_of_perfect_predictions_are_zero():
    config = SelfDetrConfig(id2label={0: "a"})
    targets = torch.tensor([[0.3, 0.2]])
    segments = torch.tensor([[[0.3, 0.2], [0.7, 0.1]]])
    logits = torch.tensor([[[4.0], [-4.0]]])
    terms = SelfDetrLoss(config).detection_losses(
        logits, segments, [{"class_labels": torch.tensor([0]), "segments": targets}], 1.0
    )
    assert terms["loss_l1"].item() == 0 and abs(terms["loss_tiou"].item()) < 1e-6


def test_losses_are_normalised_by_the_number_of_segments():
    config = SelfDetrConfig(id2label={0: "a"})
    segments = torch.tensor([[[0.3, 0.2]]])
    labels = [{"class_labels": torch.tensor([0]), "segments": torch.tensor([[0.4, 0.2]])}]
    criterion = SelfDetrLoss(config)
    one = criterion.detection_losses(torch.zeros(1, 1, 1), segments, labels, 1.0)
    two = criterion.detection_losses(torch.zeros(1, 1, 1), segments, labels, 2.0)
    for name in one:
        assert torch.allclose(one[name], 2 * two[name])


def test_loss_under_mixed_precision_autocast_is_the_float32_loss(tiny_config):
    """Accelerate runs the forward, and so the loss, under autocast: the guidance maps'
    and the aggregation's matrix products must still run in float32."""
    from selfdetr_hf import SelfDetrForActionDetection

    model = SelfDetrForActionDetection(tiny_config).eval()
    labels = [
        {"class_labels": torch.tensor([0, 2]), "segments": torch.tensor([[0.3, 0.1], [0.7, 0.2]])},
        {"class_labels": torch.tensor([1]), "segments": torch.tensor([[0.5, 0.3]])},
    ]
    with torch.no_grad():
        outputs = model(input_features=torch.randn(2, 24, 32), output_attentions=True)
        arguments = {
            "auxiliary_outputs": outputs.auxiliary_outputs,
            "encoder_attentions": outputs.encoder_attentions,
            "decoder_attentions": outputs.decoder_attentions,
            "cross_attentions": outputs.cross_attentions,
        }
        float32, float32_terms = model.criterion(outputs.logits, outputs.pred_segments, labels, **arguments)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed, mixed_terms = model.criterion(outputs.logits, outputs.pred_segments, labels, **arguments)
    for name, value in float32_terms.items():
        assert mixed_terms[name].dtype == torch.float32, name
        torch.testing.assert_close(mixed_terms[name], value, rtol=1e-6, atol=1e-7, msg=name)
    torch.testing.assert_close(mixed, float32, rtol=1e-6, atol=1e-7)


def test_tiou_loss_adds_the_authors_epsilon_to_the_union():
    config = SelfDetrConfig(id2label={0: "a"})
    tiny = torch.tensor([[1e-6, 1e-6]])  # (center, width): an epsilon of 1e-7 is 10% of the union
    labels = [{"class_labels": torch.tensor([0]), "segments": tiny}]
    criterion = SelfDetrLoss(config)
    terms = criterion.detection_losses(torch.zeros(1, 1, 1), tiny[None], labels, 1.0)
    assert abs(terms["loss_tiou"].item() - (1 - 1e-6 / (1e-6 + 1e-7))) < 1e-4
