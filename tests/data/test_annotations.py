"""Annotation files: the three real formats, subsets, and every malformed input."""

import json
import warnings

import numpy as np
import pytest

from selfdetr_hf.data import detect_format, label_names, load_annotations
from selfdetr_hf.data.annotations import _read_json


@pytest.fixture
def write_json(tmp_path):
    def write(content, name="annotations.json"):
        path = tmp_path / name
        path.write_text(json.dumps(content))
        return path

    return write


def database(annotations, duration=10.0, subset="Validation"):
    return {"database": {"vid": {"subset": subset, "duration": duration, "fps": 30.0, "annotations": annotations}}}


@pytest.mark.parametrize(
    ("relative_path", "expected"),
    [
        ("thumos14/thumos14.json", "actionformer"),
        ("thumos14/thumos_gt.json", "activitynet"),
        ("activitynet/anet_anno_action.json", "bsn"),
    ],
)
def test_format_of_each_real_file_is_detected(shared_data, relative_path, expected):
    path = shared_data / relative_path
    assert detect_format(_read_json(path), path) == expected


def test_actionformer_file_gives_every_video_with_duration_fps_and_segments(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        videos = load_annotations(shared_data / "thumos14/thumos14.json")
    video = videos["video_test_0000004"]
    assert len(videos) == 412
    assert (video.subset, video.duration, video.fps) == ("Test", 33.83, 30.0)
    assert video.segments[0].tolist() == [0.2, 1.1] and video.labels[0] == "CricketBowling"
    assert all(v.segments.shape == (len(v.labels), 2) and v.segments.dtype == np.float64 for v in videos.values())


def test_subset_matches_case_insensitively(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = load_annotations(shared_data / "thumos14/thumos14.json", subset="validation")
        test = load_annotations(shared_data / "thumos14/thumos14.json", subset="TEST")
    assert (len(train), len(test)) == (200, 212)
    assert {v.subset for v in train.values()} == {"Validation"}


def test_activitynet_style_string_segments_equal_the_actionformer_numbers(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        numbers = load_annotations(shared_data / "thumos14/thumos14.json")
    strings = load_annotations(shared_data / "thumos14/thumos_gt.json", subset="test")
    assert len(strings) == 210
    video = strings["video_test_0000004"]
    assert video.duration is None and video.fps is None
    order = np.lexsort(numbers["video_test_0000004"].segments.T[::-1])
    np.testing.assert_array_equal(
        np.sort(video.segments, axis=0), np.sort(numbers["video_test_0000004"].segments[order], axis=0)
    )


def test_bsn_file_takes_subset_and_fps_from_video_info(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        videos = load_annotations(
            shared_data / "activitynet/anet_anno_action.json",
            video_info=shared_data / "activitynet/video_info_new.csv",
            subset="Validation",
        )
    video = videos["v_--1DO2V4K74"]  # video_info: 6337 frames, 211.53 s, 30 fps, 6336 feature frames
    assert len(videos) == 4728
    assert (video.subset, video.fps, video.duration) == ("validation", 30.0, 211.53)
    assert video.feature_duration == pytest.approx(211.53 * 6336 / 6337, rel=1e-3)


def test_bsn_subset_without_video_info_names_the_missing_csv(shared_data):
    with pytest.raises(ValueError, match="video_info"):
        load_annotations(shared_data / "activitynet/anet_anno_action.json", subset="validation")


def test_real_thumos_segments_beyond_the_video_are_dropped_with_one_warning(shared_data):
    with pytest.warns(UserWarning, match="video_test_0000270") as record:
        videos = load_annotations(shared_data / "thumos14/thumos14.json", subset="test")
    assert len(record) == 1
    assert all((v.segments[:, 1] <= v.duration).all() and (v.segments[:, 0] >= 0).all() for v in videos.values())


def test_segment_partly_outside_is_clipped_with_a_warning(write_json):
    path = write_json(database([{"label": "a", "segment": [8.0, 12.0]}]))
    with pytest.warns(UserWarning, match="1 segment"):
        videos = load_annotations(path)
    assert videos["vid"].segments.tolist() == [[8.0, 10.0]]


def test_empty_segment_is_dropped_with_a_warning(write_json):
    path = write_json(database([{"label": "a", "segment": [3.0, 3.0]}, {"label": "b", "segment": [1, 2]}]))
    with pytest.warns(UserWarning, match="dropped"):
        videos = load_annotations(path)
    assert videos["vid"].labels == ["b"]


def test_invalid_segment_raises_naming_video_and_field_when_asked(write_json):
    path = write_json(database([{"label": "a", "segment": [1.0, 2.0]}, {"label": "a", "segment": [5.0, 4.0]}]))
    with pytest.raises(ValueError, match=r"'vid'.*annotations\[1\]\.segment"):
        load_annotations(path, invalid_segments="error")


def test_keep_leaves_segments_as_written(write_json):
    path = write_json(database([{"label": "a", "segment": [8.0, 12.0]}]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        videos = load_annotations(path, invalid_segments="keep")
    assert videos["vid"].segments.tolist() == [[8.0, 12.0]]


def test_non_numeric_segment_value_names_video_and_field(write_json):
    path = write_json(database([{"label": "a", "segment": ["1.0", "soon"]}]))
    with pytest.raises(ValueError, match=r"'vid'.*annotations\[0\]\.segment.*soon"):
        load_annotations(path)


def test_annotation_without_label_names_video_and_field(write_json):
    path = write_json(database([{"segment": [1.0, 2.0]}]))
    with pytest.raises(ValueError, match=r"'vid'.*annotations\[0\]"):
        load_annotations(path)


@pytest.mark.parametrize("content", [[1, 2, 3], {"videos": [1]}, {"database": [1]}, {"vid": {"annotations": []}}])
def test_file_of_unknown_shape_raises_naming_the_file(write_json, content):
    path = write_json(content, name="odd.json")
    with pytest.raises(ValueError, match=r"odd\.json: unknown annotation format"):
        load_annotations(path)


def test_truncated_json_raises_naming_the_file(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"database": {"vid": {"subset": "train", "annot')
    with pytest.raises(ValueError, match=r"cut\.json: not a readable JSON"):
        load_annotations(path)


def test_missing_file_raises_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_annotations(tmp_path / "nothing.json")


def test_unknown_subset_lists_the_subsets_present(write_json):
    path = write_json(database([{"label": "a", "segment": [1, 2]}]))
    with pytest.raises(ValueError, match=r"subsets present: \['Validation'\]"):
        load_annotations(path, subset="training")


def test_label_names_are_sorted_and_distinct(write_json):
    path = write_json(
        database(
            [{"label": "b", "segment": [1, 2]}, {"label": "a", "segment": [2, 3]}, {"label": "b", "segment": [4, 5]}]
        )
    )
    assert label_names(load_annotations(path)) == ["a", "b"]
