"""What the web demo's tests run on: a tiny random model saved with its processor, and a
feature file for it."""

from pathlib import Path

import numpy as np
import torch
from conftest import small_config

FEATURE_FPS = 7.5


def save_tiny_model(folder: Path, **overrides) -> Path:
    """A random `small_config` model (16-d features, classes jump and throw) with the
    THUMOS14 processor, saved in ``folder``."""
    from selfdetr_hf import SelfDetrForActionDetection, SelfDetrProcessor

    torch.manual_seed(0)
    SelfDetrForActionDetection(small_config(**overrides)).save_pretrained(folder)
    SelfDetrProcessor.thumos14().save_pretrained(folder)
    return folder


def write_feature_file(path: Path) -> Path:
    """``path`` (a ``.npy``): 300 steps (40 s at `FEATURE_FPS`) of 16-d random features."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32))
    return path
