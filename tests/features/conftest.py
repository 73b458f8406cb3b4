"""Videos synthesised with PyAV and a tiny randomly initialised VideoMAE saved to disk."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

FPS = 25
ACTION = (1.0, 2.0)  # seconds in which the red square moves (the "action")


def write_video(
    path: Path, *, seconds: float = 3.0, fps: int = FPS, size: int = 64, action: tuple[float, float] = ACTION
) -> Path:
    """A ``size`` x ``size`` video: a blue square sliding right all along, and a red square
    moving down during ``action`` (seconds)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(round(seconds * fps)):
            image = np.full((size, size, 3), 40, dtype=np.uint8)
            x = (2 * index) % (size - 12)
            image[8:20, x : x + 12] = (0, 0, 255)
            if action[0] <= index / fps < action[1]:
                y = 24 + (index % 8) * 3
                image[y : y + 10, 26:36] = (255, 0, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads, and lose much on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_video() -> Callable[..., Path]:
    return write_video


@pytest.fixture
def action_interval() -> tuple[float, float]:
    """Seconds of the action in every video of `video_folder`."""
    return ACTION


@pytest.fixture
def video_folder(tmp_path) -> Path:
    """Two 3-second videos (75 frames at 25 fps) with the action from 1 s to 2 s."""
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "kitchen_01.mp4")
    write_video(folder / "kitchen_02.avi", seconds=2.4)
    return folder


@pytest.fixture
def bad_videos(tmp_path) -> dict[str, Path]:
    """An unreadable file, a truncated video and a video without frames."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "junk.mp4").write_bytes(b"this is not a video" * 20)
    whole = write_video(tmp_path / "whole.mkv").read_bytes()
    (folder / "truncated.mkv").write_bytes(whole[: len(whole) // 2])
    with av.open(str(folder / "empty.avi"), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
    return {path.stem: path for path in folder.iterdir()}


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A random VideoMAE (32x32 input, 4 frames, 32-d hidden) with its image processor."""
    from transformers import VideoMAEConfig, VideoMAEImageProcessorPil, VideoMAEModel

    folder = tmp_path_factory.mktemp("tiny-videomae")
    torch.manual_seed(0)
    config = VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64,
    )  # fmt: skip
    VideoMAEModel(config).save_pretrained(folder)
    VideoMAEImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
