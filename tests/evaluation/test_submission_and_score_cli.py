"""ActivityNet submission files, `score_submission` and ``selfdetr score`` end to end."""

import json

import numpy as np
import pytest

from selfdetr_hf.cli import main
from selfdetr_hf.evaluation import (
    THUMOS14_TIOU_THRESHOLDS,
    evaluate_detections,
    read_submission,
    score_submission,
    write_submission,
)

GROUND_TRUTH = {
    "version": "test",
    "database": {
        "v1": {
            "subset": "Test",
            "duration": 40.0,
            "fps": 30.0,
            "annotations": [{"label": "jump", "segment": [1.0, 9.0]}, {"label": "run", "segment": [20.0, 30.0]}],
        },
        "v2": {"subset": "Test", "duration": 20.0, "fps": 30.0, "annotations": [{"label": "jump", "segment": [2, 6]}]},
        "v3": {"subset": "Validation", "duration": 9.0, "fps": 30.0, "annotations": []},
    },
}
DETECTIONS = {
    "v1": {
        "segments": [[1.0, 8.0], [21.0, 30.0], [0.0, 3.0]],
        "scores": [0.9, 0.8, 0.7],
        "labels": ["jump", "run", "run"],
    },
    "v2": {"segments": [[2.5, 6.0]], "scores": [0.6], "labels": ["jump"]},
    "v3": {"segments": [[0.0, 9.0]], "scores": [0.95], "labels": ["jump"]},
}


@pytest.fixture
def files(tmp_path):
    annotations, submission = tmp_path / "gt.json", tmp_path / "submission.json"
    annotations.write_text(json.dumps(GROUND_TRUTH))
    write_submission(submission, DETECTIONS)
    return annotations, submission


def test_written_submission_has_the_activitynet_fields(files):
    content = json.loads(files[1].read_text())
    assert set(content) == {"version", "results", "external_data"}
    assert content["results"]["v1"][0] == {"label": "jump", "score": 0.9, "segment": [1.0, 8.0]}


def test_read_submission_gives_back_what_was_written(files):
    read = read_submission(files[1])
    assert list(read) == ["v1", "v2", "v3"]
    np.testing.assert_array_equal(read["v1"].segments, DETECTIONS["v1"]["segments"])
    assert read["v1"].labels == ["jump", "run", "run"]


def test_a_file_without_results_is_not_a_submission(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"database": {}}))
    with pytest.raises(ValueError, match="not an ActivityNet submission"):
        read_submission(path)


def test_score_submission_counts_detections_outside_the_subset_as_false_positives(files):
    # As the official evaluation does: v3 (Validation) is not in subset Test, its "jump"
    # at 0.95 ranks first and is a false positive.
    score = score_submission(*files, subset="Test", tiou_thresholds=[0.5])
    assert (score.videos_not_annotated, score.detections_not_annotated, score.detections) == (1, 1, 5)
    subset_truth = {v: {"segments": [a["segment"] for a in r["annotations"]], "labels": [a["label"] for a in r["annotations"]]}
                    for v, r in GROUND_TRUTH["database"].items() if r["subset"] == "Test"}  # fmt: skip
    expected = evaluate_detections(subset_truth, DETECTIONS, [0.5])
    assert score.result.mAP.tolist() == expected.mAP.tolist()
    assert score.result.per_class_AP["jump"].tolist() == [pytest.approx(2 / 3)]


def test_score_submission_without_subset_counts_detections_in_empty_videos_as_false_positives(files):
    # "jump" ranked: v3 (0.95, no ground truth: FP), v1 TP, v2 TP -> precision 2/3 at every recall.
    score = score_submission(*files, tiou_thresholds=[0.5])
    assert score.videos_not_annotated == 0 and score.videos_without_detections == {}
    assert score.result.per_class_AP["jump"].tolist() == [pytest.approx(2 / 3)]


