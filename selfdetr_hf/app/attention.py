"""The demo's attention view: every layer's attention maps on one window of a video and
their diversity (Eq. 10) over the video's windows, for one model or two side by side.
Built from `selfdetr diagnose`'s pieces (`window_attention_maps`,
`video_attention_diversity`) and plots."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..evaluation.diagnostics import DEFAULT_WINDOW_SIZE, video_attention_diversity, window_attention_maps
from ..evaluation.diversity import LayerDiversity, summarize_layer_diversity
from ..evaluation.plots import plot_attention_maps, plot_layer_diversity

WINDOWS_PER_PASS = 8


@dataclass(frozen=True)
class VideoAttention:
    """One model's attention on one video.

    Attributes:
        maps: kind (``encoder``, ``decoder``, ``cross``) -> per layer the head-averaged map
            of the chosen window, cropped to its valid steps.
        diversity: kind -> `LayerDiversity`, mean and std over the video's windows.
        num_windows: the video's consecutive windows.
    """

    maps: dict[str, list[np.ndarray]]
    diversity: dict[str, LayerDiversity]
    num_windows: int


def num_windows(num_steps: int, window_size: int = DEFAULT_WINDOW_SIZE) -> int:
    """Consecutive windows of ``window_size`` steps covering ``num_steps`` (the last one padded)."""
    return -(-num_steps // window_size)


def video_attention(
    model: torch.nn.Module,
    features: np.ndarray,
    *,
    window: int,
    window_size: int = DEFAULT_WINDOW_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> VideoAttention:
    """Attention maps of window ``window`` (0-based) and the diversity of every window's maps.

    The video's ``(T, C)`` features are run `WINDOWS_PER_PASS` windows at a time;
    ``progress(done, total)`` is called after each pass.

    Raises:
        ValueError: ``window`` is not one of the video's windows.
    """
    total = num_windows(len(features), window_size)
    if not 0 <= window < total:
        raise ValueError(f"window {window + 1}: the video has {total} window(s) of {window_size} steps")
    per_window: dict[str, list[np.ndarray]] = {}
    chosen: dict[str, list[np.ndarray]] = {}
    for first in range(0, total, WINDOWS_PER_PASS):
        steps = features[first * window_size : (first + WINDOWS_PER_PASS) * window_size]
        for index, maps in enumerate(window_attention_maps(model, steps, window_size), first):
            for kind, values in video_attention_diversity([maps]).items():
                per_window.setdefault(kind, []).append(values)
            if index == window:
                chosen = {kind: [layer.numpy() for layer in layers] for kind, layers in maps.items()}
        if progress is not None:
            progress(min(first + WINDOWS_PER_PASS, total), total)
    diversity = {kind: summarize_layer_diversity(values) for kind, values in per_window.items()}
    return VideoAttention(maps=chosen, diversity=diversity, num_windows=total)


def attention_figures(
    attention: Mapping[str, VideoAttention], folder: str | Path, *, video_id: str, window: int,
    window_size: int = DEFAULT_WINDOW_SIZE,
) -> tuple[list[Path], Path]:  # fmt: skip
    """PNG files: the maps of each model (``attention_maps_<i>.png``, in the order of
    ``attention``, keyed by the models' names) and their diversity side by side
    (``diversity.png``)."""
    folder = Path(folder)
    first, last = window * window_size, (window + 1) * window_size - 1
    maps = [
        plot_attention_maps(
            found.maps, folder / f"attention_maps_{index}.png", title=f"{name}: video {video_id}, steps {first}-{last}"
        )
        for index, (name, found) in enumerate(attention.items())
    ]
    diversity = plot_layer_diversity(
        {name: found.diversity for name, found in attention.items()},
        folder / "diversity.png",
        title=f"attention diversity per layer on video {video_id} (mean and std over its windows)",
    )
    return maps, diversity


def diversity_rows(attention: Mapping[str, VideoAttention]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the diversity table: kind, layer, then ``mean +- std`` per model."""
    names = list(attention)
    kinds = attention[names[0]].diversity
    rows = []
    for kind in kinds:
        for layer in range(len(kinds[kind].mean)):
            values = [attention[name].diversity[kind] for name in names]
            rows.append([kind, layer + 1, *(f"{d.mean[layer]:.4f} +- {d.std[layer]:.4f}" for d in values)])
    return ["attention", "layer", *names], rows


__all__ = ["VideoAttention", "attention_figures", "diversity_rows", "num_windows", "video_attention"]
