"""Inference speed of the eager model, torch.compile, the torch.export program and
onnxruntime, side by side, at the THUMOS14 shape.

One default-config model (THUMOS14: 2048-d I3D features, 20 classes; random weights, eval
mode, float32) runs windows of 128 steps at batch 1 and 16 through each runtime; the
exported program and the ONNX model are those `selfdetr export` writes (checked against the
eager model first). The runtimes take turns, one call each per round, so that a load on
the machine falls on all of them alike; the median call gives the time per window and
videos per second, a THUMOS14 Test video having the windows of its length in I3D steps
(stride 4 frames) cut by the THUMOS14 processor (128 steps, stride 96). Also printed: each
runtime's largest difference to the eager logits. torch.compile (inductor) needs a C++
compiler on CPU; where it fails, the line says why.

    OMP_NUM_THREADS=1 python benchmarks/inference.py [--threads 1] [--rounds 20] [--batch-sizes 1,16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrProcessor
from selfdetr_hf.data import load_annotations
from selfdetr_hf.export import SelfDetrDetectionGraph, export_detector, load_exported
from selfdetr_hf.windows import sliding_windows

STEPS = 128
FEATURE_STRIDE = 4  # video frames per I3D feature step
THUMOS14 = Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14" / "thumos14.json"

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (features, attention_mask) -> logits


def windows_per_test_video(annotations: Path) -> tuple[float, int]:
    """Mean windows of a THUMOS14 Test video, and the number of videos."""
    processor = SelfDetrProcessor.thumos14()
    videos = load_annotations(annotations, subset="Test", invalid_segments="keep").values()
    counts = [
        len(sliding_windows(round(video.duration * video.fps / FEATURE_STRIDE), STEPS, processor.test_window_stride))
        for video in videos
    ]
    return statistics.mean(counts), len(counts)


def eager_runner(model: SelfDetrForActionDetection) -> Runner:
    def run(features: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(features), torch.from_numpy(attention_mask)).logits.numpy()

    return run


def compiled_runner(model: SelfDetrForActionDetection) -> Runner:
    compiled = torch.compile(SelfDetrDetectionGraph(model))

    def run(features: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return compiled(torch.from_numpy(features), torch.from_numpy(attention_mask))[0].numpy()

    return run


def exported_runner(model: SelfDetrForActionDetection, folder: Path, format: str) -> Runner:
    output = folder / ("detector.pt2" if format == "torch" else "detector.onnx")
    export_detector(model, output, format)
    run_file = load_exported(output, format)
    return lambda features, attention_mask: run_file(features, attention_mask)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20, help="timed calls per runtime and batch size")
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument(
        "--annotations", type=Path, default=THUMOS14, help="THUMOS14 annotations (for windows per video)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    if not args.annotations.is_file():
        parser.error(f"{args.annotations}: no THUMOS14 annotation file (give --annotations)")
    windows, videos = windows_per_test_video(args.annotations)

    torch.manual_seed(0)
    model = SelfDetrForActionDetection(SelfDetrConfig()).eval()
    runners: dict[str, Runner] = {"eager fp32": eager_runner(model)}
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="selfdetr-inference-") as folder:
        for name, format in (("torch.export program", "torch"), ("onnxruntime", "onnx")):
            start = time.perf_counter()
            runners[name] = exported_runner(model, Path(folder), format)
            print(f"{name}: exported, written and checked in {time.perf_counter() - start:.0f} s")
    try:
        candidate = compiled_runner(model)
        for batch in batch_sizes:  # compiles once per shape
            start = time.perf_counter()
            candidate(*inputs(model, batch))
            print(f"torch.compile at batch {batch}: first call (compilation) {time.perf_counter() - start:.0f} s")
        runners["torch.compile"] = candidate
    except Exception as error:  # noqa: BLE001 - any failure of the compiler stack is reported, not raised
        failures["torch.compile"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"

    results = {name: {} for name in runners}
    for batch in batch_sizes:
        features, attention_mask = inputs(model, batch)
        reference = runners["eager fp32"](features, attention_mask)
        times = {name: [] for name in runners}
        for name, run in runners.items():  # warm-up, and the difference to eager
            results[name][batch] = {"difference": float(np.abs(run(features, attention_mask) - reference).max())}
        for _ in range(args.rounds):
            for name, run in runners.items():
                start = time.perf_counter()
                run(features, attention_mask)
                times[name].append(time.perf_counter() - start)
        for name in runners:
            per_window = statistics.median(times[name]) / batch
            results[name][batch].update(per_window=per_window, videos=1 / (per_window * windows))

    print(
        f"default config (THUMOS14), float32, windows of {STEPS} x 2048, {args.threads} thread(s), median of "
        f"{args.rounds} calls; a THUMOS14 Test video = {windows:.2f} windows (mean of {videos} videos)"
    )
    header = "".join(f"{f'batch {batch}':>39}" for batch in batch_sizes)
    print(f"{'':22}{header}")
    columns = f"{'ms/window':>12}{'videos/s':>10}{'x eager':>8}{'d logits':>9}"
    print(f"{'':22}" + columns * len(batch_sizes))
    eager = results["eager fp32"]
    for name, found in results.items():
        cells = "".join(
            f"{1000 * found[b]['per_window']:>12.2f}{found[b]['videos']:>10.2f}"
            f"{eager[b]['per_window'] / found[b]['per_window']:>8.2f}{found[b]['difference']:>9.0e}"
            for b in batch_sizes
        )
        print(f"{name:<22}{cells}")
    for name, reason in failures.items():
        print(f"{name:<22}not measured: {reason}")


def inputs(model: SelfDetrForActionDetection, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Random features and an all-valid mask of ``batch`` full windows."""
    generator = torch.Generator().manual_seed(batch)
    features = torch.randn(batch, STEPS, model.config.feature_dim, generator=generator)
    return features.numpy(), np.ones((batch, STEPS), dtype=np.int64)


if __name__ == "__main__":
    main()
