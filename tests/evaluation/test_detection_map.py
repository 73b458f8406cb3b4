"""Detection mAP by the ActivityNet protocol (spec section 6)."""

import json

import numpy as np
import pytest
import torch

from selfdetr_hf.evaluation import (
    ACTIVITYNET_TIOU_THRESHOLDS,
    THUMOS14_TIOU_THRESHOLDS,
    evaluate_detections,
    interpolated_average_precision,
)


def entry(start, end, score, label="a"):
    return {"segment": [start, end], "score": score, "label": label}


def direct_average_precision(ground_truth, detections, thresholds):
    """The procedure written out detection by detection, threshold by threshold."""

    def tiou(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        union = (a[1] - a[0]) + (b[1] - b[0]) - inter
        return inter / union if union > 0 else 0.0

    classes = list(dict.fromkeys(label for record in ground_truth.values() for label in record["labels"]))
    result = {}
    for name in classes:
        ranked = [(video, e["segment"]) for video, es in detections.items() for e in es if e["label"] == name]
        scores = [e["score"] for es in detections.values() for e in es if e["label"] == name]
        ranked = [ranked[i] for i in sorted(range(len(ranked)), key=lambda i: -scores[i])]
        truth = {v: [s for s, l in zip(r["segments"], r["labels"]) if l == name] for v, r in ground_truth.items()}
        positives = sum(len(segments) for segments in truth.values())
        result[name] = []
        for threshold in thresholds:
            taken, hits = set(), []
            for video, segment in ranked:
                best, best_index = -1.0, None
                for index, other in enumerate(truth.get(video, [])):
                    value = tiou(segment, other)
                    if value >= threshold and (video, index) not in taken and value > best:
                        best, best_index = value, index
                hits.append(best_index is not None)
                if best_index is not None:
                    taken.add((video, best_index))
            precision = [0.0] + [sum(hits[: i + 1]) / (i + 1) for i in range(len(hits))] + [0.0]
            recall = [0.0] + [sum(hits[: i + 1]) / positives for i in range(len(hits))] + [1.0]
            for i in range(len(precision) - 2, -1, -1):
                precision[i] = max(precision[i], precision[i + 1])
            result[name].append(sum((recall[i] - recall[i - 1]) * precision[i] for i in range(1, len(recall))))
    return result


def test_presets_are_the_papers_thresholds():
    assert THUMOS14_TIOU_THRESHOLDS == (0.3, 0.4, 0.5, 0.6, 0.7)
    assert ACTIVITYNET_TIOU_THRESHOLDS == tuple(np.linspace(0.5, 0.95, 10))  # the official default


def test_interpolated_average_precision_hand_computed():
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: the envelope is 1 up to recall 1/2, then 2/3.
    ap = interpolated_average_precision(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]))
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_interpolated_average_precision_counts_missed_recall_as_zero():
    assert interpolated_average_precision(np.array([1.0]), np.array([0.25])) == pytest.approx(0.25)


def test_hand_computed_single_class():
    ground_truth = {"v": {"segments": [[0, 10], [20, 30]], "labels": ["a", "a"]}}
    detections = {"v": [entry(0, 10, 0.9), entry(0, 9, 0.8), entry(21, 30, 0.7)]}
    # At 0.5: TP, FP (its best ground truth is taken), TP -> AP = 1/2 * 1 + 1/2 * 2/3.
    # At 0.95: TP, FP, FP (tIoU 0.9) -> AP = 1/2.
    result = evaluate_detections(ground_truth, detections, [0.5, 0.95])
    assert result.mAP == pytest.approx([0.5 + 1 / 3, 0.5])
    assert result.average_mAP == pytest.approx((0.5 + 1 / 3 + 0.5) / 2)


