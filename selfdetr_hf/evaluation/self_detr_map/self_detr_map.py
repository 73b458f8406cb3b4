"""`evaluate` metric: temporal action detection mAP by the ActivityNet protocol.

A thin wrapper around `selfdetr_hf.evaluation.evaluate_detections`. Load it offline from
its directory: ``evaluate.load(str(selfdetr_hf.evaluation.SELF_DETR_MAP_METRIC))``.
"""

import datasets
import evaluate

from selfdetr_hf.evaluation import THUMOS14_TIOU_THRESHOLDS, evaluate_detections

_DESCRIPTION = """
Detection mAP of temporal action detection at several tIoU thresholds, computed exactly as
the official ActivityNet evaluation does: per class, detections sorted by score are matched
greedily to the unmatched ground truth of the same video with the highest tIoU at or above
the threshold, and AP is the interpolated area under the precision-recall curve.
"""

_KWARGS_DESCRIPTION = """
Each example is one video.

Args:
    predictions: per video, `segments` (n, 2) (start, end), `scores` (n,), `labels` (n,) class names.
    references: per video, `segments` (m, 2) (start, end) and `labels` (m,) class names, in the
        same time unit as the predictions.
    tiou_thresholds: list of tIoU thresholds in [0, 1] (default: THUMOS14, 0.3:0.1:0.7).

Returns:
    tiou_thresholds: the thresholds.
    mAP: mAP at each threshold, fractions in [0, 1].
    average_mAP: mean of mAP over the thresholds.
    per_class_AP: class name -> AP at each threshold.

Example:
    >>> import evaluate
    >>> from selfdetr_hf.evaluation import SELF_DETR_MAP_METRIC
    >>> metric = evaluate.load(str(SELF_DETR_MAP_METRIC))
    >>> metric.compute(
    ...     predictions=[{"segments": [[1.0, 5.0]], "scores": [0.9], "labels": ["jump"]}],
    ...     references=[{"segments": [[1.0, 5.0]], "labels": ["jump"]}],
    ... )["average_mAP"]
    1.0
"""

_CITATION = """
@inproceedings{kim2023selfdetr,
  title={Self-Feedback DETR for Temporal Action Detection},
  author={Kim, Jihwan and Lee, Miso and Heo, Jae-Pil},
  booktitle={ICCV},
  year={2023}
}
"""

_SEGMENTS = datasets.List(datasets.List(datasets.Value("float64")))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SelfDetrMap(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {
                        "segments": _SEGMENTS,
                        "scores": datasets.List(datasets.Value("float64")),
                        "labels": datasets.List(datasets.Value("string")),
                    },
                    "references": {"segments": _SEGMENTS, "labels": datasets.List(datasets.Value("string"))},
                }
            ),
            reference_urls=["https://github.com/activitynet/ActivityNet/tree/master/Evaluation"],
        )

    def _compute(self, predictions, references, tiou_thresholds=THUMOS14_TIOU_THRESHOLDS):
        ground_truth = dict(enumerate(references))
        detections = dict(enumerate(predictions))
        return evaluate_detections(ground_truth, detections, tiou_thresholds).to_dict()
