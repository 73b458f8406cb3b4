"""The ``temporal-action-detection`` pipeline: feature arrays, feature files or videos in,
detections in seconds out.

Windowing and post-processing are the processor's (`SelfDetrProcessor`); every window of
every video of one call goes through the model in batches of ``batch_size`` windows. The
module imports only top-level modules of this package, so that ``pipe.save_pretrained``
can copy it, with them, into a folder that loads without the package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForObjectDetection, Pipeline

from .feature_files import EXTENSIONS, check_feature_shape, check_finite, load_feature_file

TASK = "temporal-action-detection"
DEFAULT_BATCH_SIZE = 16


class TemporalActionDetectionPipeline(Pipeline):
    """Temporal action detection with a Self-DETR model.

    ```python
    from transformers import pipeline
    import selfdetr_hf  # registers the task; a folder saved by the pipeline loads without it

    detector = pipeline("temporal-action-detection", model="runs/thumos14")
    detector(features, feature_fps=7.5)           # (T, C) array or tensor
    detector("i3d/video_test_0000004.npy", feature_fps=7.5, threshold=0.2, top_k=10)
    detector(["a.npy", features_b], feature_fps=7.5, batch_size=32)
    detector("kitchen.mp4")                        # `video` extra and `video_backbone` in the processor
    ```

    Each video gives a list of ``{"label", "score", "segment": [start, end]}`` (seconds), best
    score first; a list of inputs gives one such list per input, in order.

    Call parameters:
        feature_fps: feature steps per second of feature inputs (videos are timed by their extraction).
        time_offset: seconds of feature step 0 of feature inputs (default 0).
        threshold: detections scoring below it are dropped (default: the processor's ``min_score``).
        top_k: detections kept per video (default: the processor's ``top_k_per_video``).
        batch_size: windows per forward pass, over all videos of the call, and video clips per
            backbone forward pass, as `selfdetr detect --videos` batches them (default 16).
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            raise ValueError(f"the {TASK} pipeline needs the model's SelfDetrProcessor (feature_extractor=...)")
        self._video_backbone = None

    def __call__(self, inputs: Any, *, batch_size: int | None = None, **kwargs: Any) -> list[Any]:
        """Detections of one input (a list of dicts) or of a list of inputs (a list of such lists)."""
        windows_per_forward = batch_size if batch_size is not None else self._batch_size or DEFAULT_BATCH_SIZE
        if isinstance(windows_per_forward, bool) or not isinstance(windows_per_forward, int) or windows_per_forward < 1:
            raise ValueError(f"batch_size must be a positive integer; got {windows_per_forward!r}")
        videos = tuple(inputs) if isinstance(inputs, list) else (inputs,)
        if not videos:
            raise ValueError("no input: give a (T, C) array or tensor, a feature file, a video file, or a list of them")
        results = super().__call__(videos, windows_per_forward=windows_per_forward, **kwargs)  # one run for all
        return results if isinstance(inputs, list) else results[0]

    def _sanitize_parameters(
        self,
        feature_fps: float | None = None,
        time_offset: float | None = None,
        threshold: float | None = None,
        top_k: int | None = None,
        windows_per_forward: int | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        preprocess = {}
        for name, value in (("feature_fps", feature_fps), ("time_offset", time_offset)):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                    raise ValueError(f"{name} must be a finite number; got {value!r}")
                if value < 0 or (name == "feature_fps" and value == 0):
                    raise ValueError(f"{name} must be {'positive' if name == 'feature_fps' else '>= 0'}; got {value}")
                preprocess[name] = float(value)
        if windows_per_forward is not None:
            preprocess["clips_per_forward"] = windows_per_forward
        forward = {} if windows_per_forward is None else {"windows_per_forward": windows_per_forward}
        postprocess = {name: value for name, value in (("threshold", threshold), ("top_k", top_k)) if value is not None}
        return preprocess, forward, postprocess

    def preprocess(
        self,
        videos: tuple[Any, ...],
        feature_fps: float | None = None,
        time_offset: float | None = None,
        clips_per_forward: int = DEFAULT_BATCH_SIZE,
    ) -> dict[str, Any]:
        """The windows of every input: each read and checked (2-D, the model's channels, finite),
        then cut by the processor, each window with its place in its video in seconds."""
        features, rates, offsets, durations = [], [], [], []
        for index, video in enumerate(videos):
            name = _input_name(video, index)
            if isinstance(video, (str, os.PathLike)) and Path(video).suffix.lower() not in EXTENSIONS:
                array, rate, offset, duration = self._extract(Path(video), clips_per_forward)
            else:
                if isinstance(video, (str, os.PathLike)):
                    array = load_feature_file(video)
                elif isinstance(video, (np.ndarray, torch.Tensor)):
                    array = video.detach().cpu().float().numpy() if isinstance(video, torch.Tensor) else video
                else:
                    raise TypeError(
                        f"{name}: a {type(video).__name__}; give a (T, C) array or tensor, a feature file "
                        f"({', '.join(EXTENSIONS)}) or a video file"
                    )
                if feature_fps is None:
                    raise ValueError(f"{name}: feature_fps (feature steps per second) is needed to give seconds")
                rate, offset, duration = feature_fps, time_offset or 0.0, None
            check_feature_shape(array, name, _source(video), self.model.config.feature_dim)
            features.append(check_finite(np.asarray(array, dtype=np.float32), name, _source(video)))
            rates.append(rate)
            offsets.append(offset)
            durations.append(duration)
        return self.feature_extractor(
            features, feature_fps=rates, time_offset=offsets, durations=durations,
            video_ids=[str(index) for index in range(len(videos))], return_tensors="pt",
        )  # fmt: skip

    def _forward(self, model_inputs: dict[str, Any], windows_per_forward: int = DEFAULT_BATCH_SIZE) -> dict[str, Any]:
        """The model on every window, ``windows_per_forward`` at a time: ``(N, Nq, K)`` logits and
        ``(N, Nq, 2)`` segments, N the windows of the call."""
        features, mask = model_inputs["input_features"], model_inputs["attention_mask"]
        logits, segments = [], []
        for start in range(0, len(features), windows_per_forward):
            outputs = self.model(
                input_features=features[start : start + windows_per_forward],
                attention_mask=mask[start : start + windows_per_forward],
                return_dict=True,
            )
            logits.append(outputs.logits)
            segments.append(outputs.pred_segments)
        window_metadata = model_inputs["window_metadata"]
        return {"logits": torch.cat(logits), "pred_segments": torch.cat(segments), "window_metadata": window_metadata}

    def postprocess(
        self, model_outputs: dict[str, Any], threshold: float | None = None, top_k: int | None = None
    ) -> list[list[dict[str, Any]]]:
        """The processor's merged detections of each video as ``{"label", "score", "segment"}``."""
        found = self.feature_extractor.post_process_action_detection(
            model_outputs, model_outputs["window_metadata"], threshold=threshold, top_k=top_k,
            id2label=self.model.config.id2label,
        )  # fmt: skip
        return [
            [
                {"label": label, "score": score, "segment": segment}
                for label, score, segment in zip(
                    video["label_names"], video["scores"].tolist(), video["segments"].tolist()
                )
            ]
            for video in found
        ]

    def _extract(self, path: Path, clips_per_forward: int) -> tuple[np.ndarray, float, float, float]:
        """``(T, C)`` features of a video file by `selfdetr extract-features`' code, with the
        backbone, clip length and stride of the processor config, and their timing."""
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such video or feature file")
        processor = self.feature_extractor
        if processor.video_backbone is None:
            raise ValueError(
                f"{path}: the model's processor config names no video_backbone; give extracted features "
                f"({', '.join(EXTENSIONS)}) or set video_backbone in preprocessor_config.json"
            )
        try:
            from selfdetr_hf.features import VideoBackbone, extract_video
        except ImportError:
            raise ImportError(
                f"{path}: videos need the selfdetr_hf package with PyAV: pip install 'selfdetr_hf[video]'"
            ) from None
        if self._video_backbone is None:
            self._video_backbone = VideoBackbone.from_pretrained(processor.video_backbone, device=self.device)
        backbone = self._video_backbone
        if backbone.feature_dim != self.model.config.feature_dim:
            raise ValueError(
                f"the video_backbone {backbone.name} gives {backbone.feature_dim}-d features; "
                f"the model takes {self.model.config.feature_dim}-d"
            )
        features, metadata = extract_video(
            path, backbone, processor.video_clip_len, processor.video_stride, clips_per_forward
        )
        return features, metadata.feature_fps, metadata.time_offset, metadata.duration

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """`Pipeline.save_pretrained`: model, processor and this pipeline's code, loadable with
        ``pipeline(model=folder, trust_remote_code=True)`` where this package is not installed.

        transformers resolves a saved pipeline's model classes by name among its own, so the
        saved task names `AutoModelForObjectDetection`, which the model's ``auto_map`` maps to
        the detector. A pipeline loaded from such a folder saves the same way."""
        self._registered_impl = {TASK: {"impl": type(self), "pt": (AutoModelForObjectDetection,)}}
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            del self._registered_impl


def _input_name(video: Any, index: int) -> str:
    return str(video) if isinstance(video, (str, os.PathLike)) else f"input {index}"


def _source(video: Any) -> str:
    return str(video) if isinstance(video, (str, os.PathLike)) else f"a {type(video).__name__} given to the pipeline"


__all__ = ["TemporalActionDetectionPipeline"]
