import copy
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrModel, SelfDetrProcessor
from selfdetr_hf.convert import convert_original_tensor
from selfdetr_hf.modeling_self_detr import SelfDetrDecoderSelfAttention, inverted_dropout


def make_labels():
    return [
        {"class_labels": torch.tensor([0, 2]), "segments": torch.tensor([[0.3, 0.1], [0.7, 0.25]])},
        {"class_labels": torch.tensor([1]), "segments": torch.tensor([[0.5, 0.4]])},
    ]


def test_default_config_has_the_authors_parameter_count():
    model = SelfDetrForActionDetection(SelfDetrConfig())
    assert sum(p.numel() for p in model.parameters()) == 8_100_973


def test_parameters_map_onto_the_reference_state_dict(shared_data):
    """One-to-one, except the authors' packed encoder ``in_proj``, split into q, k, v."""
    reference = {}
    for line in (shared_data / "reference_state_dict_thumos14.txt").read_text().splitlines():
        name, shape = re.match(r"(\S+) \((.*)\)", line).groups()
        reference[name] = tuple(int(size) for size in shape.split(",") if size.strip())
    ours = {
        name: tuple(tensor.shape) for name, tensor in SelfDetrForActionDetection(SelfDetrConfig()).state_dict().items()
    }
    mapped = {}
    for name, shape in reference.items():
        for converted, tensor in convert_original_tensor(name, torch.empty(shape)):
            mapped.setdefault(converted, set()).add(tuple(tensor.shape))
    assert set(mapped) == set(ours)
    assert all(shapes == {ours[name]} for name, shapes in mapped.items())


