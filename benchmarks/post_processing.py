"""Post-processing the outputs of the 212 THUMOS14 test videos.

Cuts the real test timelines of ``thumos14.json`` into test windows (128 steps, stride 96,
7.5 steps/s), draws model outputs of the default config for every window (40 queries x 20
classes; logits ~ N(-4, 2), random segments), and times
`SelfDetrProcessor.post_process_action_detection` end to end (per-window top 200,
window-to-seconds mapping, merging by per-class NMS or Soft-NMS, per-video top 200), plus
the ActivityNet fusion path (1 class, Soft-NMS, top 100, top-2 classifier fusion) on the
same windows. Prints the median of the repeats.

    python benchmarks/post_processing.py [--annotations ../shared/data/thumos14/thumos14.json] [--repeats 3]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from selfdetr_hf import SelfDetrProcessor
from selfdetr_hf.data import build_dataset, load_annotations, window_metadata
from selfdetr_hf.data.synthetic import make_synthetic_videos

NUM_QUERIES, NUM_CLASSES, FEATURE_FPS = 40, 20, 7.5
DEFAULT_ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14" / "thumos14.json"


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        annotations = load_annotations(args.annotations, subset="test")
    videos = make_synthetic_videos(timelines=annotations, num_videos=None, num_classes=None, feature_dim=1)
    dataset = build_dataset(
        videos.annotations,
        videos.features,
        SelfDetrProcessor.thumos14(),
        training=False,
        label_names=videos.label_names,
        feature_fps=FEATURE_FPS,
    )
    metadata = window_metadata(dataset)
    generator = torch.Generator().manual_seed(0)
    outputs = {
        "logits": torch.randn(len(metadata), NUM_QUERIES, NUM_CLASSES, generator=generator) * 2 - 4,
        "pred_segments": torch.rand(len(metadata), NUM_QUERIES, 2, generator=generator) * torch.tensor([1.0, 0.3]),
    }
    most = max(sum(entry["video_id"] == video_id for entry in metadata) for video_id in videos.annotations)
    print(
        f"{len(videos.annotations)} videos, {len(metadata):,} windows (up to {most} per video), "
        f"{NUM_QUERIES} queries x {NUM_CLASSES} classes"
    )

    id2label = dict(enumerate(videos.label_names))
    presets = {
        "THUMOS14, per-class NMS 0.4": SelfDetrProcessor.thumos14(),
        "THUMOS14, per-class Soft-NMS": SelfDetrProcessor.thumos14(nms_method="soft_nms", min_score=0.001),
    }
    for name, processor in presets.items():
        seconds = median_seconds(
            lambda processor=processor: processor.post_process_action_detection(outputs, metadata, id2label=id2label),
            args.repeats,
        )
        print(f"{name:32s} {seconds:7.3f} s  ({seconds / len(videos.annotations) * 1e3:.2f} ms per video)")

    agnostic = {"logits": outputs["logits"][..., :1], "pred_segments": outputs["pred_segments"]}
    classifier = {video_id: np.random.default_rng(0).random(200) for video_id in videos.annotations}
    processor = SelfDetrProcessor.activitynet()
    seconds = median_seconds(
        lambda: processor.post_process_action_detection(agnostic, metadata, classifier_scores=classifier), args.repeats
    )
    print(
        f"{'1 class, Soft-NMS + fusion':32s} {seconds:7.3f} s  ({seconds / len(videos.annotations) * 1e3:.2f} ms per video)"
    )


if __name__ == "__main__":
    main()
