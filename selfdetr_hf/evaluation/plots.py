"""Figures written to PNG files: attention maps, diversity per layer, detection timelines.

Uses matplotlib's object-oriented API with the Agg renderer and never touches pyplot's
global state, so it runs headless and inside other programs. Needs the ``plot`` extra.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .detection_map import VideoDetections, ground_truth_arrays, to_video_detections
from .diversity import LayerDiversity

ATTENTION_TITLES = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "cross-attention",
}
TIMELINE_PALETTE = "plasma"
"""Colour map of detection scores on timelines."""
AXIS_LABELS = {
    "encoder": ("key step", "query step"),
    "decoder": ("key query", "query"),
    "cross": ("key step", "query"),
}


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
    return path


def plot_attention_maps(maps: Mapping[str, Sequence[Any]], path: str | Path, *, title: str | None = None) -> Path:
    """One row per kind of attention, one column per layer.

    Args:
        maps: kind (``encoder``, ``decoder``, ``cross``) -> per layer a ``(N, M)`` map
            (numpy array or tensor); rows are queries.
        path: the PNG file to write.
        title: figure title.
    """
    columns = max(len(layers) for layers in maps.values())
    figure = Figure(figsize=(3.2 * columns, 3.0 * len(maps)), layout="constrained")
    axes = figure.subplots(len(maps), columns, squeeze=False)
    for row, (kind, layers) in enumerate(maps.items()):
        for column in range(columns):
            ax = axes[row, column]
            if column >= len(layers):
                ax.set_axis_off()
                continue
            image = ax.imshow(np.asarray(layers[column]), aspect="auto", interpolation="nearest", cmap="viridis")
            figure.colorbar(image, ax=ax, fraction=0.05)
            ax.set_title(f"{ATTENTION_TITLES.get(kind, kind)}, layer {column + 1}", fontsize=9)
            ax.set_xlabel(AXIS_LABELS.get(kind, ("key", "query"))[0], fontsize=8)
            ax.set_ylabel(AXIS_LABELS.get(kind, ("key", "query"))[1], fontsize=8)
            ax.tick_params(labelsize=7)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_layer_diversity(
    models: Mapping[str, Mapping[str, LayerDiversity]], path: str | Path, *, title: str | None = None
) -> Path:
    """Diversity per layer, the models' bars side by side, one panel per kind of attention.

    Args:
        models: model name (the legend) -> kind -> `LayerDiversity`.
        path: the PNG file to write.
        title: figure title.
    """
    kinds = list(dict.fromkeys(kind for diversity in models.values() for kind in diversity))
    figure = Figure(figsize=(4.2 * len(kinds), 3.6), layout="constrained")
    axes = figure.subplots(1, len(kinds), squeeze=False)[0]
    width = 0.8 / len(models)
    for ax, kind in zip(axes, kinds):
        for index, (name, diversity) in enumerate(models.items()):
            if kind not in diversity:
                continue
            layers = np.arange(1, len(diversity[kind].mean) + 1)
            offset = (index - (len(models) - 1) / 2) * width
            ax.bar(layers + offset, diversity[kind].mean, width, yerr=diversity[kind].std, capsize=3, label=name)
        ax.set_title(ATTENTION_TITLES.get(kind, kind))
        ax.set_xlabel("layer")
        ax.set_ylabel("diversity (Eq. 10)")
        ax.set_xticks(np.arange(1, max(len(d[kind].mean) for d in models.values() if kind in d) + 1))
        ax.set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(models), fontsize=9)
    figure.suptitle(title or "attention diversity per layer (mean and std over videos)")
    return _save(figure, path)


@dataclass(frozen=True)
class TimelineLayout:
    """What a detection timeline of one video draws, whatever renders it.

    Attributes:
        truth_segments: ``(n, 2)`` ground-truth (start, end) seconds.
        truth_labels: ``n`` ground-truth class labels.
        detections: the video's detections (all of them).
        shown: indices into ``detections`` of the drawn ones, best score first.
        rows: class label -> row index (ground-truth classes first, then detected ones).
        end: the end of the time axis in seconds.
        score_norm: the drawn scores' range mapped onto [0, 1] for `TIMELINE_PALETTE`.
    """

    truth_segments: np.ndarray
    truth_labels: list[Hashable]
    detections: VideoDetections
    shown: np.ndarray
    rows: dict[Hashable, int]
    end: float
    score_norm: Normalize

    def colour(self, score: float) -> tuple[float, float, float, float]:
        """The RGBA colour of a detection scoring ``score``."""
        return colormaps[TIMELINE_PALETTE](self.score_norm(score))


def timeline_layout(
    ground_truth: Any, detections: Any, *, duration: float | None = None, top_k: int = 20
) -> TimelineLayout:
    """Rows, drawn detections, time axis and score colours of a detection timeline.

    Args:
        ground_truth: record with ``segments`` ``(n, 2)`` seconds and ``labels`` (attributes
            or mapping keys), e.g. a `selfdetr_hf.data.VideoAnnotation`.
        detections: the video's detections in any form `evaluate_detections` accepts.
        duration: the video length in seconds (end of the time axis); when None, the
            latest segment end.
        top_k: how many detections to draw (the best ones).
    """
    truth_segments, truth_labels = ground_truth_arrays("plotted", ground_truth)
    found = to_video_detections("plotted", detections)
    shown = np.argsort(-found.scores, kind="stable")[:top_k]
    classes: list[Hashable] = list(dict.fromkeys(truth_labels + [found.labels[i] for i in shown]))
    scores = found.scores[shown]
    low, high = (float(scores.min()), float(scores.max())) if len(shown) else (0.0, 1.0)
    ends = [*truth_segments[:, 1].tolist(), *found.segments[shown, 1].tolist()]
    return TimelineLayout(
        truth_segments=truth_segments,
        truth_labels=truth_labels,
        detections=found,
        shown=shown,
        rows={label: index for index, label in enumerate(classes)},
        end=duration or max(ends, default=0.0) or 1.0,
        score_norm=Normalize(vmin=low, vmax=high if high > low else low + 1e-6),
    )


def plot_detection_timeline(
    ground_truth: Any,
    detections: Any,
    path: str | Path,
    *,
    duration: float | None = None,
    top_k: int = 20,
    title: str | None = None,
) -> Path:
    """Detections against the ground truth of one video, one row per class.

    Each row shows the ground-truth segments of the class as dark bars and, just below,
    the class's detections among the ``top_k`` highest-scoring ones of the video as bars
    coloured by score.

    Args:
        ground_truth / detections / duration / top_k: as `timeline_layout`.
        path: the PNG file to write.
        title: figure title.
    """
    layout = timeline_layout(ground_truth, detections, duration=duration, top_k=top_k)
    found, shown, row = layout.detections, layout.shown, layout.rows
    figure = Figure(figsize=(11, 1.2 + 0.6 * max(len(row), 1)), layout="constrained")
    ax = figure.subplots()
    for (start, end), label in zip(layout.truth_segments, layout.truth_labels):
        ax.broken_barh([(start, end - start)], (row[label] - 0.4, 0.38), color="0.15")
    for index in shown[::-1]:  # the best detections drawn last, on top
        start, end = found.segments[index]
        ax.broken_barh(
            [(start, end - start)],
            (row[found.labels[index]] + 0.02, 0.38),
            color=layout.colour(found.scores[index]),
            alpha=0.85,
        )
    ax.set_xlim(0, layout.end)
    ax.set_yticks(range(len(row)), [str(label) for label in row])
    ax.set_ylim(len(row) - 0.5, -0.5)
    ax.set_xlabel("time (s)")
    colour_bar = ScalarMappable(norm=layout.score_norm, cmap=colormaps[TIMELINE_PALETTE])
    figure.colorbar(colour_bar, ax=ax, label=f"score (top {len(shown)})")
    ax.set_title(title or "ground truth (dark, upper half of a row) and detections (coloured, lower half)")
    return _save(figure, path)
