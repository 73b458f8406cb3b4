"""Attention diagnostics of trained models: how collapsed is each layer's self-attention.

Runs a model over feature files in consecutive windows, measures the diversity (Eq. 10)
of every head-averaged attention map, and writes the numbers as JSON and the figures as
PNG (`diagnose`, the ``selfdetr diagnose`` command).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import FeatureFolder
from ..inference import feature_files, read_features
from .diversity import LayerDiversity, attention_diversity, summarize_layer_diversity

ATTENTION_KINDS = ("encoder", "decoder", "cross")
"""Encoder self-attention ``(T, T)``, decoder self-attention ``(Nq, Nq)``, cross-attention ``(Nq, T)``."""

DEFAULT_WINDOW_SIZE = 128

DIAGNOSE_FILES = ("diversity.json", "diversity.png", "attention_maps_*.png", "timeline_*.png")
"""What `diagnose` writes into its output folder (names and glob patterns)."""


@torch.no_grad()
def window_attention_maps(
    model: torch.nn.Module, features: np.ndarray | torch.Tensor, window_size: int = DEFAULT_WINDOW_SIZE
) -> list[dict[str, list[torch.Tensor]]]:
    """Head-averaged attention maps of a video, window by window.

    The video is cut into consecutive windows of ``window_size`` steps, the last one
    zero-padded and masked; the model runs in eval mode with ``output_attentions=True``.

    Args:
        model: a `SelfDetrForActionDetection` (or `SelfDetrModel`).
        features: ``(T, C)`` features of one video.
        window_size: steps per window.

    Returns:
        One dict per window: kind (see `ATTENTION_KINDS`) -> per layer the map cropped to
        the window's valid steps: encoder ``(t, t)``, decoder ``(Nq, Nq)``, cross ``(Nq, t)``,
        on the CPU whatever the model's device.
    """
    model.eval()
    device = next(model.parameters()).device
    features = torch.as_tensor(features, dtype=torch.float32)
    num_steps, channels = features.shape
    num_windows = -(-num_steps // window_size)
    padded = features.new_zeros(num_windows * window_size, channels)
    padded[:num_steps] = features
    mask = torch.zeros(num_windows * window_size, dtype=torch.long)
    mask[:num_steps] = 1
    outputs = model(
        input_features=padded.view(num_windows, window_size, channels).to(device),
        attention_mask=mask.view(num_windows, window_size).to(device),
        output_attentions=True,
        return_dict=True,
    )
    maps = {
        kind: [layer.float().cpu() for layer in layers]
        for kind, layers in zip(
            ATTENTION_KINDS, (outputs.encoder_attentions, outputs.decoder_attentions, outputs.cross_attentions)
        )
    }
    windows = []
    for index in range(num_windows):
        valid = min(window_size, num_steps - index * window_size)
        windows.append(
            {
                "encoder": [layer[index, :valid, :valid] for layer in maps["encoder"]],
                "decoder": [layer[index] for layer in maps["decoder"]],
                "cross": [layer[index, :, :valid] for layer in maps["cross"]],
            }
        )
    return windows


def video_attention_diversity(
    windows: Sequence[Mapping[str, Sequence[torch.Tensor]]], *, transposed: bool = False
) -> dict[str, np.ndarray]:
    """Per kind, the ``(L,)`` diversity of each layer, averaged over a video's windows."""
    return {
        kind: np.mean(
            [
                [attention_diversity(layer, transposed=transposed).item() for layer in window[kind]]
                for window in windows
            ],
            axis=0,
        )
        for kind in windows[0]
    }


def model_attention_diversity(
    model: torch.nn.Module, videos: Mapping[str, np.ndarray], window_size: int = DEFAULT_WINDOW_SIZE
) -> dict[str, dict[str, LayerDiversity]]:
    """Diversity per layer of every kind of attention, mean and std over ``videos``.

    Returns:
        ``{"diversity": {kind: LayerDiversity}, "diversity_transposed": {kind: LayerDiversity}}``
        (candidates the rows of A, and the rows of A^T).
    """
    per_video: dict[str, dict[str, list[np.ndarray]]] = {"diversity": {}, "diversity_transposed": {}}
    for features in videos.values():
        windows = window_attention_maps(model, features, window_size)
        for variant, transposed in (("diversity", False), ("diversity_transposed", True)):
            for kind, values in video_attention_diversity(windows, transposed=transposed).items():
                per_video[variant].setdefault(kind, []).append(values)
    return {
        variant: {kind: summarize_layer_diversity(values) for kind, values in kinds.items()}
        for variant, kinds in per_video.items()
    }


