"""Shared fixtures: the real annotation files beside the project, and tiny configs."""

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (annotations and the reference fixture); skips where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not found at {SHARED_DATA} (expected ../shared/data beside the project)")
    return SHARED_DATA


@pytest.fixture
def tiny_config():
    """A small but complete Self-DETR config: fast on CPU, every code path present."""
    from selfdetr_hf import SelfDetrConfig

    return SelfDetrConfig(
        feature_dim=32,
        d_model=64,
        num_attention_heads=4,
        ffn_dim=128,
        encoder_layers=2,
        decoder_layers=3,
        num_queries=8,
        input_norm_groups=8,
        id2label={0: "jump", 1: "throw", 2: "run"},
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
