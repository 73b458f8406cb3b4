"""The window dataset: rows, lazy features, timing, the ground truth, and bad input."""

import warnings

import numpy as np
import pytest

from selfdetr_hf import SelfDetrProcessor
from selfdetr_hf.data import (
    WINDOW_METADATA_KEYS,
    FeatureError,
    FeatureFolder,
    VideoAnnotation,
    build_dataset,
    sliding_windows,
    window_metadata,
)
from selfdetr_hf.data.synthetic import make_synthetic_videos

CHANNELS = 4


def video(segments, labels, duration=60.0, fps=30.0, subset="train"):
    return VideoAnnotation(subset=subset, duration=duration, fps=fps, segments=np.array(segments), labels=labels)


@pytest.fixture
def annotations():
    return {
        "a": video([[2.0, 6.0], [40.0, 44.0]], ["jump", "run"]),
        "b": video([[10.0, 12.0]], ["run"], duration=20.0),
    }


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return {
        "a": rng.standard_normal((450, CHANNELS)).astype(np.float32),
        "b": rng.standard_normal((150, CHANNELS)).astype(np.float32),
    }


@pytest.fixture
def feature_folder(tmp_path, features):
    for video_id, array in features.items():
        np.save(tmp_path / f"{video_id}.npy", array)
    return FeatureFolder(tmp_path)


class CountingFeatures(dict):
    """A feature mapping that counts how often features are read."""

    reads = 0

    def __getitem__(self, video_id):
        CountingFeatures.reads += 1
        return super().__getitem__(video_id)


def build(annotations, features, **kwargs):
    return build_dataset(annotations, features, SelfDetrProcessor.thumos14(), feature_fps=7.5, **kwargs)


def test_row_holds_window_features_mask_metadata_and_ground_truth(annotations, feature_folder):
    row = build(annotations, feature_folder)[0]
    assert set(row) == {*WINDOW_METADATA_KEYS, "class_labels", "segments", "input_features", "attention_mask"}
    assert row["input_features"].shape == (128, CHANNELS) and row["input_features"].dtype == np.float32
    assert row["attention_mask"].shape == (128,)
    assert (row["video_id"], row["window_offset"], row["window_length"]) == ("a", 0, 128)
    assert row["class_labels"] == [0] and np.asarray(row["segments"]).shape == (1, 2)


def test_window_features_are_the_video_rows_at_its_offset(annotations, feature_folder, features):
    dataset = build(annotations, feature_folder, training=False)
    row = dataset[1]
    np.testing.assert_array_equal(row["input_features"], features["a"][96:224])


def test_test_windows_are_every_window_of_every_video(annotations, features):
    dataset = build(annotations, features, training=False)
    expected = len(sliding_windows(450, 128, 96)) + len(sliding_windows(150, 128, 96))
    assert len(dataset) == expected


def test_training_drops_windows_without_ground_truth(annotations, features):
    dataset = build(annotations, features, training=True)
    assert len(dataset) < len(sliding_windows(450, 128, 32)) + len(sliding_windows(150, 128, 32))
    assert all(len(row["class_labels"]) > 0 for row in dataset.with_format(None).select_columns(["class_labels"]))


def test_last_window_is_zero_padded_and_masked(annotations, features):
    rows = [row for row in build(annotations, features, training=False) if row["video_id"] == "b"]
    last = rows[-1]
    valid = 150 - last["window_offset"]
    assert last["attention_mask"].sum() == valid == last["window_length"]
    assert not last["input_features"][valid:].any()


def test_normalised_targets_map_back_to_the_annotated_seconds(annotations, features):
    row = build(annotations, features, training=False)[0]
    center, width = row["segments"][0]
    start = row["window_offset"] + (center - width / 2) * row["window_length"]
    end = row["window_offset"] + (center + width / 2) * row["window_length"]
    np.testing.assert_allclose(np.array([start, end]) / row["feature_fps"] + row["time_offset"], [2.0, 6.0], rtol=1e-5)