def feedback_description(config: Any) -> str:
    """Which self-feedback a model was trained with: ``with self-feedback``, ``encoder feedback
    only``, ``decoder feedback only`` or ``without self-feedback``."""
    switches = [name for name in ("encoder_feedback", "decoder_feedback") if getattr(config, name, False)]
    if len(switches) == 2:
        return "with self-feedback"
    return f"{switches[0].replace('_', ' ')} only" if switches else "without self-feedback"


def diagnose(
    model_dir: str | Path,
    features: str | Path | FeatureFolder,
    output_dir: str | Path,
    *,
    compare_model_dir: str | Path | None = None,
    window_size: int = DEFAULT_WINDOW_SIZE,
    annotations: str | Path | None = None,
    predictions: str | Path | None = None,
    video: str | None = None,
    video_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Measure and plot attention collapse of one model, or two side by side.

    Writes into ``output_dir``:

    - ``diversity.json``: per model, per kind, per layer, mean and std over the videos of
      both diversity variants (the returned dict);
    - ``attention_maps_<model>.png``: every layer's maps on the first window of the
      first video, per model;
    - ``diversity.png``: diversity per layer, the models side by side;
    - ``timeline_<video>.png`` when ``annotations`` and ``predictions`` (an ActivityNet
      submission) are given: detections against ground truth for ``video`` (default:
      the first feature file's video).

    Args:
        model_dir: a `SelfDetrForActionDetection` saved with ``save_pretrained``.
        features: a ``(T, C)`` feature file, a folder of them (one per video), or a
            `FeatureFolder` (every video of it).
        output_dir: created if needed.
        compare_model_dir: a second model, typically trained without self-feedback.
        window_size: steps per window.
        annotations: an annotation file `selfdetr_hf.data.load_annotations` reads.
        predictions: an ActivityNet submission file.
        video: the video of the timeline.
        video_ids: with a `FeatureFolder`, which of its videos (default: all).
    """
    from ..model_loading import load_model
    from .plots import plot_attention_maps, plot_detection_timeline, plot_layer_diversity

    if (annotations is None) != (predictions is None):
        raise ValueError("a timeline needs both annotations and predictions")
    if window_size < 1:
        raise ValueError(f"window_size must be a positive integer, got {window_size}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(features, FeatureFolder):
        folder, video_ids = features, list(video_ids or features.video_ids())
    else:
        folder, video_ids = feature_files(features, FeatureFolder(features))
    models = {"model": Path(model_dir)}
    if compare_model_dir is not None:
        models["compare_model"] = Path(compare_model_dir)

    report: dict[str, Any] = {"window_size": window_size, "videos": None, "models": {}}
    legend: dict[str, dict[str, LayerDiversity]] = {}
    for key, directory in models.items():
        model = load_model(directory)
        videos = read_features(folder, video_ids, feature_dim=model.config.feature_dim)
        report["videos"] = list(videos)
        diversity = model_attention_diversity(model, videos, window_size)
        description = feedback_description(model.config)
        report["models"][key] = {
            "path": str(directory),
            "self_feedback": description,
            **{variant: {kind: d.to_dict() for kind, d in kinds.items()} for variant, kinds in diversity.items()},
        }
        legend[f"{directory.name} ({description})"] = diversity["diversity"]
        first_video = next(iter(videos))
        first_window = window_attention_maps(model, videos[first_video][:window_size], window_size)[0]
        plot_attention_maps(
            {kind: [layer.numpy() for layer in layers] for kind, layers in first_window.items()},
            output_dir / f"attention_maps_{key}.png",
            title=f"{directory.name} ({description}): video {first_video}, steps 0-{window_size - 1}",
        )
    plot_layer_diversity(legend, output_dir / "diversity.png")

    if annotations is not None:
        from ..data import load_annotations
        from .submission import read_submission

        video = video or report["videos"][0]
        ground_truth = load_annotations(annotations, invalid_segments="keep")
        detections = read_submission(predictions)
        if video not in ground_truth or video not in detections:
            raise ValueError(f"video {video!r} must be in both {annotations} and {predictions}")
        plot_detection_timeline(
            ground_truth[video],
            detections[video],
            output_dir / f"timeline_{video}.png",
            duration=ground_truth[video].duration,
            title=f"video {video}: ground truth and top detections",
        )
    with open(output_dir / "diversity.json", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    return report
