"""The `evaluate` metric loads offline from its local directory and wraps `evaluate_detections`."""

import numpy as np
import pytest

from selfdetr_hf.evaluation import SELF_DETR_MAP_METRIC, evaluate_detections

PREDICTIONS = [
    {"segments": [[1.0, 5.0], [6.0, 9.0]], "scores": [0.9, 0.4], "labels": ["jump", "run"]},
    {"segments": [], "scores": [], "labels": []},
]
REFERENCES = [
    {"segments": [[1.0, 4.5]], "labels": ["jump"]},
    {"segments": [[0.0, 3.0]], "labels": ["run"]},
]


@pytest.fixture(scope="module")
def metric():
    evaluate = pytest.importorskip("evaluate")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
        yield evaluate.load(str(SELF_DETR_MAP_METRIC))


def test_metric_equals_evaluate_detections_over_batches(metric):
    for prediction, reference in zip(PREDICTIONS, REFERENCES):
        metric.add_batch(predictions=[prediction], references=[reference])
    result = metric.compute(tiou_thresholds=[0.5, 0.9])
    expected = evaluate_detections(dict(enumerate(REFERENCES)), dict(enumerate(PREDICTIONS)), [0.5, 0.9])
    np.testing.assert_allclose(result["mAP"], expected.mAP)
    assert result["average_mAP"] == pytest.approx(expected.average_mAP)
    assert result["per_class_AP"] == {name: ap.tolist() for name, ap in expected.per_class_AP.items()}
