"""The Trainer loss hook adds self-feedback to Self-DETR and to transformers' DAB-DETR."""

import pytest
import torch
from transformers import DabDetrConfig, DabDetrForObjectDetection, ResNetConfig, Trainer, TrainingArguments

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.training import SelfFeedbackLoss


def action_labels():
    return [
        {"class_labels": torch.tensor([0, 2]), "segments": torch.tensor([[0.3, 0.1], [0.7, 0.25]])},
        {"class_labels": torch.tensor([1]), "segments": torch.tensor([[0.5, 0.4]])},
    ]


def tiny_dab_detr():
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], out_features=["stage2"])
    config = DabDetrConfig(
        backbone_config=backbone,
        use_timm_backbone=False,
        hidden_size=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=5,
        num_labels=3,
        auxiliary_loss=False,
        output_attentions=True,
    )
    model = DabDetrForObjectDetection(config)
    model.set_attn_implementation("eager")
    return model


def box_labels():
    return [
        {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
        {"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.1, 0.2], [0.7, 0.6, 0.3, 0.3]])},
    ]


def test_hook_reproduces_the_self_detr_loss(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(2, 16, 32)
    expected = model(input_features=features, labels=action_labels())
    hook = SelfFeedbackLoss.for_model(model)
    loss = hook(model(input_features=features, output_attentions=True), action_labels())
    torch.testing.assert_close(loss, expected.loss)
    assert set(hook.last_loss_dict) == set(expected.loss_dict)


def test_hook_respects_padding_like_the_model(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(2, 20, 32)
    mask = torch.ones(2, 20)
    mask[0, 12:] = 0
    expected = model(input_features=features, attention_mask=mask, labels=action_labels())
    outputs = model(input_features=features, attention_mask=mask, output_attentions=True)
    torch.testing.assert_close(SelfFeedbackLoss.for_model(model)(outputs, action_labels()), expected.loss)


def test_hook_scales_for_gradient_accumulation_only_when_training(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    outputs = model(input_features=torch.randn(2, 16, 32), output_attentions=True)
    full = SelfFeedbackLoss.for_model(model)(outputs, action_labels())
    accumulating = SelfFeedbackLoss.for_model(model, gradient_accumulation_steps=4)
    torch.testing.assert_close(accumulating(outputs, action_labels()), full / 4)
    with torch.no_grad():
        torch.testing.assert_close(accumulating(outputs, action_labels()), full.detach())


def test_hook_without_maps_asks_for_output_attentions(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    with pytest.raises(ValueError, match="output_attentions=True"):
        SelfFeedbackLoss.for_model(model)(model(input_features=torch.randn(2, 8, 32)), action_labels())


def test_hook_adds_weighted_feedback_to_dab_detr_loss():
    torch.manual_seed(0)
    model = tiny_dab_detr().eval()
    pixels = torch.randn(2, 3, 64, 64)
    detection_only = model(pixel_values=pixels, labels=box_labels()).loss
    hook = SelfFeedbackLoss.for_model(model)
    loss = hook(model(pixel_values=pixels), box_labels())
    feedback = 5 * hook.last_loss_dict["loss_encoder_feedback"] + 5 * hook.last_loss_dict["loss_decoder_feedback"]
    torch.testing.assert_close(loss, detection_only + feedback)
    assert hook.last_loss_dict["loss_encoder_feedback"] > 0 and hook.last_loss_dict["loss_decoder_feedback"] > 0


def test_dab_detr_feedback_gradient_reaches_self_attention():
    torch.manual_seed(0)
    model = tiny_dab_detr().eval()
    hook = SelfFeedbackLoss(lambda outputs, labels: (outputs.logits.sum() * 0, {}))  # feedback terms only
    hook(model(pixel_values=torch.randn(2, 3, 64, 64)), box_labels()).backward()
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any("encoder.layers.1.self_attn.q_proj" in name for name in gradients)
    assert not any("decoder.layers.1.cross_attn" in name for name in gradients)


class _BoxDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return {"pixel_values": torch.randn(3, 64, 64, generator=generator), "labels": box_labels()[index % 2]}


def _collate(rows):
    return {"pixel_values": torch.stack([r["pixel_values"] for r in rows]), "labels": [r["labels"] for r in rows]}


def test_trainer_trains_dab_detr_with_the_hook(tmp_path):
    torch.manual_seed(0)
    model = tiny_dab_detr()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    arguments = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=2,
        learning_rate=1e-3,
        remove_unused_columns=False,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
    )
    hook = SelfFeedbackLoss.for_model(model, gradient_accumulation_steps=arguments.gradient_accumulation_steps)
    trainer = Trainer(
        model=model, args=arguments, train_dataset=_BoxDataset(), data_collator=_collate, compute_loss_func=hook
    )
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert "loss_decoder_feedback" in hook.last_loss_dict
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any("self_attn" in name for name in changed)


def test_hook_loss_under_mixed_precision_autocast_is_the_float32_loss(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    hook = SelfFeedbackLoss.for_model(model)
    with torch.no_grad():
        outputs = model(input_features=torch.randn(2, 16, 32), output_attentions=True)
        float32 = hook(outputs, action_labels())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = hook(outputs, action_labels())
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, float32, rtol=1e-6, atol=1e-7)
