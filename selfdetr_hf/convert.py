"""Convert checkpoints of the authors' Self-DETR code into a `save_pretrained` directory.

An original checkpoint is a ``torch.save`` dict whose ``model`` entry is the state dict;
it also pickles ``args`` (``argparse.Namespace``) and ``cfg`` (``easydict.EasyDict``) and
may hold ``epoch``, ``optimizer``, ``lr_scheduler`` and ``best_metric``. It is read with
``weights_only=True`` and an allow-list of exactly those two classes: nothing else in the
pickle is executed, and anything else is refused.
"""

from __future__ import annotations

import argparse
import collections
import pickle
import re
from pathlib import Path

import torch

from .configuration_self_detr import SelfDetrConfig
from .hub import SAVED_CODE_FILES
from .modeling_self_detr import SelfDetrForActionDetection


class _EasyDictRecord:
    """Inert stand-in for ``easydict.EasyDict``: its pickled items load into an
    ``OrderedDict`` (a container the weights-only unpickler may fill), nothing runs."""

    def __new__(cls, *args, **kwargs):
        return collections.OrderedDict()


ALLOWED_GLOBALS = [argparse.Namespace, (_EasyDictRecord, "easydict.EasyDict")]

# (original name pattern, our name); applied to the first match, each must be total.
KEY_MAPPING = [
    (r"input_proj\.0\.0\.", "model.input_projection."),
    (r"input_proj\.0\.1\.", "model.input_norm."),
    (r"refpoint_embed\.", "model.query_anchors."),
    (r"class_embed\.", "class_head."),
    (r"(transformer\.decoder\.)?segment_embed\.", "model.decoder.segment_head."),
    (r"transformer\.encoder\.query_scale\.", "model.encoder.query_scale."),
    (r"transformer\.encoder\.layers\.(\d+)\.self_attn\.", r"model.encoder.layers.\1.self_attn."),
    (r"transformer\.encoder\.layers\.(\d+)\.norm1\.", r"model.encoder.layers.\1.self_attn_layer_norm."),
    (r"transformer\.(en|de)coder\.layers\.(\d+)\.linear1\.", r"model.\1coder.layers.\2.feed_forward.fc1."),
    (r"transformer\.(en|de)coder\.layers\.(\d+)\.linear2\.", r"model.\1coder.layers.\2.feed_forward.fc2."),
    (r"transformer\.(en|de)coder\.layers\.(\d+)\.activation\.", r"model.\1coder.layers.\2.feed_forward.activation."),
    (r"transformer\.encoder\.layers\.(\d+)\.norm2\.", r"model.encoder.layers.\1.feed_forward.final_layer_norm."),
    (r"transformer\.decoder\.layers\.(\d+)\.sa_(q|k)content_proj\.", r"model.decoder.layers.\1.self_attn.\2_content_proj."),
    (r"transformer\.decoder\.layers\.(\d+)\.sa_(q|k)pos_proj\.", r"model.decoder.layers.\1.self_attn.\2_pos_proj."),
    (r"transformer\.decoder\.layers\.(\d+)\.sa_v_proj\.", r"model.decoder.layers.\1.self_attn.v_proj."),
    (r"transformer\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"model.decoder.layers.\1.self_attn.out_proj."),
    (r"transformer\.decoder\.layers\.(\d+)\.norm1\.", r"model.decoder.layers.\1.self_attn_layer_norm."),
    (r"transformer\.decoder\.layers\.(\d+)\.ca_(q|k)content_proj\.", r"model.decoder.layers.\1.cross_attn.\2_content_proj."),
    (r"transformer\.decoder\.layers\.(\d+)\.ca_qpos_sine_proj\.", r"model.decoder.layers.\1.cross_attn.q_pos_sine_proj."),
    (r"transformer\.decoder\.layers\.(\d+)\.ca_(q|k)pos_proj\.", r"model.decoder.layers.\1.cross_attn.\2_pos_proj."),
    (r"transformer\.decoder\.layers\.(\d+)\.ca_v_proj\.", r"model.decoder.layers.\1.cross_attn.v_proj."),
    (r"transformer\.decoder\.layers\.(\d+)\.cross_attn\.out_proj\.", r"model.decoder.layers.\1.cross_attn.out_proj."),
    (r"transformer\.decoder\.layers\.(\d+)\.norm2\.", r"model.decoder.layers.\1.cross_attn_layer_norm."),
    (r"transformer\.decoder\.layers\.(\d+)\.norm3\.", r"model.decoder.layers.\1.feed_forward.final_layer_norm."),
    (r"transformer\.decoder\.norm\.", "model.decoder.layernorm."),
    (r"transformer\.decoder\.(query_scale|ref_point_head|ref_anchor_head)\.", r"model.decoder.\1."),
]  # fmt: skip


# Training settings the authors' ``cfg``/``args`` record, and the config field each sets.
TRAINING_SETTINGS = {
    "use_KK": "encoder_feedback",
    "use_QQ": "decoder_feedback",
    "KK_loss_coef": "encoder_feedback_weight",
    "QQ_loss_coef": "decoder_feedback_weight",
    "cls_loss_coef": "focal_loss_weight",
    "seg_loss_coef": "l1_loss_weight",
    "iou_loss_coef": "tiou_loss_weight",
    "set_cost_class": "class_cost",
    "set_cost_seg": "segment_cost",
    "set_cost_iou": "tiou_cost",
    "focal_alpha": "focal_alpha",
    "aux_loss": "auxiliary_loss",
}


# What ``save_pretrained`` writes (or, for stale shards, deletes) in its folder.
SAVED_MODEL_FILES = (
    "config.json", "model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json", *SAVED_CODE_FILES,
)  # fmt: skip


def saved_model_files(output_dir: str | Path) -> list[Path]:
    """The files of ``output_dir`` that writing a converted model there would replace, sorted."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return sorted({path for pattern in SAVED_MODEL_FILES for path in output_dir.glob(pattern)})


class CheckpointConversionError(ValueError):
    """An original checkpoint that cannot be converted; the message names the cause."""


def load_original_checkpoint(path: str | Path) -> dict:
    """Read an original checkpoint without executing arbitrary pickled code.

    Returns:
        The checkpoint dict with ``args`` as a ``Namespace`` and ``cfg`` as an ``OrderedDict``.

    Raises:
        CheckpointConversionError: unreadable file, a pickled global outside the
            allow-list, or no ``model`` state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointConversionError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        raise CheckpointConversionError(
            f"{path}: refused or unreadable with weights_only=True (allowed pickled classes: "
            f"argparse.Namespace, easydict.EasyDict): {str(error).splitlines()[-1] if str(error) else error!r}"
        ) from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointConversionError(f"{path}: expected a dict whose 'model' entry is a state dict")
    return checkpoint if "model" in checkpoint else {"model": state}


def rename_original_key(name: str) -> str:
    """Our parameter name for an original one; raises naming an unknown tensor."""
    name = name.removeprefix("module.")
    for pattern, replacement in KEY_MAPPING:
        match = re.match(pattern, name)
        if match:
            return match.expand(replacement) + name[match.end() :]
    raise CheckpointConversionError(f"unexpected tensor in original checkpoint: {name}")


PACKED_IN_PROJECTION = re.compile(r"(model\.encoder\.layers\.\d+\.self_attn\.)in_proj_(weight|bias)")


def convert_original_tensor(name: str, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Our ``(name, tensor)`` pairs for one original tensor: its renamed self
    (`rename_original_key`), except the encoder self-attention's packed ``in_proj``
    (``(3d, d)`` rows q, k, v), which becomes ``q_proj``, ``k_proj`` and ``v_proj``."""
    ours = rename_original_key(name)
    packed = PACKED_IN_PROJECTION.fullmatch(ours)
    if packed is None:
        return [(ours, tensor)]
    prefix, kind = packed.groups()
    return [(f"{prefix}{part}_proj.{kind}", rows) for part, rows in zip("qkv", tensor.chunk(3))]


def recorded_hyperparameters(checkpoint: dict) -> dict:
    """The checkpoint's ``args`` and ``cfg`` entries in one dict (``cfg`` wins)."""
    return {**vars(checkpoint.get("args") or argparse.Namespace()), **(checkpoint.get("cfg") or {})}


def recorded_training_settings(hyperparameters: dict) -> dict[str, tuple[str, object]]:
    """The self-feedback switches, loss weights and matching costs a checkpoint records.

    Returns:
        ``{config field: (original key, value)}`` for each key of `TRAINING_SETTINGS`
        present in ``hyperparameters``; booleans stay booleans, the rest become floats.
    """
    settings = {}
    for original, field in TRAINING_SETTINGS.items():
        if original not in hyperparameters:
            continue
        value = hyperparameters[original]
        try:
            value = value if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            raise CheckpointConversionError(
                f"the checkpoint records {original}={value!r}, which is not a number"
            ) from None
        settings[field] = (original, value)
    return settings


def infer_config(state: dict[str, torch.Tensor], hyperparameters: dict | None = None, **overrides) -> SelfDetrConfig:
    """Build a `SelfDetrConfig` from tensor shapes (layers, queries, classes, FFN size,
    feature and hidden size) plus what shapes cannot tell from the checkpoint's recorded
    hyper-parameters (``cfg``/``args``): heads and dropout (``nheads``, ``dropout``), the
    self-feedback switches (``use_KK``, ``use_QQ``), loss weights and matching costs
    (`recorded_training_settings`)."""
    hyperparameters = hyperparameters or {}
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        projection = state["input_proj.0.0.weight"]  # (d, C, 1)
        num_labels = state["class_embed.weight"].shape[0]
        num_queries = state["refpoint_embed.weight"].shape[0]
        ffn_dim = state["transformer.encoder.layers.0.linear1.weight"].shape[0]
    except KeyError as error:
        raise CheckpointConversionError(f"missing tensor in original checkpoint: {error.args[0]}") from None

    def count_layers(prefix: str) -> int:
        return len({int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)})

    kwargs = {
        "feature_dim": projection.shape[1],
        "d_model": projection.shape[0],
        "ffn_dim": ffn_dim,
        "encoder_layers": count_layers("transformer.encoder.layers."),
        "decoder_layers": count_layers("transformer.decoder.layers."),
        "num_queries": num_queries,
        "num_attention_heads": hyperparameters.get("nheads", 8),
        "dropout": hyperparameters.get("dropout", 0.1),
        "activation_function": "prelu" if "transformer.encoder.layers.0.activation.weight" in state else "relu",
        "id2label": {i: f"LABEL_{i}" for i in range(num_labels)},
    }
    kwargs.update({field: value for field, (_, value) in recorded_training_settings(hyperparameters).items()})
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    if len(kwargs["id2label"]) != num_labels:
        raise CheckpointConversionError(
            f"id2label names {len(kwargs['id2label'])} classes but the checkpoint's class_embed has {num_labels}"
        )
    return SelfDetrConfig(**kwargs)


def convert_state_dict(state: dict[str, torch.Tensor], model: SelfDetrForActionDetection) -> dict:
    """Rename every original tensor (splitting the encoder's packed ``in_proj``), check its
    shape against ``model``, and check that nothing is missing. The segment head appears twice in originals (shared module):
    both copies must be equal."""
    expected = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for name, original in state.items():
        for ours, tensor in convert_original_tensor(name, original):
            if ours not in expected:
                raise CheckpointConversionError(f"unexpected tensor in original checkpoint: {name} (-> {ours})")
            if tuple(tensor.shape) != tuple(expected[ours].shape):
                raise CheckpointConversionError(
                    f"shape mismatch for {name}: {tuple(original.shape)} in the checkpoint, "
                    f"{tuple(expected[ours].shape)} expected for {ours}"
                )
            if ours in converted and not torch.equal(converted[ours], tensor):
                raise CheckpointConversionError(f"{name} differs from its shared copy ({ours})")
            converted[ours] = tensor
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise CheckpointConversionError(f"missing tensor(s) in original checkpoint for: {', '.join(missing)}")
    return converted


def convert_original_checkpoint(
    checkpoint: str | Path | dict,
    output_dir: str | Path | None = None,
    *,
    id2label: dict[int, str] | None = None,
    num_attention_heads: int | None = None,
) -> SelfDetrForActionDetection:
    """Load an original checkpoint (a path, or the dict `load_original_checkpoint`
    returned) as a `SelfDetrForActionDetection` (eval mode) and, with ``output_dir``,
    write it there with ``save_pretrained``."""
    if not isinstance(checkpoint, dict):
        checkpoint = load_original_checkpoint(checkpoint)
    state = {k.removeprefix("module."): v for k, v in checkpoint["model"].items()}
    config = infer_config(
        state, recorded_hyperparameters(checkpoint), id2label=id2label, num_attention_heads=num_attention_heads
    )
    model = SelfDetrForActionDetection(config)
    model.load_state_dict(convert_state_dict(state, model), strict=True)
    model.eval()
    if output_dir is not None:
        model.save_pretrained(output_dir)
    return model