def test_stride_and_clip_length_give_actionformer_timing(annotations, features):
    row = build_dataset(annotations, features, SelfDetrProcessor(), feature_stride=4, clip_frames=16)[0]
    assert row["feature_fps"] == 7.5 and row["time_offset"] == pytest.approx(8 / 30)


def test_without_a_rate_the_features_span_the_duration(annotations, features):
    row = build_dataset(annotations, features, SelfDetrProcessor())[0]
    assert row["feature_fps"] == pytest.approx(450 / 60.0)


def test_resize_mode_gives_one_interpolated_window_per_video(annotations, features):
    dataset = build_dataset(annotations, features, SelfDetrProcessor.activitynet(), class_agnostic=True)
    assert len(dataset) == 2
    assert [row["input_features"].shape for row in dataset] == [(192, CHANNELS)] * 2
    assert [row["window_length"] for row in dataset] == [450, 150]


def test_class_agnostic_labels_are_all_zero(annotations, features):
    dataset = build(annotations, features, class_agnostic=True, training=False)
    labels = [label for row in dataset.with_format(None)["class_labels"] for label in row]
    assert set(labels) == {0}
    assert dataset.features["class_labels"].feature.names == ["action"]


def test_given_label_names_fix_the_ids(annotations, features):
    dataset = build(annotations, features, label_names=["run", "jump", "swim"])
    assert dataset[0]["class_labels"] == [1]


def test_features_are_read_on_access_only(annotations, features):
    counting = CountingFeatures(features)
    CountingFeatures.reads = 0
    dataset = build(annotations, counting)
    reads_to_build = CountingFeatures.reads
    metadata = window_metadata(dataset)
    assert CountingFeatures.reads == reads_to_build
    dataset[0]
    assert CountingFeatures.reads == reads_to_build + 1
    assert [entry["video_id"] for entry in metadata] == dataset.with_format(None)["video_id"][:]


def test_window_metadata_follows_a_shuffled_order(annotations, features):
    shuffled = build(annotations, features, training=False).shuffle(seed=1)
    metadata = window_metadata(shuffled)
    assert [(m["video_id"], m["window_offset"]) for m in metadata[:4]] == [
        (row["video_id"], row["window_offset"]) for row in (shuffled[i] for i in range(4))
    ]


def test_missing_features_raise_naming_the_video(annotations, features, tmp_path):
    np.save(tmp_path / "a.npy", features["a"])
    with pytest.raises(FileNotFoundError, match=r"video 'b'.*b\.npy"):
        build(annotations, FeatureFolder(tmp_path))


def test_missing_features_can_be_skipped_with_a_counting_warning(annotations, features, tmp_path):
    np.save(tmp_path / "a.npy", features["a"])
    with pytest.warns(UserWarning, match=r"skipped 1 of 2 videos without features: b"):
        dataset = build(annotations, FeatureFolder(tmp_path), missing_features="skip")
    assert set(dataset.with_format(None)["video_id"]) == {"a"}


def test_wrong_channel_count_names_the_video_and_the_file(annotations, feature_folder):
    with pytest.raises(FeatureError, match=rf"video 'a': features have {CHANNELS} channels, expected 8 .*a\.npy"):
        build(annotations, feature_folder, feature_dim=8)


def test_channel_count_differing_between_videos_names_the_video(annotations, features):
    features["b"] = np.zeros((150, CHANNELS + 1), dtype=np.float32)
    with pytest.raises(FeatureError, match=r"video 'b'.*5 channels, expected 4"):
        build(annotations, features)


def test_nan_outside_every_training_window_is_found_before_training_at_its_video_step(annotations, features, tmp_path):
    features["a"][440, 1] = np.inf  # after the last action: in no training window
    np.save(tmp_path / "a.npy", features["a"])
    np.save(tmp_path / "b.npy", features["b"])
    with pytest.raises(FeatureError, match=r"video 'a': NaN or Inf .*a\.npy.*time step 440"):
        build(annotations, FeatureFolder(tmp_path))


