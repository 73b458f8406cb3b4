"""Detection mAP by the ActivityNet protocol (spec section 6).

Per class, the detections of every video are pooled and sorted by score, highest first.
Walking down that list, a detection is a true positive at a tIoU threshold when, among
the ground-truth segments of its class in its video that no earlier detection took at
that threshold, the one with the highest tIoU reaches the threshold; that segment is then
taken. Everything else is a false positive. The AP of a class is the interpolated area
under its precision-recall curve (precision made monotone from the right, summed over
the recall changes); mAP is the mean over classes, and the summary number the mean of
mAP over thresholds.

This follows the official ActivityNet evaluation (``Evaluation/eval_detection.py``)
decision for decision:

- classes are the labels of the ground truth; a class without detections scores AP 0;
- detections in a video without ground truth of their class are false positives;
- score ties keep the order of the input (a stable sort on descending score), tIoU ties
  between ground-truth segments go to the one listed first. (The official code sorts
  with numpy's default, unstable ``argsort``, whose tie order depends on the array size
  and the CPU; a stable order makes the result reproducible.)

Segments are taken as given, like the official code does: a segment that ends before it
starts overlaps nothing, so its tIoU with every segment is 0 and such a detection is a
false positive at every threshold above 0 (`DetectionMAP.reversed_detections` counts
them); a ground-truth segment past the video's end is scored as written.

Where the official code crashes or divides 0 by 0, this module chooses:

- a detection whose label is no ground-truth class is not scored (the official code
  raises ``KeyError``); `DetectionMAP.unscored_detections` counts them;
- ground truth without any segment raises ``ValueError`` (nothing to score against);
- two segments whose lengths add up to 0 without overlapping (both the same point, or one
  ending before it starts by the other's length) have tIoU 0 (the official code computes
  0 / 0 and counts the detection as a true positive at every threshold).

The matching is sequential in score order, but only within one video: each class is
processed as one step per detection rank, every step handling the k-th detection of all
its videos at all thresholds at once.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

THUMOS14_TIOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
ACTIVITYNET_TIOU_THRESHOLDS: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())


@dataclass(frozen=True)
class DetectionMAP:
    """What `evaluate_detections` returns. Every AP is a fraction in [0, 1].

    Attributes:
        tiou_thresholds: ``(T,)`` the tIoU thresholds, in the order given.
        mAP: ``(T,)`` mean over classes of the AP at each threshold.
        average_mAP: mean of ``mAP`` over the thresholds.
        per_class_AP: class label -> ``(T,)`` AP, classes in order of first appearance in
            the ground truth.
        unscored_detections: detections whose label is not a ground-truth class.
        reversed_detections: detections that end before they start (scored, as false
            positives).
    """

    tiou_thresholds: np.ndarray
    mAP: np.ndarray
    average_mAP: float
    per_class_AP: dict[Hashable, np.ndarray]
    unscored_detections: int = 0
    reversed_detections: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"tiou_thresholds", "mAP", "average_mAP", "per_class_AP"}``."""
        return {
            "tiou_thresholds": self.tiou_thresholds.tolist(),
            "mAP": self.mAP.tolist(),
            "average_mAP": self.average_mAP,
            "per_class_AP": {str(name): ap.tolist() for name, ap in self.per_class_AP.items()},
        }

    def table(self) -> str:
        """Two text rows: the thresholds and the mAP in percent, with the average."""
        return map_table(self.tiou_thresholds, self.mAP, self.average_mAP)


def map_table(tiou_thresholds: Sequence[float], mAP: Sequence[float], average_mAP: float) -> str:
    """Two text rows: the thresholds and the mAP (fractions) in percent, with the average."""
    header = "tIoU     " + "".join(f"{t:>8.2f}" for t in tiou_thresholds) + "     avg"
    values = "mAP (%)  " + "".join(f"{100 * m:>8.2f}" for m in mAP) + f"{100 * average_mAP:>8.2f}"
    return f"{header}\n{values}"


@dataclass(frozen=True)
class VideoDetections:
    """The detections of one video as arrays.

    Attributes:
        segments: ``(n, 2)`` float64 (start, end), as given (an end before the start is kept).
        scores: ``(n,)`` float64 confidences.
        labels: ``n`` class labels (names, or ids for a class-agnostic model).
    """

    segments: np.ndarray
    scores: np.ndarray
    labels: list[Hashable]


def _field(value: Any, name: str) -> Any:
    return value[name] if isinstance(value, Mapping) else getattr(value, name)


