"""Model cards for Self-DETR checkpoints, with the mAP of an evaluation run in ``model-index``.

A template is a Markdown file with YAML front matter (``model_cards/`` holds one for THUMOS14,
one for ActivityNet-v1.3 and one for a custom dataset). ``$name`` placeholders are filled
with :class:`string.Template`: in the front matter with YAML-safe quoted values, in the body
with plain text: ``$repo_id``, ``$model_name``, ``$dataset_name``, ``$results_table``,
``$architecture``, ``$feature_dim``, ``$num_labels``, ``$labels``, ``$encoder_feedback_weight``,
``$decoder_feedback_weight``. The ``model-index`` block is built from the metrics with
``huggingface_hub.EvalResult``, the format the Hub reads for its evaluation widgets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template

from huggingface_hub import EvalResult, ModelCard

from .configuration_self_detr import SelfDetrConfig

TEMPLATES_DIR = Path(__file__).resolve().parent / "model_cards"
"""The shipped templates (the repository's top-level ``model_cards/`` links here)."""

DEFAULT_DATASET_NAMES = {"thumos14_i3d": "THUMOS14", "activitynet_i3d": "ActivityNet-v1.3"}
"""Dataset named in a card when the caller gives none, for the templates of a known benchmark."""

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def available_templates() -> list[str]:
    """Names of the shipped templates, e.g. ``["activitynet_i3d", "custom_dataset", "thumos14_i3d"]``."""
    return sorted(path.stem for path in TEMPLATES_DIR.glob("*.md"))


def template_path(template: str | Path) -> Path:
    """The file of a template given by name (``"thumos14_i3d"``) or by path to a Markdown file."""
    if Path(template).is_file():
        return Path(template)
    shipped = TEMPLATES_DIR / f"{str(template).removesuffix('.md')}.md"
    if shipped.is_file():
        return shipped
    raise ValueError(
        f"no model card template {str(template)!r}: give a Markdown file or one of {available_templates()}"
    )


def _validated_metrics(metrics: dict) -> tuple[list[float], list[float], float]:
    """``(tiou_thresholds, mAP, average_mAP)`` from an evaluation's metrics, checked."""
    if "average_mAP" not in metrics:
        raise ValueError(f"metrics need 'average_mAP' (a fraction); got keys {sorted(metrics)}")
    thresholds = [float(t) for t in metrics.get("tiou_thresholds", [])]
    per_threshold = [float(m) for m in metrics.get("mAP", [])]
    if len(thresholds) != len(per_threshold):
        raise ValueError(f"metrics give {len(thresholds)} tIoU thresholds but {len(per_threshold)} mAP values")
    average = float(metrics["average_mAP"])
    for value in [*per_threshold, average]:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"mAP values are fractions in [0, 1]; got {value} (divide percentages by 100)")
    return thresholds, per_threshold, average


def _percent(fraction: float) -> float:
    return round(100.0 * fraction, 2)


def _results_table(thresholds: list[float], per_threshold: list[float], average: float) -> str:
    """Markdown table of the mAP (%) at each tIoU threshold and on average."""
    header = [f"{t:g}" for t in thresholds] + ["average"]
    values = [f"{_percent(m):.2f}" for m in [*per_threshold, average]]
    return "\n".join(
        [
            "| tIoU | " + " | ".join(header) + " |",
            "|---|" + "---|" * len(header),
            "| mAP (%) | " + " | ".join(values) + " |",
        ]
    )


def _eval_results(
    thresholds: list[float], per_threshold: list[float], average: float, dataset_name: str
) -> list[EvalResult]:
    """One ``EvalResult`` per tIoU threshold plus the average, values in percent."""
    common = {
        "task_type": "temporal-action-detection",
        "task_name": "Temporal Action Detection",
        "dataset_type": re.sub(r"[^a-z0-9.]+", "-", dataset_name.lower()).strip("-"),
        "dataset_name": dataset_name,
        "metric_type": "mAP",
    }
    results = [
        EvalResult(
            **common,
            metric_name=f"mAP@{t:g}",
            metric_value=_percent(m),
            metric_config=f"tIoU={t:g}",
        )
        for t, m in zip(thresholds, per_threshold)
    ]
    span = f" (tIoU {min(thresholds):g}:{max(thresholds):g})" if thresholds else ""
    results.append(EvalResult(**common, metric_name=f"average mAP{span}", metric_value=_percent(average)))
    return results


def render_model_card(
    template: str | Path,
    *,
    repo_id: str,
    config: SelfDetrConfig,
    metrics: dict | None,
    dataset_name: str,
) -> str:
    """Fill a model card template for the model ``repo_id``; returns the README.md text.

    Args:
        template: a shipped template name (see :func:`available_templates`) or a Markdown file.
        repo_id: the Hub repository, ``namespace/name``.
        config: the model's configuration (architecture summary, input size, class names).
        metrics: an evaluation run's results, ``{"tiou_thresholds": [...], "mAP": [...],
            "average_mAP": x}`` with mAP as fractions (per-threshold lists optional), or
            ``None`` for a card without results.
        dataset_name: the dataset the model was trained and evaluated on.

    Raises:
        ValueError: unknown template, malformed metrics, or a placeholder the template uses
            that is not provided.
    """
    text = template_path(template).read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(text)
    if match is None:
        raise ValueError(f"model card template {template} has no YAML front matter (--- ... ---)")
    results = None if metrics is None else _validated_metrics(metrics)
    table = "No evaluation results are recorded for this checkpoint." if results is None else _results_table(*results)
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    values = {
        "repo_id": repo_id,
        "model_name": repo_id.split("/")[-1],
        "dataset_name": dataset_name,
        "results_table": table,
        "architecture": (
            f"{config.encoder_layers} encoder and {config.decoder_layers} decoder layers, hidden size "
            f"{config.d_model}, {config.num_attention_heads} attention heads, {config.num_queries} queries"
        ),
        "feature_dim": str(config.feature_dim),
        "num_labels": str(len(labels)),
        "labels": ", ".join(labels),
        "encoder_feedback_weight": f"{config.encoder_feedback_weight:g}",
        "decoder_feedback_weight": f"{config.decoder_feedback_weight:g}",
    }
    quoted = {key: json.dumps(value) for key, value in values.items()}
    try:
        front_matter = Template(match.group(1)).substitute(quoted)
        body = Template(text[match.end() :]).substitute(values)
    except KeyError as error:
        raise ValueError(f"model card template {template} uses an unknown placeholder ${error.args[0]}") from None
    card = ModelCard(f"---\n{front_matter}\n---\n{body}")
    if results is not None:
        card.data.model_name = values["model_name"]
        card.data.eval_results = _eval_results(*results, dataset_name)
    return str(card)