def test_every_unusable_video_is_reported_together(annotations, features, tmp_path):
    annotations["c"] = video([[1.0, 2.0]], ["run"], duration=20.0)
    annotations["d"] = video([[1.0, 2.0]], ["swim"], duration=20.0)
    features["a"][3, 0] = np.nan
    np.save(tmp_path / "a.npy", features["a"])
    np.save(tmp_path / "b.npy", np.zeros((150, CHANNELS + 2), dtype=np.float32))
    np.save(tmp_path / "d.npy", features["b"])
    with pytest.raises(FeatureError) as error:
        build(annotations, FeatureFolder(tmp_path), label_names=["jump", "run"])
    lines = str(error.value).splitlines()
    assert lines[0] == "4 of 4 videos cannot be used:"
    assert "'a'" in lines[1] and "time step 3" in lines[1]
    assert "'b'" in lines[2] and "6 channels" in lines[2]
    assert "'c'" in lines[3] and "c.npy" in lines[3]
    assert "'d'" in lines[4] and "'swim'" in lines[4]


def test_a_feature_rate_off_by_more_than_twice_is_refused_with_the_rate_that_fits(annotations, features):
    with pytest.raises(FeatureError, match=r"video 'a' .*450 feature steps at 30 steps/s span 15\.0 s.*"
                       r"duration is 60\.0 s; a feature fps of 7\.5 would fit"):  # fmt: skip
        build_dataset(annotations, features, SelfDetrProcessor.thumos14(), feature_fps=30.0)


def test_a_feature_rate_off_by_more_than_five_percent_warns(annotations, features):
    with pytest.warns(UserWarning, match=r"2 of 2 videos: features span more than 5% more or less"):
        build_dataset(annotations, features, SelfDetrProcessor.thumos14(), feature_fps=7.0)


@pytest.mark.parametrize("rate", [0.0, -7.5, float("nan")])
def test_non_positive_feature_rates_are_refused(annotations, features, rate):
    with pytest.raises(ValueError, match=r"feature_fps must be a positive number"):
        build_dataset(annotations, features, SelfDetrProcessor.thumos14(), feature_fps=rate)


def test_videos_much_shorter_than_a_window_warn(annotations, features):
    annotations["b"] = video([[0.5, 1.5]], ["run"], duration=2.0)
    features["b"] = features["b"][:15]
    with pytest.warns(UserWarning, match=r"1 of 2 videos have fewer than 32 feature steps, a window holds 128: b"):
        build(annotations, features)


def test_zero_length_features_name_the_video(annotations, features):
    features["b"] = np.zeros((0, CHANNELS), dtype=np.float32)
    with pytest.raises(FeatureError, match=r"video 'b': zero-length"):
        build(annotations, features)


def test_unknown_label_names_the_video_and_the_label(annotations, features):
    with pytest.raises(ValueError, match=r"video 'a': field label 'jump' is not a known class"):
        build(annotations, features, label_names=["run"])


def test_missing_fps_for_stride_timing_names_the_video_and_field(annotations, features):
    annotations["b"].fps = None
    with pytest.raises(ValueError, match=r"video 'b': field fps"):
        build_dataset(annotations, features, SelfDetrProcessor(), feature_stride=4)


def test_thumos14_training_windows_all_hold_ground_truth_inside_them(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        videos = make_synthetic_videos(
            timelines=shared_data / "thumos14/thumos14.json", num_videos=None, num_classes=None, feature_dim=8
        )
    train = {vid: v for vid, v in videos.annotations.items() if v.subset == "Validation"}
    dataset = build_dataset(train, videos.features, SelfDetrProcessor.thumos14(), feature_fps=videos.feature_fps)
    table = dataset.with_format(None).select_columns(["video_id", "segments"]).to_list()
    segments = np.concatenate([np.asarray(row["segments"]).reshape(-1, 2) for row in table])
    assert {row["video_id"] for row in table} <= set(train) and len(table) > 1000
    assert (segments[:, 1] > 0).all() and (segments[:, 0] - segments[:, 1] / 2 >= -1e-6).all()
    assert (segments[:, 0] + segments[:, 1] / 2 <= 1 + 1e-6).all()
