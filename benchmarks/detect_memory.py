"""Peak memory of ``selfdetr detect`` on a folder of many short videos, and its speed per thread count.

Writes a model of the default (THUMOS14) size and ``--videos`` short I3D-sized feature files
(``--steps`` x 2048, float32) to a temporary folder, then runs ``selfdetr detect`` as a user
would (a subprocess) on the first tenth of the videos and on all of them, and prints side by
side each run's peak resident memory (the process's own, from ``wait4``) and time. Detection
streams video by video, so the peak should not grow with the number of videos: the last
column is the ratio to the small run. For scale it prints the memory the windows of every
video would take if they were held at once.

With ``--threads`` (a list) it also times the small run at each thread count.

    python benchmarks/detect_memory.py [--videos 1000] [--steps 64] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrProcessor

FEATURE_DIM = 2048


def run_detect(model: Path, features: Path, output: Path, threads: int) -> tuple[float, float]:
    """``(seconds, peak RSS in MiB)`` of one ``selfdetr detect`` process."""
    command = [sys.executable, "-m", "selfdetr_hf.cli", "detect", "--model", str(model), "--features", str(features),
               "--feature-fps", "7.5", "--output", str(output), "--threads", str(threads)]  # fmt: skip
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"detect failed: {process.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000, help="videos of the large run (default: 1000)")
    parser.add_argument("--steps", type=int, default=64, help="feature steps per video (default: 64)")
    parser.add_argument("--threads", default="1", help="comma-separated thread counts to time (default: 1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    threads = [int(value) for value in args.threads.split(",")]

    with tempfile.TemporaryDirectory(prefix="selfdetr-detect-memory-") as tmp:
        root = Path(tmp)
        SelfDetrForActionDetection(SelfDetrConfig()).save_pretrained(root / "model")
        SelfDetrProcessor.thumos14().save_pretrained(root / "model")
        rng = np.random.default_rng(0)
        small_count = max(1, args.videos // 10)
        for count, folder in ((small_count, root / "small"), (args.videos, root / "large")):
            folder.mkdir()
            for index in range(count):
                array = rng.standard_normal((args.steps, FEATURE_DIM), dtype=np.float32)
                np.save(folder / f"video_{index:05d}.npy", array)

        window_bytes = 128 * FEATURE_DIM * 4
        print(f"{args.steps} steps x {FEATURE_DIM} channels per video, default-size model, one window per video")
        print(
            f"{'videos':>7} {'threads':>7} {'seconds':>8} {'peak RSS MiB':>13} {'RSS ratio':>9} {'all windows MiB':>16}"
        )
        small_rss = None
        for count, folder in ((small_count, root / "small"), (args.videos, root / "large")):
            seconds, rss = run_detect(root / "model", folder, root / "out.json", threads[0])
            small_rss = small_rss or rss
            held = count * window_bytes / 2**20
            print(f"{count:>7} {threads[0]:>7} {seconds:>8.1f} {rss:>13.0f} {rss / small_rss:>9.2f} {held:>16.0f}")
        for count in threads[1:]:
            seconds, rss = run_detect(root / "model", root / "small", root / "out.json", count)
            print(f"{small_count:>7} {count:>7} {seconds:>8.1f} {rss:>13.0f} {rss / small_rss:>9.2f}")


if __name__ == "__main__":
    main()
