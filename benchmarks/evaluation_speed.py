"""Speed of the ActivityNet-protocol mAP at the ActivityNet scale.

Scores synthetic ActivityNet-shaped data: 5,000 videos with 1 to 3 ground-truth segments
of one of 200 classes, and 100 detections per video over the top-2 classes of a
video-level classifier (the ActivityNet fusion: mostly the right class, sometimes
another), against the 10 ActivityNet thresholds (0.5:0.05:0.95). Times
`evaluate_detections` on submission entries (the ``"results"`` of a JSON file) and on
per-video arrays, and prints the median of the repeats. Target: seconds, not minutes.

    python benchmarks/evaluation_speed.py [--videos 5000] [--detections 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from selfdetr_hf.evaluation import ACTIVITYNET_TIOU_THRESHOLDS, evaluate_detections

NUM_CLASSES = 200


def make_data(num_videos: int, num_detections: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ground_truth, arrays = {}, {}
    for index in range(num_videos):
        video = f"v_{index:06d}"
        duration = float(rng.uniform(30, 240))
        count = int(rng.integers(1, 4))
        label = f"class_{rng.integers(NUM_CLASSES):03d}"
        lengths = rng.uniform(0.05, 0.6, count) * duration
        starts = rng.uniform(0, duration - lengths)
        ground_truth[video] = {"segments": np.stack((starts, starts + lengths), 1), "labels": [label] * count}
        other = f"class_{rng.integers(NUM_CLASSES):03d}"
        centers = rng.uniform(0, duration, num_detections)
        widths = rng.uniform(0.02, 0.8, num_detections) * duration
        arrays[video] = {
            "segments": np.stack((np.clip(centers - widths / 2, 0, None), centers + widths / 2), 1),
            "scores": rng.random(num_detections),
            "labels": [label if rng.random() < 0.7 else other for _ in range(num_detections)],
        }
    entries = {
        video: [
            {"segment": segment, "score": score, "label": label}
            for segment, score, label in zip(value["segments"].tolist(), value["scores"].tolist(), value["labels"])
        ]
        for video, value in arrays.items()
    }
    return ground_truth, entries, arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="detections per video")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    ground_truth, entries, arrays = make_data(args.videos, args.detections)
    print(
        f"{args.videos} videos x {args.detections} detections ({args.videos * args.detections:,} in all), "
        f"{NUM_CLASSES} classes, {len(ACTIVITYNET_TIOU_THRESHOLDS)} tIoU thresholds"
    )
    for name, detections in (("submission entries", entries), ("per-video arrays", arrays)):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = evaluate_detections(ground_truth, detections, ACTIVITYNET_TIOU_THRESHOLDS)
            times.append(time.perf_counter() - start)
        print(f"{name:20s} median {statistics.median(times):6.2f} s   (average mAP {100 * result.average_mAP:.2f})")


if __name__ == "__main__":
    main()