def _segments_array(video: Hashable, segments: Any, what: str) -> np.ndarray:
    """Any ``(n, 2)`` array-like of numbers -> float64 ``(n, 2)``; ``ValueError`` naming the video."""
    try:
        array = np.asarray(segments, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} of video {video!r}: segments must be [start, end] numbers ({error})") from None
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{what} of video {video!r}: segments must be [start, end] pairs, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} of video {video!r}: segments must be finite")
    return array


def _labels_list(video: Hashable, labels: Any, count: int, what: str) -> list[Hashable]:
    labels = np.asarray(labels).tolist() if not isinstance(labels, (list, tuple)) else list(labels)
    if not isinstance(labels, list) or len(labels) != count:
        found = f"{len(labels)} labels" if isinstance(labels, list) else f"labels {labels!r}"
        raise ValueError(f"{what} of video {video!r}: {count} segments but {found}")
    try:
        for label in labels:
            hash(label)
    except TypeError:
        raise ValueError(f"{what} of video {video!r}: labels must be class names or ids") from None
    return labels


def to_video_detections(video: Hashable, detections: Any) -> VideoDetections:
    """Read one video's detections in either accepted form.

    Args:
        video: the video id, named in errors.
        detections: ActivityNet submission entries ``[{"segment": [s, e], "score": x,
            "label": name}, ...]``, or a mapping / object with ``segments`` ``(n, 2)``,
            ``scores`` ``(n,)`` and ``labels`` ``(n,)`` (lists, numpy arrays or tensors).

    Raises:
        ValueError: naming the video, when an entry is malformed.
    """
    if isinstance(detections, (list, tuple)):
        try:
            segments = [entry["segment"] for entry in detections]
            scores = [entry["score"] for entry in detections]
            labels = [entry["label"] for entry in detections]
        except (KeyError, TypeError, IndexError):
            raise ValueError(
                f"detections of video {video!r}: every entry needs 'segment', 'score' and 'label'"
            ) from None
    else:
        try:
            segments, scores, labels = (_field(detections, name) for name in ("segments", "scores", "labels"))
        except (KeyError, AttributeError, TypeError):
            raise ValueError(
                f"detections of video {video!r}: expected a list of entries or 'segments', 'scores', 'labels'"
            ) from None
    segments = _segments_array(video, segments, "detections")
    try:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"detections of video {video!r}: scores must be numbers") from None
    if len(scores) != len(segments) or not np.isfinite(scores).all():
        raise ValueError(f"detections of video {video!r}: need one finite score per segment")
    return VideoDetections(segments, scores, _labels_list(video, labels, len(segments), "detections"))


def ground_truth_arrays(video: Hashable, record: Any) -> tuple[np.ndarray, list[Hashable]]:
    """One video's ground truth -> ``(n, 2)`` float64 (start, end) segments and ``n`` labels.

    Args:
        video: the video id, named in errors.
        record: ``segments`` and ``labels`` as attributes (e.g. a
            `selfdetr_hf.data.VideoAnnotation`) or mapping keys.
    """
    try:
        segments, labels = _field(record, "segments"), _field(record, "labels")
    except (KeyError, AttributeError, TypeError):
        raise ValueError(f"ground truth of video {video!r}: expected 'segments' and 'labels'") from None
    segments = _segments_array(video, segments, "ground truth")
    return segments, _labels_list(video, labels, len(segments), "ground truth")


