"""The model's forward pass, stated on its own (SELF-DETR-SPEC.md, section 1).

`slow_forward` recomputes a small randomly weighted model from its state dict with explicit
loops over samples, time steps, queries, heads and layers, in float64, straight from the
spec: input projection, masked GroupNorm, sine positions, the encoder, and the decoder with
its width-modulated conditional cross-attention and anchor refinement. It shares no code
with the library. Eval mode, dropout 0; tolerances cover the library's float32.
"""

import math

import pytest
import torch
from slow_self_feedback import slow_decoder_guidance, slow_encoder_guidance, slow_kl_row, slow_matmul_aggregation

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection

TOLERANCE = {"rtol": 1e-4, "atol": 2e-5}


class Weights:
    """A float64 view of a state dict with the spec's building blocks, one vector at a time."""

    def __init__(self, model: torch.nn.Module):
        self.tensors = {name: value.detach().double() for name, value in model.state_dict().items()}

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def linear(self, name: str, vector: torch.Tensor) -> torch.Tensor:
        return self[f"{name}.weight"] @ vector + self[f"{name}.bias"]

    def mlp(self, name: str, vector: torch.Tensor, layers: int) -> torch.Tensor:
        for index in range(layers):
            vector = self.linear(f"{name}.layers.{index}", vector)
            if index < layers - 1:
                vector = vector.clamp(min=0)
        return vector

    def layer_norm(self, name: str, vector: torch.Tensor) -> torch.Tensor:
        mean = vector.mean()
        variance = ((vector - mean) ** 2).mean()
        return (vector - mean) / math.sqrt(variance + 1e-5) * self[f"{name}.weight"] + self[f"{name}.bias"]

    def feed_forward(self, name: str, vector: torch.Tensor) -> torch.Tensor:
        hidden = self.linear(f"{name}.fc1", vector)
        hidden = hidden.clamp(min=0) + self[f"{name}.activation.weight"] * hidden.clamp(max=0)  # PReLU
        return self.layer_norm(f"{name}.final_layer_norm", vector + self.linear(f"{name}.fc2", hidden))


