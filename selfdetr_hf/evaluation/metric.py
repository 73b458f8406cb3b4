"""mAP for `transformers.Trainer`: a ``compute_metrics`` built from the processor and the
ground truth of the evaluation videos.

The windows of a video are scored together, after the processor has mapped them to
seconds and merged them, against the video's full annotations (not against the clipped
per-window labels the loss uses). Run the Trainer with ``remove_unused_columns=False`` (the
labels are lists of dicts); predictions may come concatenated (Trainer's default) or per
batch (``eval_do_concat_batches=False``), with the same result. The evaluation dataloader
keeps the dataset's order, which is the order of ``window_metadata``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .detection_map import THUMOS14_TIOU_THRESHOLDS, evaluate_detections


def build_compute_metrics(
    processor: Any,
    window_metadata: Sequence[Mapping[str, Any]],
    annotations: Mapping[str, Any],
    *,
    id2label: Mapping[int, str],
    tiou_thresholds: Sequence[float] = THUMOS14_TIOU_THRESHOLDS,
    classifier_scores: Mapping[str, Any] | None = None,
    classifier_id2label: Mapping[int, str] | Sequence[str] | None = None,
) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics(eval_prediction) -> {"mAP@<t>": ..., "average_mAP": ...}``.

    Args:
        processor: the `SelfDetrProcessor` that cut the evaluation windows.
        window_metadata: one dict per evaluation window, in dataset order
            (`selfdetr_hf.data.window_metadata(eval_dataset)`).
        annotations: ``{video_id: VideoAnnotation}`` of the evaluation videos (seconds),
            as the file holds them: ``load_annotations(..., invalid_segments="keep")``
            (the official protocol scores segments past a video's end as written).
        id2label: the model's class names (``model.config.id2label``), the names used in
            ``annotations``.
        tiou_thresholds: mAP thresholds (`THUMOS14_TIOU_THRESHOLDS` by default).
        classifier_scores / classifier_id2label: video-level classifier scores to fuse
            with (ActivityNet), passed on to `post_process_action_detection`.

    Returns:
        The function for ``Trainer(compute_metrics=...)``. It reads
        ``eval_prediction.predictions``: per batch ``(logits, pred_segments)`` (or the
        two concatenated), and returns the mAP at each threshold (key ``mAP@0.5`` etc.,
        fractions in [0, 1]) and ``average_mAP``; Trainer prefixes them with ``eval_``.
    """
    window_metadata = list(window_metadata)

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        detections = processor.post_process_action_detection(
            eval_prediction.predictions,
            window_metadata,
            id2label=id2label,
            classifier_scores=classifier_scores,
            classifier_id2label=classifier_id2label,
            by_video=True,
        )
        named = {
            video: {"segments": found["segments"], "scores": found["scores"], "labels": found["label_names"]}
            for video, found in detections.items()
        }
        result = evaluate_detections(annotations, named, tiou_thresholds)
        metrics = {f"mAP@{threshold:g}": float(value) for threshold, value in zip(result.tiou_thresholds, result.mAP)}
        metrics["average_mAP"] = result.average_mAP
        return metrics

    return compute_metrics