def _check_thresholds(tiou_thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    try:
        thresholds = np.asarray(tiou_thresholds, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"tiou_thresholds must be numbers, got {tiou_thresholds!r}") from None
    if thresholds.ndim != 1 or thresholds.size == 0:
        raise ValueError(f"tiou_thresholds must be a non-empty list of numbers, got {tiou_thresholds!r}")
    if not ((thresholds >= 0) & (thresholds <= 1)).all():
        raise ValueError(f"tiou_thresholds must lie in [0, 1], got {thresholds.tolist()}")
    return thresholds


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """Interpolated AP (VOC 2011 style, the ActivityNet ``interpolated_prec_rec``).

    The curve is extended with (recall 0, precision 0) in front and (recall 1,
    precision 0) at the end, precision is replaced by its running maximum from the
    right, and AP is the sum of precision times the recall increase at every step.

    Args:
        precision: ``(..., N)`` precision after each of N ranked detections.
        recall: ``(..., N)`` recall after each detection (non-decreasing).

    Returns:
        ``(...)`` average precision.
    """
    edge = np.zeros(precision.shape[:-1] + (1,))
    envelope = np.concatenate((edge, precision, edge), axis=-1)
    envelope = np.flip(np.maximum.accumulate(np.flip(envelope, -1), axis=-1), -1)
    recall = np.concatenate((edge, recall, edge + 1), axis=-1)
    return np.sum(np.diff(recall, axis=-1) * envelope[..., 1:], axis=-1)


def _tiou_with_segments(segments: np.ndarray, others: np.ndarray) -> np.ndarray:
    """tIoU of ``(N, 2)`` (start, end) segments with ``(N, G, 2)`` others -> ``(N, G)``.

    The formula of `selfdetr_hf.segment_ops.segment_iou`, in float64 numpy: on the
    many small arrays of a scoring run, torch's per-call overhead dominates.
    """
    inter = np.minimum(segments[:, None, 1], others[..., 1]) - np.maximum(segments[:, None, 0], others[..., 0])
    inter = inter.clip(min=0)
    union = (segments[:, 1] - segments[:, 0])[:, None] + (others[..., 1] - others[..., 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _rank_within_groups(groups: np.ndarray) -> np.ndarray:
    """``(N,)`` group ids -> ``(N,)`` position of each element among its group, in input order."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    run_lengths = np.diff(np.r_[starts, len(groups)])
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - np.repeat(starts, run_lengths)
    return rank


def _class_true_positives(
    det_video: np.ndarray,
    det_segments: np.ndarray,
    gt_video: np.ndarray,
    gt_segments: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """Greedy matching of one class.

    Args:
        det_video: ``(N,)`` video index of each detection, detections sorted by score.
        det_segments: ``(N, 2)`` (start, end).
        gt_video: ``(G,)`` video index of each ground-truth segment of the class.
        gt_segments: ``(G, 2)`` (start, end).
        thresholds: ``(T,)`` tIoU thresholds.

    Returns:
        ``(T, N)`` bool, True where the detection is a true positive at the threshold.
    """
    true_positive = np.zeros((len(thresholds), len(det_video)), dtype=bool)
    matchable = np.flatnonzero(np.isin(det_video, gt_video))  # detections in videos with ground truth
    if len(matchable) == 0:
        return true_positive
    videos, det_local, counts = np.unique(det_video[matchable], return_inverse=True, return_counts=True)
    # Videos with the most detections first: step k then only touches a prefix of them.
    by_count = np.argsort(-counts, kind="stable")
    local_index = np.empty_like(by_count)
    local_index[by_count] = np.arange(len(videos))
    det_local, counts = local_index[det_local], counts[by_count]
    det_rank = _rank_within_groups(det_local)
    slots = np.zeros((len(videos), int(counts[0])), dtype=np.int64)  # (V, K) index into matchable
    slots[det_local, det_rank] = np.arange(len(matchable))

    gt_kept = np.isin(gt_video, videos)
    gt_local = local_index[np.searchsorted(videos, gt_video[gt_kept])]
    gt_rank = _rank_within_groups(gt_local)
    gt_padded = np.zeros((len(videos), int(gt_rank.max()) + 1, 2))  # (V, G, 2)
    gt_padded[gt_local, gt_rank] = gt_segments[gt_kept]
    gt_valid = np.zeros(gt_padded.shape[:2], dtype=bool)
    gt_valid[gt_local, gt_rank] = True

    tiou = _tiou_with_segments(det_segments[matchable], gt_padded[det_local])  # (N', G)
    tiou[~gt_valid[det_local]] = -np.inf
    active = (counts[None, :] > np.arange(len(slots[0]))[:, None]).sum(1)  # (K,) videos with a k-th detection
    taken = np.zeros((len(thresholds),) + gt_valid.shape, dtype=bool)  # (T, V, G)
    for rank, num_active in enumerate(active):
        step = slots[:num_active, rank]  # (n,)
        step_tiou = tiou[step]  # (n, G)
        candidates = (step_tiou >= thresholds[:, None, None]) & ~taken[:, :num_active]  # (T, n, G)
        best = np.where(candidates, step_tiou, -np.inf).argmax(-1)  # (T, n), first of tied maxima
        hit = candidates.any(-1)  # (T, n)
        threshold_index, video_index = np.nonzero(hit)
        taken[threshold_index, video_index, best[threshold_index, video_index]] = True
        true_positive[:, matchable[step]] = hit
    return true_positive


def evaluate_detections(
    ground_truth: Mapping[Hashable, Any],
    detections: Mapping[Hashable, Any],
    tiou_thresholds: Sequence[float] | np.ndarray,
) -> DetectionMAP:
    """Detection mAP at several tIoU thresholds by the official ActivityNet procedure.

    Args:
        ground_truth: video id -> record with ``segments`` ``(n, 2)`` (start, end) and
            ``labels`` (n class names), as attributes (the records of
            `selfdetr_hf.data.load_annotations`) or mapping keys. Every video given is
            scored, including those without segments.
        detections: video id -> detections of the video: a list of ActivityNet
            submission entries ``{"segment": [s, e], "score": x, "label": name}`` (the
            ``"results"`` of a submission file), or ``segments`` ``(n, 2)``, ``scores``
            ``(n,)`` and ``labels`` ``(n,)`` arrays (a mapping, `VideoDetections`, ...).
            Times in the same unit as the ground truth.
        tiou_thresholds: ``(T,)`` thresholds in [0, 1], e.g. `THUMOS14_TIOU_THRESHOLDS`
            or `ACTIVITYNET_TIOU_THRESHOLDS`.

    Returns:
        `DetectionMAP`: mAP per threshold, AP per class and threshold, and the average.

    Raises:
        ValueError: for malformed input (naming the video), thresholds outside [0, 1], or
            ground truth without any segment.
    """
    thresholds = _check_thresholds(tiou_thresholds)
    video_index: dict[Hashable, int] = {}
    class_index: dict[Hashable, int] = {}
    gt_video, gt_class, gt_segments = [], [], []
    for video, record in ground_truth.items():
        video_index[video] = len(video_index)
        segments, labels = ground_truth_arrays(video, record)
        gt_video.append(np.full(len(segments), video_index[video]))
        gt_class.append([class_index.setdefault(label, len(class_index)) for label in labels])
        gt_segments.append(segments)
    if not class_index:
        raise ValueError("the ground truth has no segment: there is nothing to score against")
    gt_video, gt_segments = np.concatenate(gt_video), np.concatenate(gt_segments)
    gt_class = np.concatenate([np.asarray(c, dtype=np.int64) for c in gt_class])

    det_video, det_class, det_segments, det_scores = [], [], [], []
    for video, value in detections.items():
        parsed = to_video_detections(video, value)
        det_video.append(np.full(len(parsed.scores), video_index.setdefault(video, len(video_index))))
        det_class.append(np.asarray([class_index.get(label, -1) for label in parsed.labels], dtype=np.int64))
        det_segments.append(parsed.segments)
        det_scores.append(parsed.scores)
    det_video = np.concatenate(det_video or [np.zeros(0, dtype=np.int64)]).astype(np.int64)
    det_class = np.concatenate(det_class or [np.zeros(0, dtype=np.int64)])
    det_segments = np.concatenate(det_segments or [np.zeros((0, 2))])
    det_scores = np.concatenate(det_scores or [np.zeros(0)])

    det_order = np.lexsort((-det_scores, det_class))  # by class, then score descending, stable
    det_bounds = np.searchsorted(det_class[det_order], np.arange(len(class_index) + 1))
    gt_order = np.argsort(gt_class, kind="stable")
    gt_bounds = np.searchsorted(gt_class[gt_order], np.arange(len(class_index) + 1))
    ap = np.zeros((len(thresholds), len(class_index)))
    for class_id in range(len(class_index)):
        dets = det_order[det_bounds[class_id] : det_bounds[class_id + 1]]
        if len(dets) == 0:
            continue
        gts = gt_order[gt_bounds[class_id] : gt_bounds[class_id + 1]]
        true_positive = _class_true_positives(
            det_video[dets], det_segments[dets], gt_video[gts], gt_segments[gts], thresholds
        )
        tp_cumsum = np.cumsum(true_positive, axis=1, dtype=np.float64)  # (T, N)
        fp_cumsum = np.cumsum(~true_positive, axis=1, dtype=np.float64)
        precision = tp_cumsum / (tp_cumsum + fp_cumsum)
        ap[:, class_id] = interpolated_average_precision(precision, tp_cumsum / len(gts))

    mean_ap = ap.mean(axis=1)
    return DetectionMAP(
        tiou_thresholds=thresholds,
        mAP=mean_ap,
        average_mAP=float(mean_ap.mean()),
        per_class_AP={name: ap[:, index] for name, index in class_index.items()},
        unscored_detections=int((det_class < 0).sum()),
        reversed_detections=int((det_segments[:, 1] < det_segments[:, 0]).sum()),
    )
