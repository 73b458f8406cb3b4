"""Sharing a saved Self-DETR model on the Hugging Face Hub."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import HfApi

from .configuration_self_detr import SelfDetrConfig

SAVED_CODE_FILES = (
    "modeling_self_detr.py", "configuration_self_detr.py", "losses.py", "matcher.py", "self_feedback.py",
    "segment_ops.py", "processing_self_detr.py", "feature_files.py", "windows.py", "nms.py",
    "pipeline_temporal_action_detection.py",
)  # fmt: skip
"""The code that ``save_pretrained`` of a model, its processor and the pipeline copies beside
the weights, for loading with ``trust_remote_code=True`` without this package."""

MODEL_FILES = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
    "README.md",
    *SAVED_CODE_FILES,
]
"""What a push uploads from a model directory: the model, its processor, their code and its card."""


def check_model_dir(model_dir: Path) -> None:
    """Fail with what to do when ``model_dir`` is not a saved Self-DETR model."""
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{model_dir} has no config.json: save the model there with save_pretrained first")
    model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    if model_type != SelfDetrConfig.model_type:
        raise ValueError(f"{config_file} describes a {model_type!r} model, not a Self-DETR model")
    if not any(model_dir.glob("*.safetensors")):
        raise ValueError(f"{model_dir} has no .safetensors weights: save the model there with save_pretrained")


def push_model(
    model_dir: str | Path,
    repo_id: str,
    *,
    model_card: str | None = None,
    private: bool = False,
    commit_message: str = "Upload Self-DETR model",
    token: str | None = None,
) -> str:
    """Upload a ``save_pretrained`` directory to the Hub repository ``repo_id``.

    The repository is created when missing. The upload holds the config, the safetensors
    weights, ``preprocessor_config.json`` when present, and the model card ``README.md``;
    other files of the directory (checkpoints, logs, plots) stay local.

    Args:
        model_dir: directory written by ``SelfDetrForActionDetection.save_pretrained`` (and the
            processor's ``save_pretrained``).
        repo_id: ``namespace/name`` of the model repository.
        model_card: README.md text (see :func:`selfdetr_hf.model_card.render_model_card`),
            written into ``model_dir`` before the upload; by default the directory's own
            README.md is uploaded.
        private: create the repository as private (no effect when it exists).
        commit_message: message of the commit.
        token: Hub token; by default the one of ``HF_TOKEN`` or ``hf auth login``.

    Returns:
        The URL of the commit.

    Raises:
        ValueError: ``model_dir`` is not a saved Self-DETR model, or it has no model card and
            none is given.
        OSError: the Hub refused the push (``HfHubHTTPError``) or could not be reached
            (``ConnectionError`` naming the endpoint).
    """
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    card_file = model_dir / "README.md"
    if model_card is not None:
        card_file.write_text(model_card, encoding="utf-8")
    elif not card_file.is_file():
        raise ValueError(f"{model_dir} has no README.md model card: pass model_card= (see selfdetr_hf.model_card)")
    api = HfApi(token=token)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo.repo_id,
            folder_path=model_dir,
            allow_patterns=MODEL_FILES,
            commit_message=commit_message,
        )
    except OSError:
        raise
    except Exception as error:  # the client's HTTP backend raises transport errors of its own types
        raise ConnectionError(f"could not push {model_dir} to {repo_id} on {api.endpoint}: {error}") from error
    return commit.commit_url