def test_map_is_the_mean_over_classes_and_a_class_without_detections_scores_zero():
    ground_truth = {"v": {"segments": [[0, 10], [20, 30]], "labels": ["a", "b"]}}
    result = evaluate_detections(ground_truth, {"v": [entry(0, 10, 0.9, "a")]}, [0.5])
    assert result.per_class_AP["a"].tolist() == [1.0]
    assert result.per_class_AP["b"].tolist() == [0.0]
    assert result.mAP.tolist() == [0.5]


def test_detections_in_a_video_without_ground_truth_are_false_positives():
    ground_truth = {"v": {"segments": [[0, 10]], "labels": ["a"]}, "empty": {"segments": [], "labels": []}}
    detections = {"v": [entry(0, 10, 0.5)], "empty": [entry(0, 10, 0.9)], "unknown": [entry(0, 10, 0.8)]}
    # Ranked: FP, FP, TP -> precision 1/3 at recall 1.
    assert evaluate_detections(ground_truth, detections, [0.5]).mAP == pytest.approx([1 / 3])


def test_score_ties_keep_the_order_of_the_submission():
    ground_truth = {"v": {"segments": [[0, 10]], "labels": ["a"]}}
    hit, miss = entry(0, 10, 0.5), entry(50, 60, 0.5)
    assert evaluate_detections(ground_truth, {"v": [hit, miss]}, [0.5]).mAP.tolist() == [1.0]
    assert evaluate_detections(ground_truth, {"v": [miss, hit]}, [0.5]).mAP.tolist() == [0.5]


def test_tiou_ties_go_to_the_ground_truth_listed_first():
    # [1, 5] has tIoU 0.2 with both [0, 2] and [4, 6]; the later [0, 2] detection needs [0, 2].
    detections = {"v": [entry(1, 5, 0.9), entry(0, 2, 0.8)]}
    first = {"v": {"segments": [[0, 2], [4, 6]], "labels": ["a", "a"]}}
    second = {"v": {"segments": [[4, 6], [0, 2]], "labels": ["a", "a"]}}
    assert evaluate_detections(first, detections, [0.2]).mAP.tolist() == [0.5]
    assert evaluate_detections(second, detections, [0.2]).mAP.tolist() == [1.0]


def test_a_detection_takes_the_unmatched_ground_truth_with_the_highest_tiou():
    # [0, 10] overlaps [0, 10] fully and [0, 8] at 0.8; the second detection [0, 8] must find [0, 8] free.
    ground_truth = {"v": {"segments": [[0, 8], [0, 10]], "labels": ["a", "a"]}}
    detections = {"v": [entry(0, 10, 0.9), entry(0, 8, 0.8)]}
    assert evaluate_detections(ground_truth, detections, [0.9]).mAP.tolist() == [1.0]


def test_matches_the_procedure_written_out_on_random_inputs_with_ties():
    rng = np.random.default_rng(0)
    thresholds = [0.0, 0.3, 0.5, 0.7, 1.0]
    for _ in range(60):
        ground_truth = {}
        for video in range(rng.integers(1, 5)):
            count = int(rng.integers(0, 6))
            starts, widths = rng.integers(0, 10, count), rng.integers(1, 5, count)
            ground_truth[f"v{video}"] = {
                "segments": [[float(s), float(s + w)] for s, w in zip(starts, widths)],
                "labels": [f"c{c}" for c in rng.integers(0, 3, count)],
            }
        if not any(record["labels"] for record in ground_truth.values()):
            continue
        detections = {}
        for video in range(rng.integers(0, 6)):
            count = int(rng.integers(0, 12))
            starts, widths = rng.integers(0, 10, count), rng.integers(1, 5, count)
            scores, labels = rng.integers(0, 4, count) / 4, rng.integers(0, 3, count)
            detections[f"v{video}"] = [
                entry(float(s), float(s + w), float(p), f"c{c}") for s, w, p, c in zip(starts, widths, scores, labels)
            ]
        result = evaluate_detections(ground_truth, detections, thresholds)
        expected = direct_average_precision(ground_truth, detections, thresholds)
        for name, ap in expected.items():
            np.testing.assert_allclose(result.per_class_AP[name], ap, atol=1e-12)


