"""Windows over feature sequences: coverage, padding, resizing, the ground truth they see."""

import numpy as np
import pytest
import torch

from selfdetr_hf.data import (
    pad_window,
    position_to_seconds,
    resize_features,
    seconds_to_position,
    sliding_windows,
    window_targets,
)


@pytest.mark.parametrize("num_steps", [1, 100, 128, 129, 500, 1000])
@pytest.mark.parametrize("stride", [32, 96])
def test_sliding_windows_cover_every_step_and_the_last_reaches_the_end(num_steps, stride):
    windows = sliding_windows(num_steps, 128, stride)
    covered = np.zeros(num_steps, dtype=bool)
    for offset, length in windows:
        covered[offset : offset + length] = True
    assert covered.all()
    assert windows[-1].sum() == num_steps
    assert (windows[:-1, 1] == min(128, num_steps)).all()


def test_sliding_windows_start_every_stride():
    np.testing.assert_array_equal(sliding_windows(300, 128, 96), [[0, 128], [96, 128], [192, 108]])


def test_short_video_gives_one_window_of_its_length():
    np.testing.assert_array_equal(sliding_windows(50, 128, 32), [[0, 50]])


def test_segment_three_quarters_inside_is_kept_and_clipped():
    segments, labels = window_targets(np.array([[90.0, 110.0]]), np.array([3]), offset=0, length=105, min_coverage=0.75)
    np.testing.assert_allclose(segments, [[(90 + 105) / 2 / 105, 15 / 105]], rtol=1e-6)
    assert labels.tolist() == [3]


def test_segment_less_than_three_quarters_inside_is_dropped():
    segments, labels = window_targets(np.array([[90.0, 110.0]]), np.array([3]), offset=0, length=104, min_coverage=0.75)
    assert segments.shape == (0, 2) and labels.shape == (0,)


def test_window_coordinates_map_back_to_feature_positions():
    positions = np.array([[40.0, 60.0], [70.0, 75.0]])
    segments, _ = window_targets(positions, np.array([0, 1]), offset=32, length=128, min_coverage=0.75)
    starts_ends = np.stack((segments[:, 0] - segments[:, 1] / 2, segments[:, 0] + segments[:, 1] / 2), axis=1)
    np.testing.assert_allclose(32 + starts_ends * 128, positions, rtol=1e-5)


def test_target_dtypes_are_float32_segments_and_int64_labels():
    segments, labels = window_targets(np.array([[1.0, 2.0]]), np.array([0]), offset=0, length=10, min_coverage=0.75)
    assert (segments.dtype, labels.dtype) == (np.float32, np.int64)


def test_padding_is_zero_and_masked():
    window, mask = pad_window(np.ones((3, 2), dtype=np.float32), 5)
    np.testing.assert_array_equal(window, [[1, 1]] * 3 + [[0, 0]] * 2)
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0])


@pytest.mark.parametrize(("num_steps", "length"), [(37, 192), (500, 192), (192, 192), (1, 8)])
def test_resize_equals_torch_linear_interpolation(num_steps, length):
    features = np.random.default_rng(0).standard_normal((num_steps, 5)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(features).T[None], size=length, mode="linear", align_corners=False
    )[0].T.numpy()
    np.testing.assert_allclose(resize_features(features, length), expected, atol=2e-4)  # torch uses float32 positions


def test_position_mapping_is_actionformers_with_stride_and_clip_length():
    seconds, fps, stride, clip_frames = np.array([0.0, 3.3, 100.0]), 30.0, 4, 16
    position = seconds_to_position(seconds, fps / stride, 0.5 * clip_frames / fps)
    np.testing.assert_allclose(position, (seconds * fps - 0.5 * clip_frames) / stride)


def test_seconds_and_positions_are_inverse():
    seconds = np.array([0.5, 12.25, 700.0])
    np.testing.assert_allclose(position_to_seconds(seconds_to_position(seconds, 7.5, 0.27), 7.5, 0.27), seconds)
