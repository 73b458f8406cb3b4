"""Pre- and post-processing for Self-DETR: windows over a video's features in, detections
in seconds out.

The processor owns every setting that turns a video into model inputs (sliding windows or
resizing) and model outputs into detections (top-k, window-to-video mapping, NMS or
Soft-NMS, per-video top-k, fusion with a video-level classifier). It is saved as
``preprocessor_config.json`` next to the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, FeatureExtractionMixin
from transformers.utils import TensorType

from .feature_files import check_finite
from .nms import nms, soft_nms
from .segment_ops import segment_cw_to_se
from .windows import (
    WINDOW_METADATA_KEYS,
    pad_window,
    position_to_seconds,
    resize_features,
    sliding_windows,
)

NMS_METHODS = ("nms", "soft_nms", "none")


class SelfDetrProcessor(FeatureExtractionMixin):
    r"""
    Constructs a Self-DETR processor: cuts a video's feature sequence into the model's windows
    (sliding windows or one resized window) and turns the model's outputs on those windows into
    detections in seconds, one result per video. Defaults are the THUMOS14 setting; see
    [`~SelfDetrProcessor.thumos14`] and [`~SelfDetrProcessor.activitynet`].

    Args:
        window_size (`int`, *optional*, defaults to 128):
            Sliding-window length in feature steps; `None` when `resize_length` is used instead.
        train_window_stride (`int`, *optional*, defaults to 32):
            Stride of training windows, in feature steps (overlap 0.75).
        test_window_stride (`int`, *optional*, defaults to 96):
            Stride of test windows, in feature steps (overlap 0.25).
        resize_length (`int`, *optional*):
            Resize every video's features to this many steps by linear interpolation (ActivityNet:
            192) instead of sliding windows. Exactly one of `window_size` and `resize_length` is set.
        min_segment_coverage (`float`, *optional*, defaults to 0.75):
            A ground-truth segment belongs to a training window when at least this fraction of it
            lies inside (it is then clipped to the window).
        top_k_per_window (`int`, *optional*, defaults to 200):
            Best (query, class) pairs kept per window.
        pre_nms_top_k (`int`, *optional*, defaults to 2000):
            Best candidates of a video (over all its windows) that enter the merging, as
            ActionFormer's `pre_nms_topk`; `None` keeps all.
        nms_method (`str`, *optional*, defaults to `"nms"`):
            How overlapping detections of one video are merged: `"nms"` (per class), `"soft_nms"`
            (Gaussian, per class) or `"none"`.
        nms_iou_threshold (`float`, *optional*, defaults to 0.4):
            NMS suppression threshold; for Soft-NMS the overlap above which scores decay.
        soft_nms_sigma (`float`, *optional*, defaults to 0.5):
            Gaussian width of Soft-NMS.
        min_score (`float`, *optional*, defaults to 0.0):
            Detections scoring below it are dropped; the default `threshold` of
            [`~SelfDetrProcessor.post_process_action_detection`].
        top_k_per_video (`int`, *optional*, defaults to 200):
            Detections kept per video after merging; the default `top_k` of
            [`~SelfDetrProcessor.post_process_action_detection`].
        fusion_top_k (`int`, *optional*, defaults to 2):
            Classes of an external video-level classifier combined with each detection when
            classifier scores are given.
        video_backbone (`str`, *optional*):
            The video model (Hub name or folder) whose features the model was trained on, as
            `selfdetr extract-features --backbone` takes it; the `temporal-action-detection` pipeline
            extracts features of video files with it. `None`: the pipeline takes features only.
        video_clip_len (`int`, *optional*, defaults to 16):
            Video frames per feature step of `video_backbone` (`extract-features --clip-len`).
        video_stride (`int`, *optional*, defaults to 4):
            Video frames between feature steps of `video_backbone` (`extract-features --stride`).

    Example:

    ```python
    >>> import numpy as np
    >>> import torch
    >>> from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrProcessor

    >>> processor = SelfDetrProcessor.thumos14()
    >>> config = SelfDetrConfig(feature_dim=64, d_model=32, num_attention_heads=4, ffn_dim=64, input_norm_groups=8)
    >>> model = SelfDetrForActionDetection(config).eval()

    >>> # two videos of 300 and 90 feature steps, 7.5 steps per second
    >>> videos = [np.random.randn(300, 64), np.random.randn(90, 64)]
    >>> inputs = processor(videos, feature_fps=7.5, video_ids=["kitchen", "garden"], return_tensors="pt")
    >>> inputs["input_features"].shape  # windows of 128 steps, 3 + 1 of them
    torch.Size([4, 128, 64])
    >>> window_metadata = inputs.pop("window_metadata")
    >>> with torch.no_grad():
    ...     outputs = model(**inputs)
    >>> results = processor.post_process_action_detection(outputs, window_metadata, threshold=0.1, top_k=10)
    >>> [result["video_id"] for result in results]
    ['kitchen', 'garden']
    >>> sorted(results[0])
    ['label_names', 'labels', 'scores', 'segments', 'video_id']
    ```
    """

    model_input_names = ["input_features", "attention_mask"]
    _auto_class = "AutoFeatureExtractor"  # save_pretrained copies this file and its imports, for remote code

    def __init__(
        self,
        window_size: int | None = 128,
        train_window_stride: int = 32,
        test_window_stride: int = 96,
        resize_length: int | None = None,
        min_segment_coverage: float = 0.75,
        top_k_per_window: int = 200,
        pre_nms_top_k: int | None = 2000,
        nms_method: str = "nms",
        nms_iou_threshold: float = 0.4,
        soft_nms_sigma: float = 0.5,
        min_score: float = 0.0,
        top_k_per_video: int = 200,
        fusion_top_k: int = 2,
        video_backbone: str | None = None,
        video_clip_len: int = 16,
        video_stride: int = 4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.window_size = window_size
        self.train_window_stride = train_window_stride
        self.test_window_stride = test_window_stride
        self.resize_length = resize_length
        self.min_segment_coverage = min_segment_coverage
        self.top_k_per_window = top_k_per_window
        self.pre_nms_top_k = pre_nms_top_k
        self.nms_method = nms_method
        self.nms_iou_threshold = nms_iou_threshold
        self.soft_nms_sigma = soft_nms_sigma
        self.min_score = min_score
        self.top_k_per_video = top_k_per_video
        self.fusion_top_k = fusion_top_k
        self.video_backbone = video_backbone
        self.video_clip_len = video_clip_len
        self.video_stride = video_stride
        self._check_values()

    @classmethod
    def thumos14(cls, **overrides: Any) -> SelfDetrProcessor:
        """THUMOS14: windows of 128 steps (train stride 32, test stride 96), per-window top
        200, per-class NMS at tIoU 0.4, per-video top 200."""
        return cls(**overrides)

    @classmethod
    def activitynet(cls, **overrides: Any) -> SelfDetrProcessor:
        """ActivityNet-v1.3: every video resized to 192 steps, Soft-NMS (sigma 0.75, tIoU
        threshold 0.1, min score 0.001), top 100 per video, top-2 classifier fusion."""
        settings = {
            "window_size": None,
            "resize_length": 192,
            "nms_method": "soft_nms",
            "nms_iou_threshold": 0.1,
            "soft_nms_sigma": 0.75,
            "min_score": 0.001,
            "top_k_per_video": 100,
            "fusion_top_k": 2,
        }
        return cls(**{**settings, **overrides})

    def _check_values(self) -> None:
        if (self.window_size is None) == (self.resize_length is None):
            raise ValueError(
                "SelfDetrProcessor needs exactly one of window_size (sliding windows) and resize_length "
                f"(resize whole videos); got window_size={self.window_size}, resize_length={self.resize_length}"
            )
        for name in (
            "window_size",
            "train_window_stride",
            "test_window_stride",
            "resize_length",
            "top_k_per_window",
            "pre_nms_top_k",
            "top_k_per_video",
            "fusion_top_k",
            "video_clip_len",
            "video_stride",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"SelfDetrProcessor.{name} must be a positive integer; got {value!r}")
        if self.nms_method not in NMS_METHODS:
            raise ValueError(
                f"SelfDetrProcessor.nms_method must be one of {', '.join(NMS_METHODS)}; got {self.nms_method!r}"
            )
        if not 0.0 < self.min_segment_coverage <= 1.0:
            raise ValueError(
                f"SelfDetrProcessor.min_segment_coverage must lie in (0, 1]; got {self.min_segment_coverage}"
            )
        if self.soft_nms_sigma <= 0:
            raise ValueError(f"SelfDetrProcessor.soft_nms_sigma must be > 0; got {self.soft_nms_sigma}")

    def windows(self, num_steps: int, *, training: bool) -> np.ndarray:
        """``(n, 2)`` int64 ``(offset, length)`` windows over a video of ``num_steps`` steps."""
        if self.resize_length is not None:
            return np.array([[0, num_steps]], dtype=np.int64)
        stride = self.train_window_stride if training else self.test_window_stride
        return sliding_windows(num_steps, self.window_size, stride)

    def window_inputs(self, features: Any, offset: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs of one window of a ``(T, C)`` array-like.

        Returns:
            ``(R, C)`` float32 features and ``(R,)`` int64 attention mask, R = `window_size`
            (zero-padded, mask 0 on padding) or `resize_length` (interpolated, all valid).
        """
        window = np.asarray(features[offset : offset + length], dtype=np.float32)
        if self.resize_length is not None:
            return resize_features(window, self.resize_length), np.ones(self.resize_length, dtype=np.int64)
        return pad_window(window, self.window_size)

    def __call__(
        self,
        features: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor],
        *,
        feature_fps: float | Sequence[float] | None = None,
        time_offset: float | Sequence[float] | None = None,
        durations: Sequence[float] | None = None,
        video_ids: Sequence[str] | None = None,
        return_tensors: str | TensorType | None = None,
    ) -> BatchFeature:
        """
        Cut the features of one or several videos into test windows.

        Args:
            features (`np.ndarray`, `torch.Tensor` or a list of them):
                The `(T, C)` features of one video, or one such array per video (any `T`).
            feature_fps (`float` or `list[float]`, *optional*):
                Feature steps per second, one value or one per video. Needed only to map detections
                back to seconds: with it the output has `window_metadata`; without it, only the model
                inputs.
            time_offset (`float` or `list[float]`, *optional*, defaults to 0.0):
                Seconds of feature step 0 (half a clip for clip features), one value or one per video;
                only with `feature_fps`.
            durations (`list[float]`, *optional*):
                Video lengths in seconds (`None` entries: the span of that video's features); defaults to the
                span of the features. Only with `feature_fps`.
            video_ids (`list[str]`, *optional*):
                Distinct names of the videos; defaults to `"0"`, `"1"`, ...
            return_tensors (`str` or [`~utils.TensorType`], *optional*):
                `"pt"` for PyTorch tensors, `"np"` or `None` (default) for NumPy arrays.

        Returns:
            [`BatchFeature`]: with
            - **input_features** -- `(num_windows, window_length, C)` float32 window features, zero-padded
              (`window_length` is `window_size`, or `resize_length` when resizing).
            - **attention_mask** -- `(num_windows, window_length)` int64, 1 on valid steps, 0 on padding.
            - **window_metadata** -- only when `feature_fps` is given: one dict per window with the keys of
              `WINDOW_METADATA_KEYS`, for [`~SelfDetrProcessor.post_process_action_detection`]; pop it before
              calling the model.
        """
        videos = [features] if _is_single_video(features) else list(features)
        count = len(videos)
        video_ids = [str(index) for index in range(count)] if video_ids is None else [str(v) for v in video_ids]
        if len(video_ids) != count:
            raise ValueError(f"{count} videos but {len(video_ids)} video_ids")
        if len(set(video_ids)) != count:
            repeated = sorted({video_id for video_id in video_ids if video_ids.count(video_id) > 1})
            raise ValueError(f"video_ids must be distinct; repeated: {', '.join(repeated)}")
        if feature_fps is None and (time_offset is not None or durations is not None):
            raise ValueError("time_offset and durations place windows in seconds and need feature_fps")
        if durations is not None and len(durations) != count:
            raise ValueError(f"durations: {len(durations)} values for {count} videos")
        inputs, masks, windows = [], [], []
        for index, (video_id, video) in enumerate(zip(video_ids, videos)):
            video = np.asarray(video, dtype=np.float32)
            if video.ndim != 2 or len(video) == 0:
                raise ValueError(f"video {video_id!r}: features must be a non-empty (T, C) array; got {video.shape}")
            check_finite(video, video_id, "features passed to the processor")
            for offset, length in self.windows(len(video), training=False):
                window, mask = self.window_inputs(video, offset, length)
                inputs.append(window)
                masks.append(mask)
                windows.append((video_id, int(offset), int(length), len(video), index))
        data = {"input_features": np.stack(inputs), "attention_mask": np.stack(masks)}
        if feature_fps is not None:
            data["window_metadata"] = _window_metadata(windows, feature_fps, time_offset, durations, count)
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=["window_metadata"])

    def post_process_action_detection(
        self,
        outputs: Any,
        window_metadata: Sequence[Mapping[str, Any]],
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        id2label: Mapping[int, str] | None = None,
        classifier_scores: Mapping[str, Any] | None = None,
        classifier_id2label: Mapping[int, str] | Sequence[str] | None = None,
        by_video: bool = False,
    ) -> list[dict[str, Any]] | dict[str, dict[str, Any]]:
        """
        Turn the outputs of many windows of many videos into detections in seconds, one result per video.

        Steps: sigmoid scores; the `top_k_per_window` best (query, class) pairs per window; segments mapped
        from window coordinates to seconds (clipped to the video); the `pre_nms_top_k` best of all windows of a
        video merged by `nms_method` (per class) after dropping those below `threshold`; the `top_k` best kept;
        optionally fused with a video-level classifier (`fusion_top_k` classes per detection, score
        `sqrt(class score * detection score)`).

        Args:
            outputs ([`SelfDetrActionDetectionOutput`], `dict`, `tuple` or `list`):
                Model outputs with `logits` `(num_windows, num_queries, num_labels)` and `pred_segments`
                `(num_windows, num_queries, 2)`: a model output, a dict, a `(logits, pred_segments)` pair as
                `Trainer.predict` returns (concatenated or not), or a list of those for consecutive batches, on any
                device (post-processing runs on the CPU).
            window_metadata (`list[dict]`):
                One dict per window, in the order of the outputs, with the keys of `WINDOW_METADATA_KEYS`: the
                `window_metadata` the processor returned, or `selfdetr_hf.data.window_metadata(dataset)`.
            threshold (`float`, *optional*):
                Detections scoring below it are dropped (before merging, and after Soft-NMS decay); defaults to
                `min_score`.
            top_k (`int`, *optional*):
                Detections kept per video; defaults to `top_k_per_video`.
            id2label (`dict[int, str]`, *optional*):
                Class names of the model (e.g. `model.config.id2label`); `LABEL_<id>` otherwise.
            classifier_scores (`dict[str, array]`, *optional*):
                `{video_id: (num_classifier_classes,) class probabilities}` of an external video-level classifier;
                when given, labels are the classifier's classes.
            classifier_id2label (`dict[int, str]` or `list[str]`, *optional*):
                Names of the classifier's classes.
            by_video (`bool`, *optional*, defaults to `False`):
                Return `{video_id: result}` (the result without its `video_id`) instead of a list.

        Returns:
            `list[dict]`: one dict per video, in the order the videos first appear in `window_metadata` (the
            order of the videos given to the processor), with
            - **video_id** (`str`) -- the video.
            - **segments** (`torch.Tensor` of shape `(n, 2)`) -- (start, end) in seconds, best first.
            - **scores** (`torch.Tensor` of shape `(n,)`) -- detection scores in [0, 1], descending.
            - **labels** (`torch.Tensor` of shape `(n,)`) -- class ids (int64).
            - **label_names** (`list[str]`) -- class names.

        Example:

        ```python
        >>> import torch
        >>> from selfdetr_hf import SelfDetrProcessor

        >>> processor = SelfDetrProcessor.thumos14()
        >>> logits = torch.full((1, 2, 3), -20.0)  # one window, 2 queries, 3 classes
        >>> logits[0, 0, 1] = 2.0  # query 0: class 1, probability 0.88
        >>> pred_segments = torch.tensor([[[0.5, 0.25], [0.1, 0.1]]])  # normalised (center, width)
        >>> metadata = [{"video_id": "kitchen", "window_offset": 0, "window_length": 128,
        ...              "feature_fps": 4.0, "time_offset": 0.0, "duration": 40.0}]
        >>> outputs = {"logits": logits, "pred_segments": pred_segments}
        >>> results = processor.post_process_action_detection(outputs, metadata, threshold=0.5, top_k=5)
        >>> results[0]["video_id"], results[0]["segments"], results[0]["labels"]
        ('kitchen', tensor([[12., 20.]]), tensor([1]))
        >>> processor.post_process_action_detection(outputs, metadata, threshold=0.5, by_video=True)["kitchen"]["scores"]
        tensor([0.8808])
        ```
        """
        threshold = self.min_score if threshold is None else threshold
        top_k = self.top_k_per_video if top_k is None else top_k
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a score in [0, 1]; got {threshold!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer; got {top_k!r}")
        logits, pred_segments = (tensor.detach().cpu() for tensor in _logits_and_segments(outputs))
        if len(window_metadata) != len(logits):
            raise ValueError(f"{len(logits)} windows of outputs but {len(window_metadata)} window_metadata entries")
        segments, scores, labels = self._window_detections(logits, pred_segments, window_metadata)

        window_videos = [entry["video_id"] for entry in window_metadata]
        video_ids = list(dict.fromkeys(window_videos))
        row_of = {video_id: row for row, video_id in enumerate(video_ids)}
        video_index = torch.tensor([row_of[video_id] for video_id in window_videos], dtype=torch.long)
        segments, scores, labels = _group_by_video(video_index, len(video_ids), segments, scores, labels)
        segments, scores, labels = self._merge_overlaps(segments, scores, labels, threshold, top_k)  # (V, M, ...)
        best_scores, best = scores.topk(min(top_k, scores.shape[1]), dim=1)  # (V, k')

        names = _names(classifier_id2label if classifier_scores is not None else id2label)
        results = {}
        for row, video_id in enumerate(video_ids):
            found = best[row][best_scores[row] > 0]
            detection = {"segments": segments[row, found], "scores": scores[row, found], "labels": labels[row, found]}
            if classifier_scores is not None:
                detection = self._fuse_with_classifier(detection, video_id, classifier_scores)
            detection["label_names"] = [names(label) for label in detection["labels"].tolist()]
            results[video_id] = detection
        if by_video:
            return results
        return [{"video_id": video_id, **detection} for video_id, detection in results.items()]

    def _window_detections(
        self, logits: torch.Tensor, pred_segments: torch.Tensor, window_metadata: Sequence[Mapping[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The `top_k_per_window` best (query, class) pairs of every window, in seconds.

        Args:
            logits: ``(N, Nq, K)``; pred_segments: ``(N, Nq, 2)`` normalised (center, width).

        Returns:
            ``(N, k, 2)`` (start, end) seconds clipped to ``[0, duration]``, ``(N, k)``
            scores, ``(N, k)`` class ids.
        """
        num_classes = logits.shape[-1]
        scores = logits.float().sigmoid().flatten(1)  # (N, Nq * K)
        top_scores, top_index = scores.topk(min(self.top_k_per_window, scores.shape[1]), dim=1)  # (N, k)
        query = (top_index // num_classes)[..., None].expand(-1, -1, 2)
        window_segments = segment_cw_to_se(pred_segments.float().gather(1, query)).clamp(0, 1)  # (N, k, 2)

        window_offset, window_length, feature_fps, time_offset, duration = (
            torch.tensor([entry[key] for entry in window_metadata], dtype=torch.float64)[:, None, None]
            for key in WINDOW_METADATA_KEYS[1:]
        )  # each (N, 1, 1)
        position = window_offset + window_segments.double() * window_length
        seconds = position_to_seconds(position, feature_fps, time_offset).clamp(min=0)
        return torch.minimum(seconds, duration).float(), top_scores, top_index % num_classes

    def _merge_overlaps(
        self, segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, threshold: float, top_k: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The `pre_nms_top_k` best candidates of each video, rescored by ``threshold`` and the
        per-class `nms_method` (at most ``top_k`` kept): ``(V, M, 2)``, ``(V, M)``, ``(V, M)`` in
        and out (M capped)."""
        if self.pre_nms_top_k is not None and scores.shape[1] > self.pre_nms_top_k:
            scores, best = scores.topk(self.pre_nms_top_k, dim=1)
            segments, labels = segments.gather(1, best[..., None].expand(-1, -1, 2)), labels.gather(1, best)
        scores = torch.where(scores >= threshold, scores, 0.0)
        if self.nms_method == "nms":
            scores = nms(segments, scores, self.nms_iou_threshold, labels=labels, max_segments=top_k)
        elif self.nms_method == "soft_nms":
            scores = soft_nms(
                segments,
                scores,
                sigma=self.soft_nms_sigma,
                iou_threshold=self.nms_iou_threshold,
                min_score=threshold,
                labels=labels,
                max_segments=top_k,
            )
        return segments, scores, labels

    def _fuse_with_classifier(
        self, detection: dict[str, torch.Tensor], video_id: str, classifier_scores: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Each detection x the `fusion_top_k` best classifier classes, score sqrt(class x detection)."""
        if video_id not in classifier_scores:
            raise ValueError(f"video {video_id!r}: no entry in classifier_scores")
        class_scores = torch.as_tensor(np.asarray(classifier_scores[video_id], dtype=np.float32)).flatten()
        top_class_scores, top_classes = class_scores.topk(min(self.fusion_top_k, len(class_scores)))
        fused = torch.sqrt(detection["scores"][:, None] * top_class_scores[None, :]).flatten()  # (n * k_c,)
        order = fused.argsort(descending=True, stable=True)
        num_classes = len(top_classes)
        return {
            "segments": detection["segments"].repeat_interleave(num_classes, dim=0)[order],
            "scores": fused[order],
            "labels": top_classes.repeat(len(detection["scores"]))[order],
        }


def _is_single_video(features: Any) -> bool:
    return isinstance(features, (np.ndarray, torch.Tensor)) and features.ndim == 2


def _window_metadata(
    windows: Sequence[tuple[str, int, int, int, int]],
    feature_fps: float | Sequence[float],
    time_offset: float | Sequence[float] | None,
    durations: Sequence[float] | None,
    count: int,
) -> list[dict[str, Any]]:
    """One `WINDOW_METADATA_KEYS` dict per ``(video_id, offset, length, num_steps, video index)`` window."""
    rates = _per_video(feature_fps, count, "feature_fps")
    offsets = _per_video(0.0 if time_offset is None else time_offset, count, "time_offset")
    metadata = []
    for video_id, offset, length, num_steps, index in windows:
        known = durations is not None and durations[index] is not None
        duration = float(durations[index]) if known else num_steps / rates[index] + offsets[index]
        values = (video_id, offset, length, rates[index], offsets[index], duration)
        metadata.append(dict(zip(WINDOW_METADATA_KEYS, values)))
    return metadata


def _per_video(value: float | Sequence[float], count: int, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * count
    if len(value) != count:
        raise ValueError(f"{name}: {len(value)} values for {count} videos")
    return [float(item) for item in value]


def _logits_and_segments(outputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, Nq, K)`` logits and ``(N, Nq, 2)`` segments from any of the accepted forms."""
    if isinstance(outputs, Mapping):
        return torch.as_tensor(outputs["logits"]), torch.as_tensor(outputs["pred_segments"])
    if hasattr(outputs, "logits") and hasattr(outputs, "pred_segments"):
        return torch.as_tensor(outputs.logits), torch.as_tensor(outputs.pred_segments)
    if (
        isinstance(outputs, (list, tuple))
        and len(outputs) == 2
        and all(isinstance(item, (np.ndarray, torch.Tensor)) for item in outputs)
    ):
        return torch.as_tensor(outputs[0]), torch.as_tensor(outputs[1])
    if isinstance(outputs, (list, tuple)) and outputs:
        parts = [_logits_and_segments(batch) for batch in outputs]
        return torch.cat([logits for logits, _ in parts]), torch.cat([segments for _, segments in parts])
    raise TypeError(
        "outputs must have logits and pred_segments (model outputs, a dict, a (logits, pred_segments) pair, "
        f"or a list of those); got {type(outputs).__name__}"
    )


def _group_by_video(
    video_index: torch.Tensor, num_videos: int, segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather the candidates of all windows of each video into one padded row per video.

    Args:
        video_index: ``(N,)`` video of every window.
        segments / scores / labels: ``(N, k, 2)`` / ``(N, k)`` / ``(N, k)`` per window.

    Returns:
        ``(V, M, 2)``, ``(V, M)``, ``(V, M)``, M the most candidates of a video; padding
        has score 0.
    """
    per_window = scores.shape[1]
    order = torch.argsort(video_index, stable=True)  # windows grouped by video
    candidate_video = video_index[order].repeat_interleave(per_window)  # (N * k,)
    counts = torch.bincount(candidate_video, minlength=num_videos)
    slot = torch.arange(len(candidate_video)) - (counts.cumsum(0) - counts)[candidate_video]
    size = (num_videos, int(counts.max()))
    grouped_segments = segments.new_zeros((*size, 2))
    grouped_scores = scores.new_zeros(size)
    grouped_labels = labels.new_zeros(size)
    grouped_segments[candidate_video, slot] = segments[order].reshape(-1, 2)
    grouped_scores[candidate_video, slot] = scores[order].reshape(-1)
    grouped_labels[candidate_video, slot] = labels[order].reshape(-1)
    return grouped_segments, grouped_scores, grouped_labels


def _names(id2label: Mapping[int, str] | Sequence[str] | None) -> Callable[[int], str]:
    """A function from class id to name; ``LABEL_<id>`` where no name is given."""
    if id2label is None:
        return lambda label: f"LABEL_{label}"
    table = dict(enumerate(id2label)) if isinstance(id2label, Sequence) else {int(k): v for k, v in id2label.items()}
    return lambda label: table.get(label, f"LABEL_{label}")


__all__ = ["SelfDetrProcessor"]
