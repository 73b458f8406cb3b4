"""Shared fixtures: the real annotation files beside the project, tiny configs, a loopback Hub,
the ``selfdetr`` command in a subprocess."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# ``SELFDETR_SHARED_DATA`` points elsewhere (a path that does not exist runs the suite as a
# fresh clone does, without the reference fixture: `make mutation` uses that).
SHARED_DATA = Path(os.environ.get("SELFDETR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# The tests' models are tiny: one thread is faster than two and does not thrash when
# other processes share the cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (annotations and the reference fixture); skips where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real reference data not found at {SHARED_DATA} (expected ../shared/data beside the project, "
            "or SELFDETR_SHARED_DATA)"
        )
    return SHARED_DATA


def small_config(**overrides):
    """A Self-DETR config small enough for end-to-end training tests (16-d features)."""
    from selfdetr_hf import SelfDetrConfig

    settings = {
        "feature_dim": 16, "d_model": 32, "num_attention_heads": 4, "ffn_dim": 64, "encoder_layers": 1,
        "decoder_layers": 2, "num_queries": 6, "input_norm_groups": 8, "id2label": {0: "jump", 1: "throw"},
    }  # fmt: skip
    return SelfDetrConfig(**{**settings, **overrides})


@pytest.fixture
def make_small_config():
    """`small_config` as a fixture: ``make_small_config(id2label=..., dropout=0.0)``."""
    return small_config


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


@pytest.fixture
def hub_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A loopback Hugging Face Hub (``tests/hub_server.py``) for one test, stopped afterwards.

    Sets ``HF_ENDPOINT`` to the server, ``HF_TOKEN=dummy-token`` and a temporary
    ``HF_HOME``/``HF_HUB_CACHE``. ``huggingface_hub`` reads these when first imported, into its
    constants and into objects built at import (the module-level ``HfApi`` behind
    ``huggingface_hub.model_info``, the set of trusted Hub hosts), and transformers is already
    imported here; patching each copy would depend on library internals and silently miss new
    ones. So the Hub part of a test runs in a fresh interpreter,
    ``hub_endpoint.run_python(script, *args)``, which inherits this environment and reads it at
    import like any user's process: the real client code, unmocked, talks to the server.
    """
    from hub_server import LoopbackHub

    hf_home = tmp_path / "hf_home"
    with LoopbackHub(token="dummy-token") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", hub.token)
        monkeypatch.setenv("HF_HOME", str(hf_home))
        monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN_PATH", "HUGGINGFACE_HUB_CACHE"):
            monkeypatch.delenv(name, raising=False)
        yield hub


@pytest.fixture
def run_selfdetr() -> Callable[..., subprocess.CompletedProcess]:
    """The ``selfdetr`` command as a user meets it: ``run_selfdetr("score", "--annotations", ...)``
    -> the finished process (exit status, stdout, stderr), on one torch thread."""

    def run(*arguments: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "selfdetr_hf.cli", *arguments]
        environment = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(command, check=False, capture_output=True, text=True, env=environment)

    return run
