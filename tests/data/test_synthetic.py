"""The built-in synthetic dataset: THUMOS14-like, deterministic, learnable but not trivial."""

import warnings
from collections import Counter

import numpy as np
import pytest
from scipy.special import ndtri
from scipy.stats import rankdata

from selfdetr_hf.data import load_annotations, synthetic
from selfdetr_hf.data.synthetic import make_synthetic_videos, thumos14_like_timelines


@pytest.fixture(scope="module")
def thumos14(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        videos = load_annotations(shared_data / "thumos14/thumos14.json")
    del videos["video_test_0000270"]  # its duration is wrong (segments up to 714 s in 176 s)
    return videos


def quantiles(values):
    return np.percentile(values, np.linspace(0, 100, 21))


def test_embedded_statistics_are_those_of_the_real_thumos14_file(thumos14):
    videos = [v for v in thumos14.values() if len(v.labels)]
    ordered = [v.segments[np.lexsort((v.segments[:, 1], v.segments[:, 0]))] for v in videos]
    lengths = np.concatenate([s[:, 1] - s[:, 0] for s in ordered])
    gaps = np.concatenate([s[1:, 0] - s[:-1, 1] for s in ordered])
    labels = np.concatenate([v.labels for v in videos])
    medians = {name: np.median(lengths[labels == name]) for name in set(labels)}
    deviation = np.log(lengths / np.array([medians[name] for name in labels]))
    close = {"rtol": 0, "atol": 6e-4}  # the constants are rounded to 3 decimals
    np.testing.assert_allclose(
        quantiles([len(v.labels) for v in videos]), synthetic.THUMOS14_INSTANCES_PER_VIDEO, **close
    )
    np.testing.assert_allclose(quantiles([v.duration for v in videos]), synthetic.THUMOS14_DURATIONS, **close)
    np.testing.assert_allclose(quantiles(gaps), synthetic.THUMOS14_GAPS, **close)
    np.testing.assert_allclose(quantiles([s[0, 0] for s in ordered]), synthetic.THUMOS14_LEAD_IN, **close)
    tails = [v.duration - s[:, 1].max() for v, s in zip(videos, ordered)]
    np.testing.assert_allclose(quantiles(tails), synthetic.THUMOS14_TAIL, **close)
    np.testing.assert_allclose(quantiles(deviation), synthetic.THUMOS14_LENGTH_LOG_DEVIATION, **close)
    np.testing.assert_allclose(sorted(medians.values()), synthetic.THUMOS14_CLASS_MEDIAN_LENGTHS, **close)
    assert Counter(len(set(v.labels)) for v in videos) == synthetic.THUMOS14_CLASSES_PER_VIDEO
    assert Counter(v.fps for v in videos) == synthetic.THUMOS14_FRAME_RATES


def test_embedded_count_duration_correlation_is_that_of_the_real_file(thumos14):
    def normal_scores(values):
        return ndtri((rankdata(values) - 0.5) / len(values))

    counts = normal_scores([len(v.labels) for v in thumos14.values()])
    durations = normal_scores([v.duration for v in thumos14.values()])
    assert np.corrcoef(counts, durations)[0, 1] == pytest.approx(
        synthetic.THUMOS14_COUNT_DURATION_CORRELATION, abs=0.01
    )


def test_built_in_timelines_resemble_thumos14(thumos14):
    generated = thumos14_like_timelines(400, 20, seed=0)
    counts = [len(v.labels) for v in generated.values()]
    lengths = np.concatenate([v.segments[:, 1] - v.segments[:, 0] for v in generated.values()])
    real_lengths = np.concatenate([v.segments[:, 1] - v.segments[:, 0] for v in thumos14.values()])
    assert np.median(counts) == pytest.approx(np.median([len(v.labels) for v in thumos14.values()]), rel=0.25)
    assert np.median(lengths) == pytest.approx(np.median(real_lengths), rel=0.15)
    assert np.median([v.duration for v in generated.values()]) == pytest.approx(
        np.median([v.duration for v in thumos14.values()]), rel=0.25
    )


def test_built_in_timelines_have_overlapping_and_back_to_back_instances():
    gaps = np.concatenate([v.segments[1:, 0] - v.segments[:-1, 1] for v in thumos14_like_timelines(200, 5).values()])
    assert 0.03 < (gaps < 0).mean() < 0.2 and 0.03 < ((gaps >= 0) & (gaps < 0.5)).mean() < 0.3


def test_segments_lie_inside_their_videos():
    for video in make_synthetic_videos(num_videos=50).annotations.values():
        assert ((video.segments[:, 0] >= 0) & (video.segments[:, 1] <= video.duration)).all()
        assert (video.segments[:, 1] > video.segments[:, 0]).all() and video.duration <= 60.0


def test_arguments_set_videos_classes_and_channels():
    videos = make_synthetic_videos(num_videos=7, num_classes=3, feature_dim=20)
    video_id = next(iter(videos.annotations))
    assert len(videos.annotations) == 7 and videos.label_names == ["action_0", "action_1", "action_2"]
    assert {label for v in videos.annotations.values() for label in v.labels} <= set(videos.label_names)
    assert videos.features[video_id][0:5].shape == (5, 20)


def test_same_seed_gives_the_same_videos_and_features():
    first, second = make_synthetic_videos(num_videos=4, seed=3), make_synthetic_videos(num_videos=4, seed=3)
    for video_id, video in first.annotations.items():
        np.testing.assert_array_equal(video.segments, second.annotations[video_id].segments)
        np.testing.assert_array_equal(first.features[video_id][:], second.features[video_id][:])


def test_another_seed_gives_other_videos():
    first, second = make_synthetic_videos(num_videos=4, seed=3), make_synthetic_videos(num_videos=4, seed=4)
    assert any(
        len(video.labels) != len(second.annotations[video_id].labels)
        or not np.array_equal(video.segments, second.annotations[video_id].segments)
        for video_id, video in first.annotations.items()
    )


def test_a_window_equals_the_same_rows_of_the_whole_video():
    videos = make_synthetic_videos(num_videos=1)
    features = videos.features["synthetic_00000"]
    np.testing.assert_allclose(features[100:228], features[:][100:228], rtol=1e-5, atol=1e-6)


def test_features_are_finite_float32_with_one_step_per_frame_period():
    videos = make_synthetic_videos(num_videos=2, feature_fps=5.0)
    video_id, video = next(iter(videos.annotations.items()))
    array = videos.features[video_id][:]
    assert array.dtype == np.float32 and np.isfinite(array).all()
    assert len(array) == int(np.ceil(video.duration * 5.0))


def test_file_timelines_keep_the_files_segments(shared_data, thumos14):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        videos = make_synthetic_videos(timelines=shared_data / "thumos14/thumos14.json", num_videos=5, num_classes=None)
    assert len(videos.annotations) == 5 and len(videos.label_names) == 20
    for video_id, video in videos.annotations.items():
        np.testing.assert_array_equal(video.segments, thumos14[video_id].segments)


def test_num_classes_keeps_the_first_label_names_of_a_file(thumos14):
    videos = make_synthetic_videos(timelines=thumos14, num_videos=None, num_classes=2)
    assert videos.label_names == ["BaseballPitch", "BasketballDunk"]
    assert {label for v in videos.annotations.values() for label in v.labels} == set(videos.label_names)


def test_frames_of_a_class_are_separable_but_not_perfectly():
    accuracy, _ = _step_centroid_accuracy(make_synthetic_videos())
    assert 0.45 < accuracy < 0.95  # chance is 0.2


def _step_centroid_accuracy(videos):
    """Nearest-centroid accuracy of single steps (well inside an action) to their class,
    centroids fitted on the same steps (an optimistic figure), and the chance level."""
    frames, classes = [], []
    for video_id, video in videos.annotations.items():
        times = (np.arange(videos.features[video_id].shape[0]) + 0.5) / videos.feature_fps
        features = videos.features[video_id][:]
        for (start, end), label in zip(video.segments, video.labels):
            inside = (times > start + 0.3) & (times < end - 0.3)
            frames.append(features[inside])
            classes += [videos.label_names.index(label)] * int(inside.sum())
    frames, classes = np.concatenate(frames), np.array(classes)
    present = np.unique(classes)
    centroids = np.stack([frames[classes == k].mean(axis=0) for k in present])
    predicted = present[np.argmin(((frames[:, None] - centroids) ** 2).sum(axis=-1), axis=1)]
    return (predicted == classes).mean(), np.bincount(classes).max() / len(classes)


def test_phase_order_classes_are_orderings_of_shared_phases():
    videos = make_synthetic_videos(4, num_classes=6, class_structure="phase_order")
    orders = videos.features.phase_orders
    assert orders.shape == (6, 3)
    assert sorted(map(tuple, orders)) == sorted({tuple(order) for order in orders})  # all distinct
    assert all(sorted(order) == [0, 1, 2] for order in orders)


def test_phase_order_single_steps_do_not_tell_the_class_but_signature_steps_do():
    signature = make_synthetic_videos(24, num_classes=6, max_duration=60.0)
    phase_order = make_synthetic_videos(24, num_classes=6, max_duration=60.0, class_structure="phase_order")
    signature_accuracy, _ = _step_centroid_accuracy(signature)
    phase_accuracy, chance = _step_centroid_accuracy(phase_order)
    assert signature_accuracy > 0.5
    assert phase_accuracy < chance + 0.1


def test_phase_order_middle_of_each_phase_carries_that_phases_signature():
    """Without noise or drift, the latent class dimensions at the middle of phase j of an
    instance of class k point along axis ``phase_orders[k][j]``."""
    quiet = synthetic.SignalSettings(noise_std=0.0, background_std=0.0, instance_jitter=0.0, edge_softness=0.05)
    videos = make_synthetic_videos(6, num_classes=6, feature_fps=20.0, signal=quiet, class_structure="phase_order")
    for video_id, video in videos.annotations.items():
        latent = videos.features.latent(video_id, 0, videos.features.num_steps(video_id))
        classes = latent[:, synthetic.BACKGROUND_DIMS : synthetic.BACKGROUND_DIMS + 6]
        for (start, end), label in zip(video.segments, video.labels):
            overlapping = ((video.segments[:, 0] < end) & (video.segments[:, 1] > start)).sum() > 1
            if overlapping or end - start < 1.0:
                continue
            order = videos.features.phase_orders[videos.label_names.index(label)]
            for phase, axis in enumerate(order):
                middle = start + (phase + 0.5) * (end - start) / 3
                assert classes[int(middle * 20.0)].argmax() == axis


def test_unknown_class_structure_is_refused():
    with pytest.raises(ValueError, match="class_structure must be one of signature, phase_order"):
        make_synthetic_videos(2, class_structure="order")
