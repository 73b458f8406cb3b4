"""A `Trainer(compute_loss_func=...)` hook that adds self-feedback to a DETR-family loss.

Trainer pops ``labels`` before calling the model when a ``compute_loss_func`` is set, so
the model computes no loss; the hook computes the detection loss from the outputs and
adds ``lambda_enc * L_enc + lambda_dec * L_dec`` from the attention maps the outputs
carry. It works with `SelfDetrForActionDetection` and with transformers' own DETR
detectors that return ``encoder_attentions``/``decoder_attentions``/``cross_attentions``
(run them with ``attn_implementation="eager"`` and ``output_attentions=True``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from ..losses import float32_loss
from ..self_feedback import decoder_feedback_loss, encoder_feedback_loss

DetectionLoss = Callable[[object, Sequence[dict]], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def head_averaged(maps: Sequence[torch.Tensor] | None) -> torch.Tensor | None:
    """Stack per-layer maps into ``(L, B, N, M)``, averaging heads when maps are
    ``(B, h, N, M)`` (transformers' convention) rather than ``(B, N, M)``."""
    if not maps:
        return None
    return torch.stack([m if m.dim() == 3 else m.mean(dim=1) for m in maps]).float()


def valid_keys_from_cross_attention(cross_attentions: torch.Tensor) -> torch.Tensor:
    """``(L, B, Nq, T)`` -> ``(B, T)`` bool: a key is padding when no query of any layer
    gives it any probability (a masked softmax gives exactly 0)."""
    return cross_attentions.sum(dim=(0, 2)) > 0


class SelfFeedbackLoss:
    """Detection loss plus the weighted self-feedback terms, for ``Trainer(compute_loss_func=...)``.

    Args:
        detection_loss: ``(outputs, labels) -> (loss, loss_dict)``; build it with
            :meth:`for_model` for a Self-DETR or a transformers DETR-family model.
        encoder_weight, decoder_weight: ``lambda_enc``, ``lambda_dec`` (5 and 5); 0 turns a term off.
        encoder_aggregation: ``matmul``, ``average`` or ``last`` (Eq. 4).
        decoder_guidance: ``layer``, ``last`` or ``average``.
        gradient_accumulation_steps: Trainer treats a ``compute_loss_func`` loss as already
            scaled for accumulation, so the hook divides by this while gradients are being
            computed (not in evaluation, which runs without gradients).

    The last call's unweighted terms are kept in ``last_loss_dict`` for logging.
    """

    def __init__(
        self,
        detection_loss: DetectionLoss,
        *,
        encoder_weight: float = 5.0,
        decoder_weight: float = 5.0,
        encoder_aggregation: str = "matmul",
        decoder_guidance: str = "layer",
        gradient_accumulation_steps: int = 1,
    ):
        self.detection_loss = detection_loss
        self.encoder_weight = encoder_weight
        self.decoder_weight = decoder_weight
        self.encoder_aggregation = encoder_aggregation
        self.decoder_guidance = decoder_guidance
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.last_loss_dict: dict[str, torch.Tensor] = {}

    @classmethod
    def for_model(cls, model: torch.nn.Module, **kwargs) -> SelfFeedbackLoss:
        """A hook whose detection loss is the model's own.

        - `SelfDetrForActionDetection`: its criterion's detection terms for the final and
          every auxiliary output; weights and feedback settings default to its config.
        - Other transformers detectors (DETR, Conditional/DAB-DETR...): their
          ``loss_function`` on ``logits``/``pred_boxes`` (final layer; auxiliary outputs are
          only produced by those models when they compute a loss themselves).
        """
        from ..modeling_self_detr import SelfDetrForActionDetection

        if isinstance(model, SelfDetrForActionDetection):
            config = model.config
            defaults = {
                "encoder_weight": config.encoder_feedback_weight if config.encoder_feedback else 0.0,
                "decoder_weight": config.decoder_feedback_weight if config.decoder_feedback else 0.0,
                "encoder_aggregation": config.encoder_aggregation,
                "decoder_guidance": config.decoder_guidance,
            }
            return cls(_self_detr_detection_loss(model), **{**defaults, **kwargs})
        return cls(_transformers_detection_loss(model), **kwargs)

    def __call__(self, outputs, labels: Sequence[dict] | None, num_items_in_batch=None) -> torch.Tensor:
        with float32_loss(outputs.logits.device):  # also under Trainer's mixed precision
            return self._loss(outputs, labels)

    def _loss(self, outputs, labels: Sequence[dict] | None) -> torch.Tensor:
        if labels is None:
            raise ValueError("SelfFeedbackLoss needs labels: keep a 'labels' column in the dataset")
        loss, loss_dict = self.detection_loss(outputs, labels)
        loss_dict = dict(loss_dict)
        cross = head_averaged(getattr(outputs, "cross_attentions", None))
        if (self.encoder_weight or self.decoder_weight) and cross is None:
            raise ValueError(
                "the self-feedback loss needs cross_attentions in the outputs: run the model with "
                "output_attentions=True (transformers' DETR models also need attn_implementation='eager')"
            )
        if self.encoder_weight:
            encoder = head_averaged(getattr(outputs, "encoder_attentions", None))
            if encoder is None:
                raise ValueError("encoder feedback needs encoder_attentions in the outputs")
            loss_dict["loss_encoder_feedback"] = encoder_feedback_loss(
                encoder, cross, self.encoder_aggregation, valid_keys_from_cross_attention(cross)
            )
            loss = loss + self.encoder_weight * loss_dict["loss_encoder_feedback"]
        if self.decoder_weight:
            decoder = head_averaged(getattr(outputs, "decoder_attentions", None))
            if decoder is None:
                raise ValueError("decoder feedback needs decoder_attentions in the outputs")
            loss_dict["loss_decoder_feedback"] = decoder_feedback_loss(decoder, cross, self.decoder_guidance)
            loss = loss + self.decoder_weight * loss_dict["loss_decoder_feedback"]
        self.last_loss_dict = {name: value.detach() for name, value in loss_dict.items()}
        if torch.is_grad_enabled():
            loss = loss / self.gradient_accumulation_steps
        return loss


def _self_detr_detection_loss(model) -> DetectionLoss:
    def detection_loss(outputs, labels):
        criterion = model.criterion
        loss_dict = criterion.detection_objective(
            outputs.logits, outputs.pred_segments, labels, outputs.auxiliary_outputs
        )
        return criterion.weighted_sum(loss_dict), loss_dict

    return detection_loss


def _transformers_detection_loss(model) -> DetectionLoss:
    def detection_loss(outputs, labels):
        config = model.config
        if config.auxiliary_loss:
            config = copy.copy(config)
            config.auxiliary_loss = False
        loss, loss_dict, _ = model.loss_function(
            outputs.logits, labels, outputs.logits.device, outputs.pred_boxes, config, None, None
        )
        return loss, loss_dict

    return detection_loss
