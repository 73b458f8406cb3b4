"""Loading and windowing the 412 THUMOS14 timelines with synthetic 2048-d features.

Reads ``thumos14.json`` (the real timelines), builds the training (stride 32) and test
(stride 96) window datasets over synthetic I3D-sized features, and reads every window
once through a `DataLoader` with `SelfDetrDataCollator` (batch 16), as training does.
Features come either from the synthetic generator in memory (computed window by window)
or, with ``--files``, from one ``.npy`` file per video written first to a temporary
folder (about 5.4 GB; memory-mapped on reading, the way real feature folders are read).
Prints each stage's time and the throughput in windows and feature bytes per second.

    python benchmarks/data_loading.py [--annotations ../shared/data/thumos14/thumos14.json] [--files]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from selfdetr_hf import SelfDetrProcessor
from selfdetr_hf.data import FeatureFolder, SelfDetrDataCollator, build_dataset, load_annotations
from selfdetr_hf.data.synthetic import make_synthetic_videos

FEATURE_DIM = 2048
DEFAULT_ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14" / "thumos14.json"


def read_all_windows(dataset, batch_size: int = 16) -> tuple[float, int]:
    """Seconds to read every window of ``dataset`` in shuffled batches; windows read."""
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=SelfDetrDataCollator(),
        generator=torch.Generator().manual_seed(0),
    )
    start = time.perf_counter()
    count = sum(len(batch["input_features"]) for batch in loader)
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS)
    parser.add_argument("--files", action="store_true", help="write .npy feature files and read those")
    args = parser.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        annotations = load_annotations(args.annotations)
    print(f"load_annotations: {len(annotations)} videos in {time.perf_counter() - start:.3f} s")

    videos = make_synthetic_videos(timelines=annotations, num_videos=None, num_classes=None, feature_dim=FEATURE_DIM)
    steps = sum(videos.features[video_id].shape[0] for video_id in videos.annotations)
    print(
        f"synthetic features: {steps:,} steps x {FEATURE_DIM} channels ({steps * FEATURE_DIM * 4 / 1e9:.2f} GB float32)"
    )

    with tempfile.TemporaryDirectory() as folder:
        features = videos.features
        if args.files:
            start = time.perf_counter()
            for video_id in videos.annotations:
                np.save(Path(folder) / f"{video_id}.npy", videos.features[video_id][:])
            print(
                f"wrote {len(videos.annotations)} .npy files in {time.perf_counter() - start:.1f} s (not timed below)"
            )
            features = FeatureFolder(folder)
        source = ".npy files" if args.files else "synthetic generator"
        for training, name in ((True, "train (stride 32)"), (False, "test (stride 96)")):
            start = time.perf_counter()
            dataset = build_dataset(
                videos.annotations,
                features,
                SelfDetrProcessor.thumos14(),
                training=training,
                label_names=videos.label_names,
                feature_fps=videos.feature_fps,
            )
            build_seconds = time.perf_counter() - start
            read_seconds, count = read_all_windows(dataset)
            window_bytes = count * 128 * FEATURE_DIM * 4
            print(
                f"{name:18s} [{source}]: build {build_seconds:.2f} s for {len(dataset):,} windows; "
                f"read all in {read_seconds:.1f} s = {count / read_seconds:,.0f} windows/s, "
                f"{window_bytes / read_seconds / 1e9:.2f} GB/s"
            )


if __name__ == "__main__":
    main()
