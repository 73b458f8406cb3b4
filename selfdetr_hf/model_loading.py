"""Loading a saved Self-DETR model for a command: every way a model folder or a device can be
wrong is one error naming the path (or device) and what is wrong."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from .configuration_self_detr import SelfDetrConfig

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
WEIGHT_READ_ERRORS = (SafetensorError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError)


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a `torch.device`, checked to exist on this machine.

    Raises:
        ValueError: not a device name, or a CUDA/MPS device this machine lacks.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device}: not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine (use --device cpu)")
    return resolved


def check_model_folder(path: Path) -> None:
    """Check a local folder holds a saved Self-DETR model: ``config.json`` of model type
    ``self_detr`` and a weight file.

    Raises:
        ValueError: naming the folder and what is missing or wrong.
    """
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{path}: no config.json; not a model folder written by save_pretrained")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{config_file}: not a readable model config ({error})") from None
    if model_type != SelfDetrConfig.model_type:
        raise ValueError(
            f"{path}: a model of type {model_type!r} (config.json), not a Self-DETR model ({SelfDetrConfig.model_type!r})"
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(f"{path}: no weights ({' or '.join(WEIGHT_FILES)})")


def load_model(name_or_path: str | Path, *, device: str | torch.device = "cpu", **kwargs: Any):
    """A `SelfDetrForActionDetection` from a local folder or the Hub, on ``device``.

    A path that exists is read as a local folder and checked first (`check_model_folder`);
    a missing one that can only be a path (`_local_path`) is an error; anything else is a Hub
    repository id. ``kwargs`` go to ``from_pretrained``.

    Raises:
        ValueError: a folder that is not a Self-DETR model, unreadable or truncated weights,
            an unknown device; the message names the path.
        OSError: a name that is neither a local folder nor a model on the Hub.
    """
    from .modeling_self_detr import SelfDetrForActionDetection

    resolved = resolve_device(device)
    path = Path(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path}: a file; give the folder written by save_pretrained")
        check_model_folder(path)
    elif _local_path(str(name_or_path)):
        raise FileNotFoundError(f"{name_or_path}: no such model folder")
    try:
        model = SelfDetrForActionDetection.from_pretrained(name_or_path, **kwargs)
    except OSError as error:
        if path.exists():
            raise ValueError(f"{path}: unreadable model files ({_first_line(error)})") from None
        raise OSError(
            f"{name_or_path}: no such local model folder, and no Self-DETR model of this name on the Hub "
            f"({_first_line(error)})"
        ) from None
    except WEIGHT_READ_ERRORS as error:
        if not path.exists():
            raise
        raise ValueError(f"{path}: unreadable or truncated model weights ({_first_line(error)})") from None
    return model.to(resolved).eval()


def load_processor(name_or_path: str | Path):
    """The `SelfDetrProcessor` saved with a model; without one, the THUMOS14 processor and a
    warning saying so."""
    from .processing_self_detr import SelfDetrProcessor

    try:
        return SelfDetrProcessor.from_pretrained(name_or_path)
    except OSError:
        warnings.warn(
            f"{name_or_path} has no preprocessor_config.json; using the THUMOS14 windowing and post-processing "
            "(save the processor next to the model to choose others)",
            stacklevel=2,
        )
        return SelfDetrProcessor.thumos14()


def _local_path(name: str) -> bool:
    """Whether ``name`` can only be a local path, not a Hub id (``org/name`` or ``name``):
    it starts with ``.``, ``/`` or ``~``, has several ``/``, or its folder exists here
    (``runs/thumos14`` beside a ``runs`` folder)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or ("/" in name and Path(name).parent.is_dir())


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


__all__ = ["check_model_folder", "load_model", "load_processor", "resolve_device"]
