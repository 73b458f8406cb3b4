"""What the page shows of one video's detections: an SVG timeline (hover a bar for its
label, score, start and end) and the rows of the detections table. Pure functions of the
detections; the layout and score colours are those of `plot_detection_timeline`."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from matplotlib.colors import to_hex

from ..evaluation.plots import timeline_layout

TABLE_HEADERS = ["rank", "label", "score", "start (s)", "end (s)"]

WIDTH = 1000  # SVG user units
LABEL_WIDTH = 130
ROW_HEIGHT = 34
DETECTION_HEIGHT = 16
TRUTH_HEIGHT = 8
AXIS_HEIGHT = 34


def detection_rows(detections: dict[str, Any]) -> list[list[Any]]:
    """One table row per detection, best first: rank, label, score, start, end (seconds)."""
    segments = detections["segments"].tolist()
    scores = detections["scores"].tolist()
    return [
        [rank, label, round(score, 4), round(start, 2), round(end, 2)]
        for rank, (label, score, (start, end)) in enumerate(zip(detections["label_names"], scores, segments), 1)
    ]


def _tick_step(end: float) -> float:
    """A round step giving 5 to 10 ticks over ``[0, end]``."""
    magnitude = 10 ** math.floor(math.log10(end / 5))
    return next(step * magnitude for step in (1, 2, 5, 10) if end / (step * magnitude) <= 10)


def timeline_svg(detections: dict[str, Any], ground_truth: Any | None = None, duration: float | None = None) -> str:
    """An SVG timeline of one video: a row per class, its detections as bars coloured by
    score (`TIMELINE_PALETTE`) with the ground truth, when known, as thin dark bars
    underneath; each bar's tooltip gives its label, score (detections), start and end.

    Args:
        detections: one video's result of `SelfDetrProcessor.post_process_action_detection`.
        ground_truth: the video's `VideoAnnotation` (or ``segments`` and ``labels``), or None.
        duration: the video length in seconds (end of the time axis); None: the latest end.
    """
    found = {"segments": detections["segments"], "scores": detections["scores"], "labels": detections["label_names"]}
    truth = ground_truth if ground_truth is not None else {"segments": [], "labels": []}
    layout = timeline_layout(truth, found, duration=duration, top_k=len(detections["scores"]))
    rows = max(len(layout.rows), 1)
    height = rows * ROW_HEIGHT + AXIS_HEIGHT
    scale = (WIDTH - LABEL_WIDTH - 10) / layout.end

    def x(seconds: float) -> float:
        return LABEL_WIDTH + max(0.0, min(seconds, layout.end)) * scale

    def bar(css_class: str, start: float, end: float, top: float, bar_height: float, fill: str, tooltip: str) -> str:
        return (
            f'<rect class="{css_class}" x="{x(start):.1f}" y="{top:.1f}" width="{max(x(end) - x(start), 1.5):.1f}" '
            f'height="{bar_height}" fill="{fill}" rx="2"><title>{escape(tooltip)}</title></rect>'
        )

    svg = (
        f'<svg class="selfdetr-timeline" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" font-family="sans-serif" font-size="12">'
    )
    parts = [svg]
    for label, row in layout.rows.items():
        top = row * ROW_HEIGHT
        parts.append(
            f'<rect x="{LABEL_WIDTH}" y="{top + 2}" width="{WIDTH - LABEL_WIDTH - 10}" height="{ROW_HEIGHT - 4}" fill="#f3f3f6"/>'
        )
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{top + ROW_HEIGHT / 2 + 4}" text-anchor="end">{escape(str(label))}</text>'
        )
    for (start, end), label in zip(layout.truth_segments.tolist(), layout.truth_labels):
        top = layout.rows[label] * ROW_HEIGHT + 6 + DETECTION_HEIGHT + 2
        parts.append(
            bar(
                "ground-truth",
                start,
                end,
                top,
                TRUTH_HEIGHT,
                "#262626",
                f"ground truth: {label}, {start:.2f}-{end:.2f} s",
            )
        )
    for index in layout.shown[::-1].tolist():  # the best detections drawn last, on top
        start, end = layout.detections.segments[index].tolist()
        label, score = layout.detections.labels[index], float(layout.detections.scores[index])
        top = layout.rows[label] * ROW_HEIGHT + 6
        colour = to_hex(layout.colour(score))
        parts.append(
            bar(
                "detection",
                start,
                end,
                top,
                DETECTION_HEIGHT,
                colour,
                f"{label}: score {score:.3f}, {start:.2f}-{end:.2f} s",
            )
        )
    axis = rows * ROW_HEIGHT + 4
    parts.append(f'<line x1="{LABEL_WIDTH}" y1="{axis}" x2="{WIDTH - 10}" y2="{axis}" stroke="#444"/>')
    step = _tick_step(layout.end)
    for tick in range(int(layout.end / step) + 1):
        seconds = tick * step
        parts.append(f'<line x1="{x(seconds):.1f}" y1="{axis}" x2="{x(seconds):.1f}" y2="{axis + 5}" stroke="#444"/>')
        parts.append(f'<text x="{x(seconds):.1f}" y="{axis + 18}" text-anchor="middle">{seconds:g}</text>')
    parts.append(f'<text x="{WIDTH - 10}" y="{axis + 30}" text-anchor="end">time (s)</text>')
    parts.append("</svg>")
    legend = (
        f"{len(layout.shown)} detections, coloured by score from {layout.score_norm.vmin:.3f} (dark) to "
        f"{layout.score_norm.vmax:.3f} (yellow)"
        + ("; ground truth as dark bars underneath" if len(layout.truth_labels) else "")
        + "; hover a bar for its label, score and times"
    )
    return f'<div class="selfdetr-timeline-legend">{escape(legend)}</div>' + "".join(parts)


__all__ = ["TABLE_HEADERS", "detection_rows", "timeline_svg"]