def test_per_video_arrays_and_tensors_score_like_submission_entries():
    ground_truth = {"v": {"segments": np.array([[0.0, 10.0], [20.0, 30.0]]), "labels": ["a", "b"]}}
    entries = {"v": [entry(1, 10, 0.9, "a"), entry(22, 30, 0.3, "b"), entry(0, 5, 0.6, "b")]}
    arrays = {
        "v": {
            "segments": torch.tensor([[1.0, 10.0], [22.0, 30.0], [0.0, 5.0]]),
            "scores": torch.tensor([0.9, 0.3, 0.6]),
            "labels": ["a", "b", "b"],
        }
    }
    first = evaluate_detections(ground_truth, entries, THUMOS14_TIOU_THRESHOLDS)
    second = evaluate_detections(ground_truth, arrays, THUMOS14_TIOU_THRESHOLDS)
    np.testing.assert_allclose(first.mAP, second.mAP)


def test_no_detections_scores_zero():
    ground_truth = {"v": {"segments": [[0, 10]], "labels": ["a"]}}
    for detections in ({}, {"v": []}):
        result = evaluate_detections(ground_truth, detections, THUMOS14_TIOU_THRESHOLDS)
        assert result.mAP.tolist() == [0.0] * 5 and result.average_mAP == 0.0


def test_ground_truth_without_segments_is_an_error():
    with pytest.raises(ValueError, match="no segment"):
        evaluate_detections({"v": {"segments": [], "labels": []}}, {"v": [entry(0, 1, 0.5)]}, [0.5])


@pytest.mark.parametrize("thresholds", [[], [0.5, 1.5], [[0.5]]])
def test_bad_thresholds_are_an_error(thresholds):
    with pytest.raises(ValueError, match="tiou_thresholds"):
        evaluate_detections({"v": {"segments": [[0, 1]], "labels": ["a"]}}, {}, thresholds)


def test_detections_of_a_label_outside_the_ground_truth_are_counted_and_not_scored():
    ground_truth = {"v": {"segments": [[0, 10]], "labels": ["a"]}}
    detections = {"v": [entry(0, 10, 0.5, "a"), entry(0, 10, 0.9, "zzz")]}
    result = evaluate_detections(ground_truth, detections, [0.5])
    assert result.unscored_detections == 1
    assert list(result.per_class_AP) == ["a"] and result.mAP.tolist() == [1.0]


def test_a_detection_that_ends_before_it_starts_is_a_counted_false_positive():
    # As in the official code: it overlaps nothing, so tIoU 0 with every segment.
    ground_truth = {"v": {"segments": [[0, 10]], "labels": ["a"]}}
    detections = {"v": [entry(8, 2, 0.9), entry(0, 10, 0.5)]}
    result = evaluate_detections(ground_truth, detections, [0.3, 0.7])
    assert result.reversed_detections == 1
    assert result.mAP.tolist() == [0.5, 0.5]
    assert direct_average_precision(ground_truth, detections, [0.3, 0.7]) == {"a": [0.5, 0.5]}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"segment": [0, 1], "label": "a"}], "'score'"),
        ([entry(0, float("nan"), 0.5)], "finite"),
        ([{"segment": [0, 1, 2], "score": 0.5, "label": "a"}], "pairs"),
        ([entry(0, 1, "high")], "scores must be numbers"),
    ],
)
def test_a_malformed_detection_is_an_error_naming_the_video(entries, message):
    with pytest.raises(ValueError, match=f"video 'broken'.*{message}"):
        evaluate_detections({"v": {"segments": [[0, 1]], "labels": ["a"]}}, {"broken": entries}, [0.5])


