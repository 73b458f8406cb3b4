"""The Self-DETR training objective (Eq. 9): set-prediction detection losses for the final
and every auxiliary decoder output, plus the self-feedback terms on the final output."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .matcher import TIOU_EPS, HungarianMatcher
from .segment_ops import paired_segment_iou, segment_cw_to_se
from .self_feedback import decoder_feedback_loss, encoder_feedback_loss


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, num_segments: float, alpha: float, gamma: float
) -> torch.Tensor:
    """Sigmoid focal loss summed over classes and queries, divided by ``num_segments``.

    (The reference's "mean over queries times Nq" is this sum.)

    Args:
        logits: ``(B, Nq, K)``.
        targets: ``(B, Nq, K)`` one-hot, all zeros for unmatched queries.
    """
    probabilities = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probabilities * targets + (1 - probabilities) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * cross_entropy * (1 - p_t) ** gamma).sum() / num_segments


def float32_loss(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device``, so that loss terms computed under a mixed
    precision forward pass (Accelerate, Trainer) stay float32: autocast would run the
    guidance maps' and the encoder aggregation's matrix products in bf16 / fp16."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def average_over_processes(count: float, device: torch.device) -> float:
    """``count`` summed over data-parallel processes, divided by their number (at least 1):
    the normaliser that makes the averaged per-process losses equal the global loss."""
    total = torch.tensor([float(count)], device=device)
    world_size = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
        world_size = torch.distributed.get_world_size()
    return max(total.item() / world_size, 1.0)


def count_segments(labels: Sequence[dict[str, torch.Tensor]], device: torch.device) -> float:
    """Target segments per process, averaged over processes (at least 1): the normaliser."""
    return average_over_processes(sum(len(t["class_labels"]) for t in labels), device)


def check_labels(labels: Sequence[dict[str, torch.Tensor]], batch_size: int, num_labels: int) -> None:
    """Raise ``ValueError`` naming the sample and field of a malformed target."""
    if len(labels) != batch_size:
        raise ValueError(f"labels has {len(labels)} entries for a batch of {batch_size} samples")
    for index, target in enumerate(labels):
        for key in ("class_labels", "segments"):
            if key not in target:
                raise ValueError(f"labels[{index}] has no '{key}' (keys: {sorted(target)})")
        classes, segments = target["class_labels"], target["segments"]
        if segments.dim() != 2 or segments.shape[-1] != 2 or len(segments) != len(classes):
            raise ValueError(
                f"labels[{index}]: segments must be (n, 2) with n = len(class_labels) = "
                f"{len(classes)}; got {tuple(segments.shape)}"
            )
        if len(classes) and (classes.min() < 0 or classes.max() >= num_labels):
            raise ValueError(f"labels[{index}]['class_labels'] holds {classes.tolist()}, outside 0..{num_labels - 1}")
        if not torch.isfinite(segments).all():
            raise ValueError(f"labels[{index}]['segments'] holds NaN or Inf")
        if len(segments) and (segments.min() < 0 or segments.max() > 1):
            raise ValueError(
                f"labels[{index}]['segments'] holds {segments.tolist()}: (center, width) must be normalised "
                "by the window's length, in [0, 1]"
            )


class SelfDetrLoss:
    """Weighted sum of focal, L1 and 1 - tIoU losses for every decoder output plus the
    encoder and decoder self-feedback KL terms (computed once, on the final output).

    Args:
        config: a `SelfDetrConfig`; its costs, weights and feedback switches are used.
    """

    def __init__(self, config):
        self.config = config
        self.matcher = HungarianMatcher(
            config.class_cost, config.segment_cost, config.tiou_cost, config.focal_alpha, config.focal_gamma
        )

    def detection_losses(
        self,
        logits: torch.Tensor,
        pred_segments: torch.Tensor,
        labels: Sequence[dict[str, torch.Tensor]],
        num_segments: float,
    ) -> dict[str, torch.Tensor]:
        """``loss_focal``, ``loss_l1``, ``loss_tiou`` of one decoder output.

        Args:
            logits: ``(B, Nq, K)``; pred_segments: ``(B, Nq, 2)`` (center, width).
        """
        logits, pred_segments = logits.float(), pred_segments.float()
        matches = self.matcher(logits, pred_segments, labels)
        batch_index = torch.cat([torch.full_like(queries, b) for b, (queries, _) in enumerate(matches)])
        query_index = torch.cat([queries for queries, _ in matches])
        matched_classes = torch.cat([t["class_labels"][j] for t, (_, j) in zip(labels, matches)])
        matched_targets = torch.cat([t["segments"][j] for t, (_, j) in zip(labels, matches)]).float()

        one_hot = torch.zeros_like(logits)  # (B, Nq, K)
        one_hot[batch_index, query_index, matched_classes] = 1.0
        matched_predictions = pred_segments[batch_index, query_index]  # (n, 2)
        tiou = paired_segment_iou(segment_cw_to_se(matched_predictions), segment_cw_to_se(matched_targets), TIOU_EPS)
        return {
            "loss_focal": sigmoid_focal_loss(
                logits, one_hot, num_segments, self.config.focal_alpha, self.config.focal_gamma
            ),
            "loss_l1": F.l1_loss(matched_predictions, matched_targets, reduction="sum") / num_segments,
            "loss_tiou": (1 - tiou).sum() / num_segments,
        }

    def feedback_losses(
        self,
        encoder_attentions: Sequence[torch.Tensor] | None,
        decoder_attentions: Sequence[torch.Tensor] | None,
        cross_attentions: Sequence[torch.Tensor] | None,
        attention_mask: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """``loss_encoder_feedback`` and ``loss_decoder_feedback`` where switched on.

        Args:
            encoder_attentions: L_e maps ``(B, T, T)``; decoder_attentions: L_d maps
                ``(B, Nq, Nq)``; cross_attentions: L_d maps ``(B, Nq, T)``, head-averaged.
            attention_mask: ``(B, T)``, 1 = valid step.
        """
        config = self.config
        losses = {}
        if not (config.encoder_feedback or config.decoder_feedback):
            return losses
        if not cross_attentions:
            raise ValueError(
                "the self-feedback loss needs the cross-attention maps; run the model with "
                "output_attentions=True (or switch encoder_feedback/decoder_feedback off)"
            )
        cross = torch.stack(list(cross_attentions)).float()  # (L_d, B, Nq, T)
        if config.encoder_feedback:
            if not encoder_attentions:
                raise ValueError("encoder_feedback needs encoder_attentions in the model outputs")
            encoder = torch.stack(list(encoder_attentions)).float()  # (L_e, B, T, T)
            rows = encoder.shape[1] * encoder.shape[2] if attention_mask is None else attention_mask.sum().item()
            losses["loss_encoder_feedback"] = encoder_feedback_loss(
                encoder, cross, config.encoder_aggregation, attention_mask,
                num_rows=average_over_processes(rows, cross.device),
            )  # fmt: skip
        if config.decoder_feedback:
            if not decoder_attentions:
                raise ValueError("decoder_feedback needs decoder_attentions in the model outputs")
            losses["loss_decoder_feedback"] = decoder_feedback_loss(
                torch.stack(list(decoder_attentions)).float(), cross, config.decoder_guidance
            )
        return losses

    def weight(self, name: str) -> float:
        """Weight of a loss term named as in the loss dict (aux suffixes ``_0``.. allowed)."""
        config = self.config
        weights = {
            "loss_focal": config.focal_loss_weight,
            "loss_l1": config.l1_loss_weight,
            "loss_tiou": config.tiou_loss_weight,
            "loss_encoder_feedback": config.encoder_feedback_weight,
            "loss_decoder_feedback": config.decoder_feedback_weight,
        }
        return weights[re.sub(r"_\d+$", "", name)]

    def detection_objective(
        self,
        logits: torch.Tensor,
        pred_segments: torch.Tensor,
        labels: Sequence[dict[str, torch.Tensor]],
        auxiliary_outputs: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Detection terms of the final output and, with ``auxiliary_loss``, of every
        auxiliary output (suffix ``_i``), all normalised by the same segment count."""
        check_labels(labels, logits.shape[0], logits.shape[-1])
        labels = [{k: v.to(logits.device) for k, v in target.items()} for target in labels]
        num_segments = count_segments(labels, logits.device)
        loss_dict = self.detection_losses(logits, pred_segments, labels, num_segments)
        if self.config.auxiliary_loss:
            for index, auxiliary in enumerate(auxiliary_outputs or ()):
                terms = self.detection_losses(auxiliary["logits"], auxiliary["pred_segments"], labels, num_segments)
                loss_dict.update({f"{name}_{index}": value for name, value in terms.items()})
        return loss_dict

    def weighted_sum(self, loss_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 9: every term times its weight."""
        return sum(self.weight(name) * value for name, value in loss_dict.items())

    def __call__(
        self,
        logits: torch.Tensor,
        pred_segments: torch.Tensor,
        labels: Sequence[dict[str, torch.Tensor]],
        auxiliary_outputs: Sequence[dict[str, torch.Tensor]] | None = None,
        encoder_attentions: Sequence[torch.Tensor] | None = None,
        decoder_attentions: Sequence[torch.Tensor] | None = None,
        cross_attentions: Sequence[torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and every (unweighted) term, in float32 even under autocast.

        Terms of auxiliary output ``i`` carry the suffix ``_i``.

        Returns:
            ``(loss, loss_dict)``: scalar weighted sum and the named terms.
        """
        with float32_loss(logits.device):
            loss_dict = self.detection_objective(logits, pred_segments, labels, auxiliary_outputs)
            loss_dict.update(
                self.feedback_losses(encoder_attentions, decoder_attentions, cross_attentions, attention_mask)
            )
            return self.weighted_sum(loss_dict), loss_dict