def test_cli_score_prints_the_table_and_writes_fractions(files, tmp_path, capsys):
    out = tmp_path / "map.json"
    status = main(["score", "--annotations", str(files[0]), "--predictions", str(files[1]), "--subset", "Test",
                   "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr()
    assert status == 0
    assert "mAP (%)" in printed.out
    assert "1 submission video(s) with 1 detection(s) are not in subset 'Test'" in printed.err
    result = json.loads(out.read_text())
    assert set(result) == {"tiou_thresholds", "mAP", "average_mAP", "per_class_AP"}
    assert result["tiou_thresholds"] == list(THUMOS14_TIOU_THRESHOLDS)
    assert all(0.0 <= value <= 1.0 for value in result["mAP"]) and 0.0 < result["average_mAP"] <= 1.0
    assert set(result["per_class_AP"]) == {"jump", "run"}


def test_cli_score_accepts_threshold_lists_and_presets(files, tmp_path):
    out = tmp_path / "map.json"
    arguments = ["score", "--annotations", str(files[0]), "--predictions", str(files[1]), "--json", str(out)]
    assert main([*arguments, "--tiou", "0.5,0.9"]) == 0
    assert json.loads(out.read_text())["tiou_thresholds"] == [0.5, 0.9]
    assert main([*arguments, "--tiou", "activitynet", "--overwrite"]) == 0
    assert len(json.loads(out.read_text())["mAP"]) == 10


def test_cli_score_keeps_an_existing_json_unless_asked_and_checks_it_before_scoring(files, tmp_path, capsys):
    mine = tmp_path / "mine.json"
    mine.write_text("my notes")
    arguments = ["score", "--annotations", str(files[0]), "--predictions", str(files[1]), "--json"]
    assert main([*arguments, str(mine)]) == 2
    printed = capsys.readouterr()
    assert "mine.json already exists: replace it with --overwrite" in printed.err and "mAP" not in printed.out
    assert mine.read_text() == "my notes"
    assert main([*arguments, str(tmp_path / "no_folder" / "map.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*arguments, str(mine), "--overwrite"]) == 0
    assert "average_mAP" in json.loads(mine.read_text())


def test_cli_score_malformed_entry_exits_2_with_one_line_naming_the_video(files, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"results": {"v2": [{"segment": [3.0, "end"], "score": 0.5, "label": "jump"}]}}))
    status = main(["score", "--annotations", str(files[0]), "--predictions", str(broken)])
    error = capsys.readouterr().err
    assert status == 2
    assert error.count("\n") == 1 and "'v2'" in error and "Traceback" not in error


def test_cli_score_missing_file_exits_2(files, tmp_path, capsys):
    status = main(["score", "--annotations", str(files[0]), "--predictions", str(tmp_path / "none.json")])
    assert status == 2 and "none.json" in capsys.readouterr().err


def test_cli_score_reads_the_activitynet_style_thumos14_file(shared_data, tmp_path, capsys):
    from selfdetr_hf.data import load_annotations

    annotations = shared_data / "thumos14" / "thumos_gt.json"
    truth = load_annotations(annotations, subset="test", invalid_segments="keep")
    submission = tmp_path / "submission.json"
    write_submission(
        submission,
        {v: {"segments": r.segments, "scores": np.ones(len(r.labels)), "labels": r.labels} for v, r in truth.items()},
    )
    out = tmp_path / "map.json"
    status = main(["score", "--annotations", str(annotations), "--predictions", str(submission), "--subset", "test",
                   "--json", str(out)])  # fmt: skip
    assert status == 0
    assert json.loads(out.read_text())["mAP"] == [1.0] * 5


def test_cli_score_scores_reversed_detections_and_says_which_videos_have_none(run_selfdetr, tmp_path):
    truth = {"database": {
        "t1": {"subset": "Test", "annotations": [{"label": "jump", "segment": [0, 10]}]},
        "t2": {"subset": "Test", "annotations": [{"label": "jump", "segment": [20, 30]}]},
        "val1": {"subset": "Validation", "annotations": [{"label": "jump", "segment": [0, 5]}]},
        "val2": {"subset": "Validation", "annotations": [{"label": "jump", "segment": [5, 9]}]},
    }}  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    results = {"t1": [{"segment": [8.0, 2.0], "score": 0.9, "label": "jump"},  # ends before it starts
                      {"segment": [0.0, 10.0], "score": 0.5, "label": "jump"}],
               "t2": [{"segment": [20.0, 30.0], "score": 0.4, "label": "jump"}]}  # fmt: skip
    (tmp_path / "test_only.json").write_text(json.dumps({"results": results}))

    result = run_selfdetr("score", "--annotations", str(tmp_path / "gt.json"), "--predictions",
                      str(tmp_path / "test_only.json"), "--tiou", "0.5", "--json", str(tmp_path / "map.json"))  # fmt: skip
    assert result.returncode == 0 and "Traceback" not in result.stderr
    warnings = result.stderr.splitlines()
    assert "1 detection(s) end before they start" in warnings[0]
    assert "2 video(s) with ground truth in the annotations have no detection (2 of subset Validation)" in warnings[1]
    assert "--subset" in warnings[1] and len(warnings) == 2
    # Official result: the reversed detection ranks first as a false positive; t1, t2 hit;
    # val1 and val2 are missed: recall 2/4 at precision 2/3.
    assert json.loads((tmp_path / "map.json").read_text())["mAP"] == [pytest.approx(1 / 3)]


def test_cli_score_warns_on_an_empty_submission(files, tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"results": {}}))
    assert main(["score", "--annotations", str(files[0]), "--predictions", str(empty)]) == 0
    printed = capsys.readouterr()
    assert printed.err == f"selfdetr score: warning: {empty} holds no detection: every annotated segment is missed\n"
    assert "0.00" in printed.out