def sine(position: float, dim: int) -> torch.Tensor:
    """``[sin(p / 10000^(0/d)), cos(p / 10000^(0/d)), sin(p / 10000^(2/d)), ...]``."""
    values = []
    for i in range(dim):
        angle = position / 10000 ** (2 * (i // 2) / dim)
        values.append(math.sin(angle) if i % 2 == 0 else math.cos(angle))
    return torch.tensor(values, dtype=torch.float64)


def inverse_sigmoid(value: float) -> float:
    value = min(max(value, 0.0), 1.0)
    return math.log(max(value, 1e-5) / max(1 - value, 1e-5))


def sigmoid(value: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-value))


def attend(queries: list[torch.Tensor], keys: list[list[torch.Tensor]], values: list[list[torch.Tensor]], valid):
    """One query row: per head ``softmax(q . k_s / sqrt(dim))`` over the valid keys s, then the
    weighted values. ``queries[h]``, ``keys[s][h]``, ``values[s][h]``. Returns the merged heads
    and the head-averaged probabilities (0 on invalid keys)."""
    heads = len(queries)
    outputs, row = [], torch.zeros(len(keys), dtype=torch.float64)
    for h in range(heads):
        scores = {s: float(queries[h] @ keys[s][h]) / math.sqrt(len(queries[h])) for s in range(len(keys)) if valid[s]}
        top = max(scores.values())
        total = sum(math.exp(score - top) for score in scores.values())
        output = torch.zeros_like(values[0][h])
        for s, score in scores.items():
            probability = math.exp(score - top) / total
            output = output + probability * values[s][h]
            row[s] += probability / heads
        outputs.append(output)
    return torch.cat(outputs), row


def heads_of(vector: torch.Tensor, heads: int) -> list[torch.Tensor]:
    return list(vector.view(heads, -1))


def slow_forward(model: SelfDetrForActionDetection, features: torch.Tensor, mask: torch.Tensor) -> dict:
    """Spec section 1 for every sample, one vector at a time."""
    config, w = model.config, Weights(model)
    d, heads, groups = config.d_model, config.num_attention_heads, config.input_norm_groups
    results = {key: [] for key in ("encoder", "self", "cross", "references", "logits", "segments")}
    for b in range(features.shape[0]):
        valid = mask[b].bool().tolist()
        steps, num_valid = len(valid), sum(valid)
        # 1. input projection and GroupNorm over (channels of a group) x (valid steps)
        x = [w["model.input_projection.weight"][:, :, 0] @ features[b, t].double() + w["model.input_projection.bias"]
             for t in range(steps)]  # fmt: skip
        size = d // groups
        for g in range(groups):
            members = [x[t][g * size + c] for t in range(steps) if valid[t] for c in range(size)]
            mean = sum(members) / len(members)
            variance = sum((m - mean) ** 2 for m in members) / len(members)
            for t in range(steps):
                x[t] = x[t].clone()
                x[t][g * size : (g + 1) * size] = (x[t][g * size : (g + 1) * size] - mean) / math.sqrt(variance + 1e-5)
        x = [x[t] * w["model.input_norm.weight"] + w["model.input_norm.bias"] for t in range(steps)]
        # 2. normalised sine positions
        pos = [sine(sum(valid[: t + 1]) / (num_valid + 1e-6) * 2 * math.pi, d) for t in range(steps)]
        # 3. encoder
        encoder_maps = []
        for layer in range(config.encoder_layers):
            name = f"model.encoder.layers.{layer}"
            query_key = [x[t] + pos[t] * w.mlp("model.encoder.query_scale", x[t], 2) for t in range(steps)]
            q = [w.linear(f"{name}.self_attn.q_proj", query_key[t]) for t in range(steps)]
            k = [w.linear(f"{name}.self_attn.k_proj", query_key[t]) for t in range(steps)]
            v = [w.linear(f"{name}.self_attn.v_proj", x[t]) for t in range(steps)]
            rows, updated = [], []
            for t in range(steps):
                output, row = attend(heads_of(q[t], heads), [heads_of(k_s, heads) for k_s in k],
                                     [heads_of(v_s, heads) for v_s in v], valid)  # fmt: skip
                rows.append(row)
                hidden = w.layer_norm(
                    f"{name}.self_attn_layer_norm", x[t] + w.linear(f"{name}.self_attn.out_proj", output)
                )
                updated.append(w.feed_forward(f"{name}.feed_forward", hidden))
            x = updated
            encoder_maps.append(torch.stack(rows))
        memory = x
        # 4. decoder over sigmoid anchors, content queries starting at zero
        anchors = sigmoid(w["model.query_anchors.weight"])
        queries = anchors.shape[0]
        reference = [anchors[i] for i in range(queries)]
        target = [torch.zeros(d, dtype=torch.float64) for _ in range(queries)]
        self_maps, cross_maps, references, logits, segments = [], [], [], [], []
        for layer in range(config.decoder_layers):
            name = f"model.decoder.layers.{layer}"
            query_pos, center_sine = [], []
            for i in range(queries):
                center, width = float(reference[i][0]), float(reference[i][1])
                embedding = torch.cat((sine(center * 2 * math.pi, d), sine(width * 2 * math.pi, d)))
                query_pos.append(w.mlp("model.decoder.ref_point_head", embedding, 2))
                scale = 1.0 if layer == 0 else w.mlp("model.decoder.query_scale", target[i], 2)
                modulation = sigmoid(w.mlp("model.decoder.ref_anchor_head", target[i], 2))[0] / width
                center_sine.append(embedding[:d] * scale * modulation)
            # self-attention
            sa = f"{name}.self_attn"
            q = [
                w.linear(f"{sa}.q_content_proj", target[i]) + w.linear(f"{sa}.q_pos_proj", query_pos[i])
                for i in range(queries)
            ]
            k = [
                w.linear(f"{sa}.k_content_proj", target[i]) + w.linear(f"{sa}.k_pos_proj", query_pos[i])
                for i in range(queries)
            ]
            v = [w.linear(f"{sa}.v_proj", target[i]) for i in range(queries)]
            rows, updated = [], []
            for i in range(queries):
                output, row = attend(heads_of(q[i], heads), [heads_of(k_j, heads) for k_j in k],
                                     [heads_of(v_j, heads) for v_j in v], [True] * queries)  # fmt: skip
                rows.append(row)
                updated.append(
                    w.layer_norm(f"{name}.self_attn_layer_norm", target[i] + w.linear(f"{sa}.out_proj", output))
                )
            target = updated
            self_maps.append(torch.stack(rows))
            # conditional cross-attention: per head [content, position] halves
            ca = f"{name}.cross_attn"
            key_pos = [w.linear(f"{ca}.k_pos_proj", pos[t]) for t in range(steps)]
            key_content = [w.linear(f"{ca}.k_content_proj", memory[t]) for t in range(steps)]
            if layer == 0:
                key_content = [key_content[t] + key_pos[t] for t in range(steps)]
            keys = [[torch.cat(pair) for pair in zip(heads_of(key_content[t], heads), heads_of(key_pos[t], heads))]
                    for t in range(steps)]  # fmt: skip
            values = [heads_of(w.linear(f"{ca}.v_proj", memory[t]), heads) for t in range(steps)]
            rows, updated = [], []
            for i in range(queries):
                query_content = w.linear(f"{ca}.q_content_proj", target[i])
                if layer == 0:
                    query_content = query_content + w.linear(f"{ca}.q_pos_proj", query_pos[i])
                query_position = w.linear(f"{ca}.q_pos_sine_proj", center_sine[i])
                query = [
                    torch.cat(pair) for pair in zip(heads_of(query_content, heads), heads_of(query_position, heads))
                ]
                output, row = attend(query, keys, values, valid)
                rows.append(row)
                hidden = w.layer_norm(f"{name}.cross_attn_layer_norm", target[i] + w.linear(f"{ca}.out_proj", output))
                updated.append(w.feed_forward(f"{name}.feed_forward", hidden))
            target = updated
            cross_maps.append(torch.stack(rows))
            # 5. heads on the normalised output, refinement from the un-normalised one
            references.append(torch.stack(reference))
            layer_logits, layer_segments, next_reference = [], [], []
            for i in range(queries):
                normalised = w.layer_norm("model.decoder.layernorm", target[i])
                offset = torch.tensor([inverse_sigmoid(float(r)) for r in reference[i]], dtype=torch.float64)
                layer_logits.append(w.linear("class_head", normalised))
                layer_segments.append(sigmoid(w.mlp("model.decoder.segment_head", normalised, 3) + offset))
                next_reference.append(sigmoid(w.mlp("model.decoder.segment_head", target[i], 3) + offset))
            logits.append(torch.stack(layer_logits))
            segments.append(torch.stack(layer_segments))
            reference = next_reference
        for key, value in zip(results, (encoder_maps, self_maps, cross_maps, references, logits, segments)):
            results[key].append(torch.stack(value))
    return {key: torch.stack(value, dim=1) for key, value in results.items()}  # (layers, B, ...)


@pytest.fixture
def random_model():
    config = SelfDetrConfig(
        feature_dim=6, d_model=8, num_attention_heads=2, ffn_dim=12, encoder_layers=2, decoder_layers=3,
        num_queries=4, input_norm_groups=2, dropout=0.0, id2label={0: "a", 1: "b"},
    )  # fmt: skip
    model = SelfDetrForActionDetection(config).eval()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(2 * torch.rand(parameter.shape, generator=generator) - 1)
        anchors = torch.tensor([[0.2, 0.1], [0.4, 0.3], [0.6, 0.05], [0.85, 0.2]])  # (center, width)
        model.model.query_anchors.weight.copy_(torch.log(anchors / (1 - anchors)))
        for layer in model.model.decoder.layers:  # position-driven, peaked cross-attention
            layer.cross_attn.q_pos_sine_proj.weight.mul_(4)
            layer.cross_attn.k_pos_proj.weight.mul_(4)
    return model


@pytest.fixture
def inputs():
    features = torch.randn(2, 7, 6, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    return features, mask


def test_forward_pass_is_the_spec_written_out(random_model, inputs):
    features, mask = inputs
    with torch.no_grad():
        outputs = random_model(input_features=features, attention_mask=mask, output_attentions=True)
    expected = slow_forward(random_model, features, mask)
    torch.testing.assert_close(torch.stack(outputs.encoder_attentions).double(), expected["encoder"], **TOLERANCE)
    torch.testing.assert_close(torch.stack(outputs.decoder_attentions).double(), expected["self"], **TOLERANCE)
    torch.testing.assert_close(torch.stack(outputs.cross_attentions).double(), expected["cross"], **TOLERANCE)
    torch.testing.assert_close(outputs.reference_points.double(), expected["references"], **TOLERANCE)
    layer_logits = [a["logits"] for a in outputs.auxiliary_outputs] + [outputs.logits]
    layer_segments = [a["pred_segments"] for a in outputs.auxiliary_outputs] + [outputs.pred_segments]
    torch.testing.assert_close(torch.stack(layer_logits).double(), expected["logits"], **TOLERANCE)
    torch.testing.assert_close(torch.stack(layer_segments).double(), expected["segments"], **TOLERANCE)


def test_no_gradient_flows_from_a_layers_prediction_into_the_next_layers_reference(random_model, inputs):
    features, mask = inputs
    outputs = random_model(input_features=features, attention_mask=mask)
    layer_logits = torch.stack([a["logits"] for a in outputs.auxiliary_outputs] + [outputs.logits])
    head = list(random_model.model.decoder.segment_head.parameters())
    # the segment head reaches the class logits only through the references of later layers
    gradients = torch.autograd.grad(layer_logits.sum(), head, allow_unused=True)
    assert all(gradient is None or not gradient.any() for gradient in gradients)
    # while it does train the predictions of every layer
    assert any(g is not None and g.any() for g in torch.autograd.grad(outputs.pred_segments.sum(), head))


def test_model_loss_applies_the_feedback_to_its_own_maps(random_model, inputs):
    features, mask = inputs
    labels = [
        {"class_labels": torch.tensor([0, 1]), "segments": torch.tensor([[0.3, 0.2], [0.7, 0.1]])},
        {"class_labels": torch.tensor([1]), "segments": torch.tensor([[0.5, 0.4]])},
    ]
    outputs = random_model(input_features=features, attention_mask=mask, labels=labels)
    encoder = torch.stack(outputs.encoder_attentions).detach().double()
    self_maps = torch.stack(outputs.decoder_attentions).detach().double()
    cross = torch.stack(outputs.cross_attentions).detach().double()
    encoder_rows, decoder_rows = [], []
    for b in range(2):
        valid = mask[b].bool().tolist()
        guidance, aggregated = slow_encoder_guidance(cross[:, b], valid), slow_matmul_aggregation(encoder[:, b], valid)
        encoder_rows += [slow_kl_row(guidance[t], aggregated[t]) for t in range(7) if valid[t]]
        for layer in range(3):
            layer_guidance = slow_decoder_guidance(cross[layer, b])
            decoder_rows += [slow_kl_row(layer_guidance[i], self_maps[layer, b, i]) for i in range(4)]
    terms = outputs.loss_dict
    assert terms["loss_encoder_feedback"].item() == pytest.approx(sum(encoder_rows) / len(encoder_rows), rel=1e-4)
    assert terms["loss_decoder_feedback"].item() == pytest.approx(sum(decoder_rows) / len(decoder_rows), rel=1e-4)
    assert {name for name in terms if name.startswith("loss_focal")} == {"loss_focal", "loss_focal_0", "loss_focal_1"}