def test_output_shapes(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    outputs = model(input_features=torch.randn(2, 20, 32), output_attentions=True)
    assert outputs.logits.shape == (2, 8, 3)
    assert outputs.pred_segments.shape == (2, 8, 2)
    assert ((outputs.pred_segments > 0) & (outputs.pred_segments < 1)).all()
    assert len(outputs.auxiliary_outputs) == 2
    assert outputs.last_hidden_state.shape == (2, 8, 64)
    assert outputs.encoder_last_hidden_state.shape == (2, 20, 64)
    assert outputs.reference_points.shape == (3, 2, 8, 2)
    assert [a.shape for a in outputs.encoder_attentions] == [(2, 20, 20)] * 2
    assert [a.shape for a in outputs.decoder_attentions] == [(2, 8, 8)] * 3
    assert [a.shape for a in outputs.cross_attentions] == [(2, 8, 20)] * 3
    assert outputs.loss is None


def test_attention_maps_are_probabilities(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    outputs = model(input_features=torch.randn(1, 12, 32), output_attentions=True)
    for maps in (outputs.encoder_attentions, outputs.decoder_attentions, outputs.cross_attentions):
        for attention in maps:
            assert torch.allclose(attention.sum(-1), torch.ones(attention.shape[:-1]), atol=1e-5)


def test_return_dict_false_returns_a_tuple(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(1, 10, 32)
    as_tuple = model(input_features=features, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], model(input_features=features).logits)


def test_fused_and_explicit_attention_give_the_same_predictions(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(2, 24, 32)
    mask = torch.ones(2, 24, dtype=torch.long)
    mask[1, 17:] = 0
    fused = model(input_features=features, attention_mask=mask)
    explicit = model(input_features=features, attention_mask=mask, output_attentions=True)
    assert fused.cross_attentions is None
    assert torch.allclose(fused.logits, explicit.logits, atol=1e-5)
    assert torch.allclose(fused.pred_segments, explicit.pred_segments, atol=1e-6)


def test_maps_exist_under_every_attention_backend(tiny_config):
    for backend in ("sdpa", "eager"):
        model = SelfDetrForActionDetection(tiny_config).train()
        model.set_attn_implementation(backend)
        assert model.config._attn_implementation == backend
        outputs = model(input_features=torch.randn(2, 16, 32), labels=make_labels())
        assert len(outputs.cross_attentions) == 3
        assert outputs.loss_dict["loss_encoder_feedback"] > 0


def test_padding_does_not_change_the_valid_outputs(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(1, 15, 32)
    padded = torch.cat([features, 100 * torch.randn(1, 9, 32)], dim=1)
    mask = torch.cat([torch.ones(1, 15), torch.zeros(1, 9)], dim=1)
    alone = model(input_features=features, output_attentions=True)
    batched = model(input_features=padded, attention_mask=mask, output_attentions=True)
    assert torch.allclose(alone.logits, batched.logits, atol=1e-5)
    assert torch.allclose(alone.pred_segments, batched.pred_segments, atol=1e-6)
    assert torch.allclose(alone.encoder_last_hidden_state, batched.encoder_last_hidden_state[:, :15], atol=1e-5)
    assert torch.allclose(alone.cross_attentions[-1], batched.cross_attentions[-1][..., :15], atol=1e-6)
    assert torch.all(batched.cross_attentions[-1][..., 15:] == 0)


def test_padding_does_not_change_the_loss(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(2, 15, 32)
    padded = torch.cat([features, torch.randn(2, 5, 32)], dim=1)
    mask = torch.cat([torch.ones(2, 15), torch.zeros(2, 5)], dim=1)
    alone = model(input_features=features, labels=make_labels())
    batched = model(input_features=padded, attention_mask=mask, labels=make_labels())
    for name, value in alone.loss_dict.items():
        assert torch.allclose(value, batched.loss_dict[name], atol=1e-5), name


def test_loss_has_every_named_term(tiny_config):
    outputs = SelfDetrForActionDetection(tiny_config)(input_features=torch.randn(2, 16, 32), labels=make_labels())
    expected = {"loss_focal", "loss_l1", "loss_tiou", "loss_encoder_feedback", "loss_decoder_feedback"}
    expected |= {f"{name}_{i}" for name in ("loss_focal", "loss_l1", "loss_tiou") for i in (0, 1)}
    assert set(outputs.loss_dict) == expected
    weights = {"loss_focal": 2, "loss_l1": 5, "loss_tiou": 2, "loss_encoder_feedback": 5, "loss_decoder_feedback": 5}
    total = sum(weights[re.sub(r"_\d$", "", k)] * v for k, v in outputs.loss_dict.items())
    assert torch.allclose(outputs.loss, total)


def test_feedback_switches_remove_their_terms(tiny_config):
    tiny_config.encoder_feedback = False
    tiny_config.auxiliary_loss = False
    outputs = SelfDetrForActionDetection(tiny_config)(input_features=torch.randn(2, 16, 32), labels=make_labels())
    assert set(outputs.loss_dict) == {"loss_focal", "loss_l1", "loss_tiou", "loss_decoder_feedback"}


def test_empty_targets_give_finite_losses(tiny_config):
    labels = [{"class_labels": torch.zeros(0, dtype=torch.long), "segments": torch.zeros(0, 2)}] * 2
    outputs = SelfDetrForActionDetection(tiny_config)(input_features=torch.randn(2, 16, 32), labels=labels)
    assert torch.isfinite(outputs.loss)
    assert outputs.loss_dict["loss_l1"] == 0 and outputs.loss_dict["loss_tiou"] == 0
    outputs.loss.backward()


def feedback_gradients(model, features, term):
    model.zero_grad()
    outputs = model(input_features=features, labels=make_labels())
    outputs.loss_dict[term].backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_feedback_gradient_reaches_self_attention_but_not_cross_attention(tiny_config):
    """The guidance maps are detached: cross-attention gets no gradient from a feedback
    term except through the forward path of later self-attention layers (the last
    decoder layer's cross-attention has none after it; the encoder has no decoder)."""
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(2, 16, 32)

    def touched(gradients, pattern):
        return [n for n, g in gradients.items() if re.search(pattern, n) and g is not None and g.abs().sum() > 0]

    encoder = feedback_gradients(model, features, "loss_encoder_feedback")
    assert touched(encoder, r"encoder\.layers\.\d+\.self_attn\.(q|k|v)_proj")
    assert not touched(encoder, r"cross_attn")
    decoder = feedback_gradients(model, features, "loss_decoder_feedback")
    assert touched(decoder, r"decoder\.layers\.2\.self_attn\.(q|k)_content_proj")
    assert not touched(decoder, r"decoder\.layers\.2\.cross_attn")


def test_attention_map_is_the_dropped_out_probabilities_that_weight_the_values(tiny_config):
    tiny_config.dropout = 0.3
    attention = SelfDetrDecoderSelfAttention(tiny_config).train()
    hidden, position = torch.randn(2, 8, 64), torch.randn(2, 8, 64)
    torch.manual_seed(1)
    output, attention_map = attention(hidden, position, need_weights=True)

    def heads(tensor):  # (B, Nq, d) -> (B, h, Nq, d / h)
        return tensor.view(2, 8, 4, 16).transpose(1, 2)

    query = heads(attention.q_content_proj(hidden) + attention.q_pos_proj(position))
    key = heads(attention.k_content_proj(hidden) + attention.k_pos_proj(position))
    probabilities = (query @ key.transpose(-1, -2) / 4).softmax(-1)  # (B, h, Nq, Nq), scale 16^-0.5
    torch.manual_seed(1)
    dropped = inverted_dropout(probabilities, 0.3, training=True)
    assert (dropped == 0).any()
    torch.testing.assert_close(attention_map, dropped)  # (B, h, Nq, Nq)
    merged = (dropped @ heads(attention.v_proj(hidden))).transpose(1, 2).reshape(2, 8, 64)
    torch.testing.assert_close(output, attention.out_proj(merged))


def written_out_feedback(encoder_maps, decoder_maps, cross_maps, eps=1e-7):
    """Eq. 2-6 with the default pairing (decoder: per layer; encoder: matmul aggregation)."""

    def normalise(matrix):
        return matrix / matrix.sum(-1, keepdim=True)

    def kl(target, prediction):  # summed over keys, averaged over every row
        return ((target + eps) * ((target + eps).log() - (prediction + eps).log())).sum(-1).mean()

    cross = torch.stack(cross_maps)  # (L_d, B, Nq, T)
    decoder = kl(normalise((cross @ cross.transpose(-1, -2) + eps).sqrt()), torch.stack(decoder_maps))
    mean_cross = cross.mean(0)
    aggregated = encoder_maps[0]
    for layer in encoder_maps[1:]:
        aggregated = normalise((aggregated @ layer.transpose(-1, -2) + eps).sqrt())
    encoder = kl(normalise((mean_cross.transpose(-1, -2) @ mean_cross + eps).sqrt()), aggregated)
    return encoder, decoder


def feedback_terms(config, features, seed=3):
    """A training forward pass of a model built and run from one seed."""
    torch.manual_seed(seed)
    model = SelfDetrForActionDetection(config).train()
    return model(input_features=features, labels=make_labels(), output_attentions=True)


@pytest.mark.parametrize("feedback_maps", ["after_dropout", "before_dropout"])
def test_feedback_terms_are_computed_on_the_chosen_maps(tiny_config, feedback_maps):
    tiny_config.dropout, tiny_config.feedback_maps = 0.3, feedback_maps
    torch.manual_seed(0)
    outputs = feedback_terms(tiny_config, torch.randn(2, 16, 32))
    maps = (outputs.encoder_attentions, outputs.decoder_attentions, outputs.cross_attentions)
    row_sums = torch.cat([m.sum(-1).flatten() for kind in maps for m in kind])
    if feedback_maps == "after_dropout":  # head averages of dropped-out rows: sums around 1
        assert (row_sums - 1).abs().max() > 0.05
    else:
        torch.testing.assert_close(row_sums, torch.ones_like(row_sums))
    encoder, decoder = written_out_feedback(*maps)
    torch.testing.assert_close(outputs.loss_dict["loss_encoder_feedback"], encoder)
    torch.testing.assert_close(outputs.loss_dict["loss_decoder_feedback"], decoder)


def test_feedback_maps_choice_changes_nothing_without_dropout(tiny_config):
    tiny_config.dropout = 0.0
    features = torch.randn(2, 16, 32)
    after = feedback_terms(tiny_config, features)
    tiny_config.feedback_maps = "before_dropout"
    before = feedback_terms(tiny_config, features)
    for name, value in after.loss_dict.items():
        assert torch.equal(value, before.loss_dict[name]), name


def test_feedback_maps_choice_matters_with_dropout(tiny_config):
    tiny_config.dropout = 0.3
    features = torch.randn(2, 16, 32)
    after = feedback_terms(tiny_config, features)
    tiny_config.feedback_maps = "before_dropout"
    before = feedback_terms(tiny_config, features)
    torch.testing.assert_close(after.logits, before.logits)  # same draws, same forward pass
    assert not torch.isclose(after.loss_dict["loss_decoder_feedback"], before.loss_dict["loss_decoder_feedback"])


def test_bfloat16_autocast_gives_finite_loss(tiny_config):
    model = SelfDetrForActionDetection(tiny_config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(input_features=torch.randn(2, 16, 32), labels=make_labels())
    assert all(torch.isfinite(v) for v in outputs.loss_dict.values())
    outputs.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_input_group_norm_statistics_are_float32_under_autocast():
    """The input projection runs in bf16 under autocast; its GroupNorm must not take
    bf16 statistics of features far from zero mean (I3D features are non-negative)."""
    from selfdetr_hf.modeling_self_detr import masked_group_norm

    norm = torch.nn.GroupNorm(8, 64)
    torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    torch.nn.init.uniform_(norm.bias, -0.5, 0.5)
    features = (torch.randn(2, 128, 64) * 0.5 + 3.0).bfloat16()
    valid = torch.ones(2, 128, dtype=torch.bool)
    with torch.no_grad():
        expected = norm(features.float().transpose(1, 2)).transpose(1, 2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            normalised = masked_group_norm(features, valid, norm)
        in_bfloat16 = masked_group_norm(features, valid, norm.to(torch.bfloat16))
    assert normalised.dtype == torch.float32  # as autocast's nn.GroupNorm
    torch.testing.assert_close(normalised, expected, rtol=1e-5, atol=1e-5)
    assert in_bfloat16.dtype == torch.bfloat16  # a model converted to bf16 stays bf16


def test_an_all_valid_mask_gives_the_outputs_of_no_mask(tiny_config):
    """A given mask always takes the masked path (the one an exported graph holds), with every attention backend."""
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(2, 20, 32)
    for implementation in ("sdpa", "eager"):
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            plain = model(input_features=features)
            masked = model(input_features=features, attention_mask=torch.ones(2, 20, dtype=torch.long))
        torch.testing.assert_close(masked.logits, plain.logits)
        torch.testing.assert_close(masked.pred_segments, plain.pred_segments)


def test_wrong_channel_count_is_a_clear_error(tiny_config):
    model = SelfDetrForActionDetection(tiny_config)
    with pytest.raises(ValueError, match=r"input_features must have shape \(batch, time, 32\).*transpose"):
        model(input_features=torch.randn(1, 32, 10))


def test_mask_without_valid_steps_names_the_sample(tiny_config):
    mask = torch.ones(2, 10)
    mask[1] = 0
    with pytest.raises(ValueError, match=r"no valid time step for batch sample\(s\) \[1\]"):
        SelfDetrForActionDetection(tiny_config)(input_features=torch.randn(2, 10, 32), attention_mask=mask)


def test_unknown_label_names_the_sample(tiny_config):
    labels = make_labels()
    labels[1]["class_labels"] = torch.tensor([7])
    with pytest.raises(ValueError, match=r"labels\[1\]\['class_labels'\] holds \[7\], outside 0..2"):
        SelfDetrForActionDetection(tiny_config)(input_features=torch.randn(2, 10, 32), labels=labels)


def test_segments_in_seconds_instead_of_normalised_are_refused(tiny_config):
    labels = make_labels()
    labels[1]["segments"] = torch.tensor([[12.5, 4.0]])  # seconds, not fractions of the window
    with pytest.raises(ValueError, match=r"labels\[1\]\['segments'\] holds \[\[12.5, 4.0\]\]: .* in \[0, 1\]"):
        SelfDetrForActionDetection(tiny_config)(input_features=torch.randn(2, 10, 32), labels=labels)


def test_save_and_load_give_identical_outputs(tiny_config, tmp_path):
    model = SelfDetrForActionDetection(tiny_config).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = SelfDetrForActionDetection.from_pretrained(tmp_path).eval()
    features = torch.randn(2, 16, 32)
    expected, actual = model(input_features=features), loaded(input_features=features)
    assert torch.equal(expected.logits, actual.logits)
    assert torch.equal(expected.pred_segments, actual.pred_segments)


def test_auto_classes_resolve_once_imported(tiny_config, tmp_path):
    SelfDetrForActionDetection(tiny_config).save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SelfDetrConfig)
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(base, SelfDetrModel)
    head = SelfDetrForActionDetection.from_pretrained(tmp_path)
    assert torch.equal(base.query_anchors.weight, head.model.query_anchors.weight)


def test_remote_code_loads_without_the_package(tiny_config, tmp_path):
    model = SelfDetrForActionDetection(tiny_config).eval()
    SelfDetrConfig.register_for_auto_class()
    SelfDetrForActionDetection.register_for_auto_class("AutoModel")
    try:
        model.save_pretrained(tmp_path / "model")
    finally:
        SelfDetrConfig._auto_class = SelfDetrForActionDetection._auto_class = None
    features = torch.randn(1, 12, 32)
    torch.save(features, tmp_path / "features.pt")
    torch.save(model(input_features=features).logits, tmp_path / "logits.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
        assert "selfdetr_hf" not in sys.modules, "the package was imported"
        logits = model(input_features=torch.load({str(tmp_path / "features.pt")!r})).logits
        assert type(model).__name__ == "SelfDetrForActionDetection"
        assert torch.equal(logits, torch.load({str(tmp_path / "logits.pt")!r}))
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_return_dict_false_in_the_config_leaves_every_forward_working(tiny_config, tmp_path):
    features = torch.randn(2, 10, 32)
    model = SelfDetrForActionDetection(SelfDetrConfig(**{**tiny_config.to_dict(), "return_dict": False})).eval()
    assert isinstance(model(input_features=features), tuple)
    assert model(input_features=features, return_dict=True).logits.shape == (2, 8, 3)
    model.save_pretrained(tmp_path)
    loaded = SelfDetrForActionDetection.from_pretrained(tmp_path, return_dict=False)
    loss = loaded(input_features=features, labels=make_labels())[0]
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_loading_in_bfloat16_on_a_device_map(tiny_config, tmp_path):
    SelfDetrForActionDetection(tiny_config).save_pretrained(tmp_path)
    model = SelfDetrForActionDetection.from_pretrained(tmp_path, dtype=torch.bfloat16, device_map="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    outputs = model(input_features=torch.randn(2, 16, 32, dtype=torch.bfloat16), labels=make_labels())
    assert torch.isfinite(outputs.loss) and outputs.pred_segments.shape == (2, 8, 2)


def test_a_bfloat16_model_takes_the_processors_float32_features(tiny_config, tmp_path):
    SelfDetrForActionDetection(tiny_config).save_pretrained(tmp_path)
    model = SelfDetrForActionDetection.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    inputs = SelfDetrProcessor.thumos14()(np.random.default_rng(0).normal(size=(60, 32)), return_tensors="pt")
    assert inputs["input_features"].dtype == torch.float32
    outputs = model(**inputs)
    expected = model(input_features=inputs["input_features"].bfloat16(), attention_mask=inputs["attention_mask"])
    assert outputs.logits.dtype == torch.bfloat16 and torch.equal(outputs.logits, expected.logits)


def test_input_projection_runs_through_its_own_forward(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    seen = []
    model.model.input_projection.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    model(input_features=torch.randn(2, 10, 32))
    assert seen == [(2, 64, 10)]


def test_lora_adapters_train_every_projection_they_wrap(tiny_config):
    from peft import LoraConfig, get_peft_model

    targets = ["input_projection", "q_proj", "k_proj", "q_content_proj", "k_content_proj", "q_pos_proj", "k_pos_proj",
               "q_pos_sine_proj", "v_proj", "out_proj", "fc1", "fc2", "class_head"]  # fmt: skip
    model = get_peft_model(SelfDetrForActionDetection(tiny_config), LoraConfig(r=4, target_modules=targets))
    model(input_features=torch.randn(2, 16, 32), labels=make_labels()).loss.backward()
    adapters = {  # the first decoder self-attention reads all-zero content queries: no gradient to their adapters
        name: p.grad
        for name, p in model.named_parameters()
        if "lora_B" in name and "decoder.layers.0.self_attn.q_content" not in name
        and "decoder.layers.0.self_attn.k_content" not in name and "decoder.layers.0.self_attn.v_proj" not in name
    }  # fmt: skip
    assert any("input_projection" in name for name in adapters)
    wrapped = {name.split(".lora_B")[0] for name in adapters}
    assert all(any(name.endswith(f"encoder.layers.0.self_attn.{part}_proj") for name in wrapped) for part in "qkv")
    assert all(grad is not None and grad.abs().sum() > 0 for grad in adapters.values()), [
        name for name, grad in adapters.items() if grad is None or grad.abs().sum() == 0
    ]
    assert all(not p.requires_grad for name, p in model.named_parameters() if "lora_" not in name)


def test_unknown_keyword_arguments_are_refused(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(1, 10, 32)
    with pytest.raises(TypeError, match="unexpected keyword argument 'attention_masks'"):
        model(input_features=features, attention_masks=torch.ones(1, 10))
    with pytest.raises(TypeError, match="unexpected keyword argument 'window_metadata'"):
        model(input_features=features, window_metadata=[{"video_id": "v"}])
    with pytest.raises(TypeError, match="unexpected keyword argument 'labels'"):
        SelfDetrModel(tiny_config)(input_features=features, labels=make_labels())


def test_trainer_divides_the_loss_by_the_accumulation_steps(tiny_config, tmp_path):
    """Four identical windows, two micro-batches of two, one SGD step with learning rate 1:
    the update is minus the gradient of one micro-batch's loss (the mean of two equal ones)."""
    from transformers import Trainer, TrainingArguments

    tiny_config.dropout = 0.0
    window = {"input_features": torch.randn(16, 32), "labels": make_labels()[0]}
    model = SelfDetrForActionDetection(tiny_config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    batch = {"input_features": window["input_features"].expand(2, -1, -1), "labels": [window["labels"]] * 2}
    model(**batch).loss.backward()
    expected = {name: before[name] - p.grad for name, p in model.named_parameters()}
    model.zero_grad()

    args = TrainingArguments(
        tmp_path, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=1, learning_rate=1.0,
        optim="sgd", lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, report_to=[],
        remove_unused_columns=False, use_cpu=True, save_strategy="no", logging_strategy="no",
    )  # fmt: skip

    def collate(rows):
        return {
            "input_features": torch.stack([r["input_features"] for r in rows]),
            "labels": [r["labels"] for r in rows],
        }

    trainer = Trainer(model=model, args=args, train_dataset=[window] * 4, data_collator=collate)
    assert trainer.model_accepts_loss_kwargs is False
    trainer.train()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], atol=1e-6, rtol=1e-5, msg=name)


def test_loss_function_and_dummy_inputs_belong_to_this_model(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    assert model.loss_function is model.criterion
    outputs = model(**model.dummy_inputs, output_attentions=True)
    assert outputs.logits.shape == (2, 8, 3)
    maps = {name: outputs[name] for name in ("encoder_attentions", "decoder_attentions", "cross_attentions")}
    loss, loss_dict = SelfDetrModel(tiny_config).loss_function(
        outputs.logits,
        outputs.pred_segments,
        make_labels(),
        **maps,
        attention_mask=model.dummy_inputs["attention_mask"],
    )
    expected = model(**model.dummy_inputs, labels=make_labels())
    torch.testing.assert_close(loss, model.criterion.weighted_sum(loss_dict))
    for name, value in loss_dict.items():  # the auxiliary outputs were not given: no `_i` terms
        torch.testing.assert_close(value, expected.loss_dict[name], msg=name)
    assert set(expected.loss_dict) - set(loss_dict) == {n for n in expected.loss_dict if re.search(r"_\d$", n)}


def test_attention_backend_switches_at_runtime(tiny_config, monkeypatch):
    fused_calls = []
    fused = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        fused_calls.append(args[0].shape)
        return fused(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(2, 16, 32)
    with_sdpa = model(input_features=features)
    assert model.config._attn_implementation == "sdpa"
    assert len(fused_calls) == 2 + 3  # encoder and decoder self-attention; cross-attention stays explicit on CPU
    fused_calls.clear()
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    with_eager = model(input_features=features)
    assert fused_calls == []
    torch.testing.assert_close(with_eager.logits, with_sdpa.logits, atol=1e-5, rtol=0)
    model.config.output_attentions = True  # refused by transformers under sdpa
    assert len(model(input_features=features).encoder_attentions) == 2


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_config):
    features = torch.randn(2, 16, 32)

    def loss_and_gradients(checkpointing):
        torch.manual_seed(0)
        model = SelfDetrForActionDetection(tiny_config).train()  # dropout 0.1: the RNG state is replayed
        if checkpointing:
            model.gradient_checkpointing_enable()
            layers = [*model.model.encoder.layers, *model.model.decoder.layers]
            assert model.is_activation_checkpointing and all(layer.gradient_checkpointing for layer in layers)
        torch.manual_seed(1)
        outputs = model(input_features=features, labels=make_labels())
        outputs.loss.backward()
        return outputs.loss_dict, {name: p.grad for name, p in model.named_parameters()}

    plain_losses, plain_gradients = loss_and_gradients(False)
    losses, gradients = loss_and_gradients(True)
    for name, value in plain_losses.items():
        torch.testing.assert_close(losses[name], value, atol=1e-5, rtol=0, msg=name)
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(gradients[name], gradient, atol=1e-5, rtol=0, msg=name)


def test_adapters_on_a_frozen_model_train_under_reentrant_checkpointing(tiny_config):
    from peft import LoraConfig, get_peft_model

    features = torch.randn(2, 16, 32)

    def adapter_gradients(checkpointing):
        torch.manual_seed(0)
        model = SelfDetrForActionDetection(tiny_config)
        if checkpointing:  # PEFT then asks the model for inputs that require gradients
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["fc1", "fc2"], init_lora_weights=False))
        torch.manual_seed(1)  # dropout: the RNG state is replayed
        model.train()(input_features=features, labels=make_labels()).loss.backward()
        return {name: p.grad for name, p in model.named_parameters() if p.requires_grad}

    plain = adapter_gradients(False)
    checkpointed = adapter_gradients(True)
    assert plain.keys() == checkpointed.keys() and any("encoder.layers.0" in name for name in plain)
    for name, gradient in plain.items():
        torch.testing.assert_close(checkpointed[name], gradient, atol=1e-5, rtol=0, msg=name)


def test_decoder_hidden_states_start_with_the_input_and_end_normalised(tiny_config):
    outputs = SelfDetrForActionDetection(tiny_config).eval()(
        input_features=torch.randn(2, 16, 32), output_hidden_states=True
    )
    assert len(outputs.decoder_hidden_states) == 3 + 1 and len(outputs.encoder_hidden_states) == 2 + 1
    assert torch.all(outputs.decoder_hidden_states[0] == 0)  # the content queries start at zero
    assert torch.equal(outputs.decoder_hidden_states[-1], outputs.last_hidden_state)


def test_per_head_attentions_average_to_the_maps_the_loss_uses(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    features = torch.randn(2, 16, 32)
    averaged = model(input_features=features, labels=make_labels(), output_attentions=True)
    per_head = model(input_features=features, labels=make_labels(), output_attentions=True, per_head_attentions=True)
    assert [m.shape for m in per_head.encoder_attentions] == [(2, 4, 16, 16)] * 2
    assert [m.shape for m in per_head.decoder_attentions] == [(2, 4, 8, 8)] * 3
    assert [m.shape for m in per_head.cross_attentions] == [(2, 4, 8, 16)] * 3
    for heads, average in zip(per_head.cross_attentions, averaged.cross_attentions):
        torch.testing.assert_close(heads.mean(1), average)
    for name, value in averaged.loss_dict.items():
        torch.testing.assert_close(per_head.loss_dict[name], value, msg=name)


def test_anchor_refinement_stays_in_float32_in_a_bfloat16_model(tiny_config):
    model = SelfDetrForActionDetection(tiny_config).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # a non-zero segment head, as after training
            parameter.add_(torch.randn_like(parameter) * 0.05)
    features = torch.randn(2, 16, 32)
    reference = model(input_features=features)
    low = copy.deepcopy(model).to(torch.bfloat16)(input_features=features.bfloat16())
    assert low.logits.dtype == torch.bfloat16
    assert low.reference_points.dtype == low.pred_segments.dtype == torch.float32
    assert (low.pred_segments - reference.pred_segments).abs().max() < 0.01
    assert (low.logits.float() - reference.logits).abs().max() < 0.1
