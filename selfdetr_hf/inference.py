"""Detection with a trained model: feature sequences in, detections in seconds out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import FeatureFolder, check_finite, load_feature_file
from .data.dataset import FeatureSource, open_features
from .processing_self_detr import SelfDetrProcessor


def read_features(
    path: str | Path, *, layout: str = "TC", key: str | None = None, feature_dim: int | None = None
) -> dict[str, np.ndarray]:
    """``{video_id: (T, C) float32}`` from one feature file or a folder of them.

    The video id is the file name without its extension. Every file is checked (readable,
    2-D, non-empty, finite, ``C == feature_dim`` when given); a bad one is an error naming it.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".npy", ".npz", ".pt"))
        if not files:
            raise FileNotFoundError(f"{path}: no .npy, .npz or .pt feature files")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"{path}: no such feature file or folder")
    features = {}
    for file in files:
        array = np.asarray(load_feature_file(file, layout=layout, key=key), dtype=np.float32)
        if array.ndim != 2 or len(array) == 0:
            raise ValueError(f"{file}: features must be a non-empty (T, C) array; got shape {array.shape}")
        if feature_dim is not None and array.shape[1] != feature_dim:
            raise ValueError(f"{file}: {array.shape[1]} channels, the model expects {feature_dim}")
        features[file.stem] = check_finite(array, file.stem, str(file))
    return features


@torch.no_grad()
def detect(
    model: torch.nn.Module,
    processor: SelfDetrProcessor,
    features: FeatureSource,
    *,
    feature_fps: float | Mapping[str, float],
    video_ids: Sequence[str] | None = None,
    time_offset: float = 0.0,
    durations: Mapping[str, float] | None = None,
    batch_size: int = 16,
) -> dict[str, dict[str, Any]]:
    """Detections of every video, in seconds.

    Args:
        model: a `SelfDetrForActionDetection` (put in eval mode here).
        processor: its windowing and post-processing settings.
        features: ``{video_id: (T, C)}`` arrays, or a `FeatureFolder`.
        feature_fps: feature steps per second, one value or one per video.
        video_ids: which videos (default: every key of ``features``).
        time_offset: seconds of feature position 0 (half a clip for clip features).
        durations: video lengths in seconds (default: the span of the features).
        batch_size: windows per forward pass.

    Returns:
        ``{video_id: {"segments", "scores", "labels", "label_names"}}`` as
        `SelfDetrProcessor.post_process_action_detection(..., by_video=True)` returns.
    """
    if video_ids is None:
        if isinstance(features, FeatureFolder):
            raise ValueError("detect: give video_ids with a FeatureFolder")
        video_ids = list(features)
    model.eval()
    device = next(model.parameters()).device
    windows, metadata = [], []
    for video_id in video_ids:
        array, source = open_features(features, video_id)
        array = check_finite(np.asarray(array, dtype=np.float32), video_id, source)
        if array.ndim != 2 or array.shape[1] != model.config.feature_dim:
            raise ValueError(
                f"video {video_id!r} ({source}): features of shape {array.shape}, the model expects "
                f"(T, {model.config.feature_dim})"
            )
        fps = feature_fps[video_id] if isinstance(feature_fps, Mapping) else feature_fps
        duration = None if durations is None else [durations[video_id]]
        inputs = processor(
            array, feature_fps=fps, time_offset=time_offset, durations=duration, video_ids=[video_id], return_tensors="pt"
        )
        windows.extend(zip(inputs["input_features"], inputs["attention_mask"]))
        metadata.extend(inputs["window_metadata"])
    logits, segments = [], []
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        outputs = model(
            input_features=torch.stack([w for w, _ in chunk]).to(device),
            attention_mask=torch.stack([m for _, m in chunk]).to(device),
        )
        logits.append(outputs.logits.float().cpu())
        segments.append(outputs.pred_segments.float().cpu())
    predictions = {"logits": torch.cat(logits), "pred_segments": torch.cat(segments)}
    return processor.post_process_action_detection(predictions, metadata, id2label=model.config.id2label, by_video=True)


def as_submission(detections: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Processor output -> the form `write_submission` and `evaluate_detections` take
    (labels as class names)."""
    return {
        video_id: {"segments": found["segments"], "scores": found["scores"], "labels": found["label_names"]}
        for video_id, found in detections.items()
    }