def test_result_to_dict_is_json_with_fractions():
    ground_truth = {"v": {"segments": [[0, 10]], "labels": ["a"]}}
    result = evaluate_detections(ground_truth, {"v": [entry(0, 10, 0.5)]}, [0.5, 0.7]).to_dict()
    assert json.loads(json.dumps(result)) == {
        "tiou_thresholds": [0.5, 0.7],
        "mAP": [1.0, 1.0],
        "average_mAP": 1.0,
        "per_class_AP": {"a": [1.0, 1.0]},
    }


@pytest.fixture(scope="module")
def thumos14_test(shared_data):
    from selfdetr_hf.data import load_annotations

    return load_annotations(shared_data / "thumos14" / "thumos14.json", subset="Test", invalid_segments="keep")


def detections_from(ground_truth, shift_fraction=0.0, seed=0):
    """Every ground-truth segment as a detection, shifted by a fraction of its length, random scores."""
    rng = np.random.default_rng(seed)
    detections = {}
    for video, record in ground_truth.items():
        lengths = record.segments[:, 1] - record.segments[:, 0]
        detections[video] = [
            entry(start + shift_fraction * length, end + shift_fraction * length, float(rng.random()), label)
            for (start, end), length, label in zip(record.segments.tolist(), lengths, record.labels)
        ]
    return detections


def test_thumos14_ground_truth_scored_against_itself_is_perfect(thumos14_test):
    result = evaluate_detections(thumos14_test, detections_from(thumos14_test), ACTIVITYNET_TIOU_THRESHOLDS)
    assert result.mAP.tolist() == [1.0] * 10 and len(result.per_class_AP) == 20


def test_thumos14_segments_shifted_by_a_fifth_of_their_length_match_up_to_tiou_two_thirds(thumos14_test):
    # A shift by 0.2 L leaves tIoU 0.8 L / 1.2 L = 2/3.
    result = evaluate_detections(thumos14_test, detections_from(thumos14_test, 0.2), THUMOS14_TIOU_THRESHOLDS)
    assert result.mAP.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


def test_thumos14_result_does_not_depend_on_the_order_of_videos_and_entries(thumos14_test):
    rng = np.random.default_rng(1)
    detections = detections_from(thumos14_test, 0.3)
    for video in list(detections)[:40]:
        detections[video].append(entry(0.0, 5.0, float(rng.random()), "Diving"))
    shuffled = {}
    for video in rng.permutation(list(detections)):
        shuffled[video] = [detections[video][i] for i in rng.permutation(len(detections[video]))]
    first = evaluate_detections(thumos14_test, detections, THUMOS14_TIOU_THRESHOLDS)
    second = evaluate_detections(thumos14_test, shuffled, THUMOS14_TIOU_THRESHOLDS)
    assert first.mAP.tolist() == second.mAP.tolist()
    assert 0.0 < first.average_mAP < 1.0


def test_thumos14_jittered_detections_match_the_procedure_written_out(thumos14_test):
    rng = np.random.default_rng(2)
    subset = {video: thumos14_test[video] for video in list(thumos14_test)[:30]}
    ground_truth = {v: {"segments": r.segments.tolist(), "labels": r.labels} for v, r in subset.items()}
    detections = {}
    for video, record in subset.items():
        centers = record.segments.mean(1) + rng.normal(0, 1.0, len(record.labels))
        widths = (record.segments[:, 1] - record.segments[:, 0]) * rng.uniform(0.6, 1.4, len(record.labels))
        labels = [label if rng.random() < 0.8 else "Diving" for label in record.labels]
        detections[video] = [
            entry(c - w / 2, c + w / 2, round(float(rng.random()), 1), label)
            for c, w, label in zip(centers, widths, labels)
        ]
    result = evaluate_detections(ground_truth, detections, THUMOS14_TIOU_THRESHOLDS)
    expected = direct_average_precision(ground_truth, detections, THUMOS14_TIOU_THRESHOLDS)
    for name, ap in expected.items():
        np.testing.assert_allclose(result.per_class_AP[name], ap, atol=1e-12)
