"""Finding and decoding videos with PyAV, and telling bad files apart."""

import pytest

from selfdetr_hf.features import VideoError, VideoReader, find_videos, to_rgb


def test_find_videos_takes_files_and_folders_keyed_by_file_stem(video_folder, tmp_path, make_video):
    extra = make_video(tmp_path / "extra.mkv", seconds=1.0)
    (video_folder / "notes.txt").write_text("not a video")
    videos = find_videos([video_folder, extra])
    assert list(videos) == ["extra", "kitchen_01", "kitchen_02"]
    assert videos["extra"] == extra


def test_two_videos_with_one_id_are_refused(video_folder, tmp_path, make_video):
    other = tmp_path / "other"
    other.mkdir()
    make_video(other / "kitchen_01.mkv", seconds=1.0)
    with pytest.raises(ValueError, match="kitchen_01"):
        find_videos([video_folder, other])


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_videos(tmp_path / "nowhere")


def test_reader_streams_every_frame_as_rgb(video_folder):
    reader = VideoReader(video_folder / "kitchen_01.mp4")
    try:
        assert reader.fps == 25.0
        assert reader.expected_frames == 75
        first = next(reader.frames())
        assert to_rgb(first).shape == (64, 64, 3)
        assert sum(1 for _ in reader.frames()) == 74
        assert reader.decoded_frames == 75
    finally:
        reader.close()


def test_unreadable_file_is_reported_by_name(bad_videos):
    with pytest.raises(VideoError, match=r"junk\.mp4: unreadable"):
        VideoReader(bad_videos["junk"])


def test_truncated_video_is_reported_by_name(bad_videos):
    reader = VideoReader(bad_videos["truncated"])
    with pytest.raises(VideoError, match=r"truncated\.mkv: truncated video, \d+ frames decoded of the 75"):
        list(reader.frames())
    reader.close()


def test_video_without_frames_decodes_nothing(bad_videos):
    reader = VideoReader(bad_videos["empty"])
    assert list(reader.frames()) == []
    reader.close()
