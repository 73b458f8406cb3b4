"""Clip sampling: step count, frame indices, backbone frame selection, streaming."""

import itertools

import pytest

from selfdetr_hf.features import iter_clips, num_clips, sampled_offsets


@pytest.mark.parametrize(
    ("frames", "clip_len", "stride"), [(75, 16, 4), (60, 16, 4), (16, 16, 4), (15, 16, 4), (9, 2, 3)]
)
def test_clips_of_a_stream_match_the_step_count_formula(frames, clip_len, stride):
    clips = list(iter_clips(range(frames), clip_len, stride, list(range(clip_len))))
    assert len(clips) == num_clips(frames, clip_len, stride)
    assert [clip.index for clip in clips] == list(range(len(clips)))
    assert [clip.start for clip in clips] == [index * stride for index in range(len(clips))]


def test_a_clip_holds_its_frames_with_their_indices():
    clip = list(iter_clips(range(100), 16, 4, [0, 5, 10, 15]))[3]
    assert clip.frames == [(12, 12), (17, 17), (22, 22), (27, 27)]


def test_backbone_frames_are_spread_over_the_clip_including_both_ends():
    assert sampled_offsets(16, 16) == list(range(16))
    assert sampled_offsets(16, 8) == [0, 2, 4, 6, 9, 11, 13, 15]
    assert sampled_offsets(16, 4) == [0, 5, 10, 15]
    assert sampled_offsets(4, 8) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_clips_stream_from_an_endless_source():
    clips = iter_clips(itertools.count(), 16, 4, [0, 15])
    assert [clip.frames for clip in itertools.islice(clips, 3)] == [
        [(0, 0), (15, 15)],
        [(4, 4), (19, 19)],
        [(8, 8), (23, 23)],
    ]
