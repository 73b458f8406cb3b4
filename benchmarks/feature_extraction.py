"""Feature extraction throughput: clips per second from a video file to saved features.

Synthesises a 320x240, 25 fps video with PyAV and extracts 16-frame clips every 4 frames
with two randomly initialised VideoMAE backbones built offline (no download): a tiny one
(32x32 input, 4 frames, 32-d, 1 layer) that shows the pipeline's own cost, and one of the
size of ``MCG-NJU/videomae-base-finetuned-kinetics`` (224x224, 16 frames, 768-d, 12
layers) that shows a realistic figure. For each it prints the stages on their own
(decoding to RGB, preprocessing by the image processor, the backbone's forward pass) and
the whole `extract_features` run, in clips (or frames) per second.

    python benchmarks/feature_extraction.py [--device cpu] [--dtype float32] [--threads N] [--no-base]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from transformers import VideoMAEConfig, VideoMAEImageProcessorPil, VideoMAEModel

from selfdetr_hf.features import VideoBackbone, VideoReader, extract_features, num_clips, to_rgb

CLIP_LEN, STRIDE, FPS = 16, 4, 25


def write_video(path: Path, num_frames: int, width: int = 320, height: int = 240) -> Path:
    """Moving coloured squares over a gradient, H.264 (mpeg4 where libx264 is missing)."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    gradient = np.linspace(0, 160, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(num_frames):
            image = gradient.copy()
            x, y = (5 * index) % (width - 40), (3 * index) % (height - 40)
            image[y : y + 40, x : x + 40] = (230, 40, 40)
            image[height - y - 40 : height - y, x : x + 40] = (40, 40, 230)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_backbone(folder: Path, size: str) -> Path:
    torch.manual_seed(0)
    if size == "tiny":
        config = VideoMAEConfig(
            image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
            num_attention_heads=2, intermediate_size=64,
        )  # fmt: skip
        processor = VideoMAEImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        config = VideoMAEConfig()  # the base size: 224x224, 16 frames, 768-d, 12 layers, 12 heads
        processor = VideoMAEImageProcessorPil()
    VideoMAEModel(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def measure(label: str, video: Path, backbone_dir: Path, args: argparse.Namespace, out_dir: Path) -> None:
    backbone = VideoBackbone.from_pretrained(backbone_dir, device=args.device, dtype=args.dtype)
    reader = VideoReader(video)
    clips = num_clips(reader.expected_frames, CLIP_LEN, STRIDE)

    start = time.perf_counter()
    sample = [to_rgb(frame) for frame in itertools.islice(reader.frames(), 64)]
    decoded = len(sample) + sum(1 for frame in reader.frames() if to_rgb(frame) is not None)
    decode_fps = decoded / (time.perf_counter() - start)
    reader.close()

    start = time.perf_counter()
    pixels = backbone.pixel_values(sample)
    preprocess_fps = len(pixels) / (time.perf_counter() - start)

    batch = pixels[: backbone.num_frames].unsqueeze(0).repeat(args.batch_size, 1, 1, 1, 1)
    backbone(batch[:1])  # warm-up
    start = time.perf_counter()
    backbone(batch)
    if backbone.device.type == "cuda":
        torch.cuda.synchronize()
    forward_cps = args.batch_size / (time.perf_counter() - start)

    start = time.perf_counter()
    extract_features(video, out_dir, backbone=backbone, batch_size=args.batch_size, progress=False)
    total_s = time.perf_counter() - start

    print(f"{label}: {backbone.feature_dim}-d, {backbone.num_frames} frames per clip, {clips} clips")
    print(f"  decode to RGB     {decode_fps:9.1f} frames/s")
    print(f"  preprocess        {preprocess_fps:9.1f} frames/s")
    print(f"  backbone forward  {forward_cps:9.2f} clips/s (batch {args.batch_size})")
    print(f"  extract_features  {clips / total_s:9.2f} clips/s ({total_s:.2f} s for {clips} clips, end to end)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-base", action="store_true", help="skip the base-sized backbone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}, dtype {args.dtype}")

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        measure(
            "tiny VideoMAE (random)", write_video(folder / "long.mp4", 60 * FPS),
            make_backbone(folder / "tiny", "tiny"), args, folder / "tiny-features",
        )  # fmt: skip
        if not args.no_base:
            measure(
                "base-size VideoMAE (random)", write_video(folder / "short.mp4", 4 * FPS),
                make_backbone(folder / "base", "base"), args, folder / "base-features",
            )  # fmt: skip


if __name__ == "__main__":
    main()
