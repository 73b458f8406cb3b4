"""Export of a Self-DETR detector for deployment: a `torch.export` program (``.pt2``) or an
ONNX model from the dynamo-based exporter (``.onnx``, run by onnxruntime).

Both take ``input_features`` ``(B, T, C)`` float32 and ``attention_mask`` ``(B, T)`` int64
(1 = valid step, 0 = padding) with dynamic ``B`` and ``T``, and return ``logits``
``(B, Nq, K)`` (sigmoid logits) and ``pred_segments`` ``(B, Nq, 2)`` (normalised center and
width in the window): the eager model's outputs, padding included. An export is written
only after its file, loaded back, matched the eager model on padded inputs of another
batch size and length than the traced ones.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .detection_files import check_writable

FORMATS = {"torch": ".pt2", "onnx": ".onnx"}
INPUT_NAMES = ("input_features", "attention_mask")
OUTPUT_NAMES = ("logits", "pred_segments")
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
TOLERANCE = 1e-4
TRACE_SHAPE = (2, 33)  # (batch, time) of the traced example: distinct sizes, neither 0 nor 1
CHECK_SHAPE = (3, 47)  # another batch size and length, for the check of the written file

Runner = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class SelfDetrDetectionGraph(nn.Module):
    """The inference forward of a `SelfDetrForActionDetection` with tensors in and out, the
    module that is exported: ``(input_features (B, T, C), attention_mask (B, T)) ->
    (logits (B, Nq, K), pred_segments (B, Nq, 2))``.

    It runs a float32 copy of ``model`` in eval mode; ``model`` itself is left as it is.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).float()
        self.eval()

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(input_features=input_features, attention_mask=attention_mask, return_dict=True)
        return outputs.logits, outputs.pred_segments


def check_onnx_extra() -> None:
    """Raises ValueError, naming the missing packages and the install command, without the
    ``export`` extra."""
    missing = []
    for name in ONNX_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ValueError(f"--format onnx needs {', '.join(missing)} (not installed): pip install 'selfdetr-hf[export]'")


def padded_inputs(feature_dim: int, batch: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(batch, steps, feature_dim)`` float32 features and an int64 ``(batch, steps)``
    mask whose last row is padded after half its steps, as the last window of a video is."""
    features = torch.randn(batch, steps, feature_dim, generator=torch.Generator().manual_seed(seed))
    attention_mask = torch.ones(batch, steps, dtype=torch.long)
    attention_mask[-1, steps // 2 :] = 0
    return features, attention_mask


def dynamic_shapes() -> dict[str, dict[int, torch.export.Dim]]:
    """Batch and time dimensions shared by both inputs, any size from 1."""
    batch, time = torch.export.Dim("batch", min=1), torch.export.Dim("time", min=1)
    return {"input_features": {0: batch, 1: time}, "attention_mask": {0: batch, 1: time}}


def export_program(model: nn.Module) -> torch.export.ExportedProgram:
    """``model`` as a `torch.export` program with dynamic batch and time (float32, eval mode)."""
    graph = SelfDetrDetectionGraph(model)
    example = padded_inputs(model.config.feature_dim, *TRACE_SHAPE)
    return torch.export.export(graph, example, dynamic_shapes=dynamic_shapes())


def export_onnx(model: nn.Module) -> Any:
    """``model`` as a ``torch.onnx.ONNXProgram`` from the dynamo-based exporter, dynamic batch and time.

    The exporter's progress lines and warnings about its internals are silenced: the
    written file is checked against the eager model instead.
    """
    graph = SelfDetrDetectionGraph(model)
    example = padded_inputs(model.config.feature_dim, *TRACE_SHAPE)
    with _quiet_exporter():
        return torch.onnx.export(
            graph, example, dynamo=True, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic_shapes(), external_data=False, verbose=False,
        )  # fmt: skip


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def load_exported(path: str | Path, format: str) -> Runner:
    """A function running an exported file on NumPy inputs ``(features, attention_mask)`` and
    returning ``(logits, pred_segments)``: the program through `torch.export.load`, the ONNX
    model through onnxruntime on as many threads as torch uses."""
    if format == "torch":
        program = torch.export.load(str(path)).module()

        def run_program(features: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.no_grad():
                logits, segments = program(torch.from_numpy(features), torch.from_numpy(attention_mask))
            return logits.numpy(), segments.numpy()

        return run_program
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run_session(features: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, segments = session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, (features, attention_mask))))
        return logits, segments

    return run_session


def difference_to_eager(model: nn.Module, run: Runner, batch: int, steps: int) -> dict[str, float]:
    """Largest absolute difference of ``run``'s outputs to the eager ``model``'s on padded inputs."""
    features, attention_mask = padded_inputs(model.config.feature_dim, batch, steps, seed=1)
    with torch.no_grad():
        expected = SelfDetrDetectionGraph(model)(features, attention_mask)
    found = run(features.numpy(), attention_mask.numpy())
    return {
        name: float(np.abs(value - reference.numpy()).max())
        for name, value, reference in zip(OUTPUT_NAMES, found, expected)
    }


@dataclass
class ExportReport:
    """What `export_detector` wrote, and how far the written file is from the eager model."""

    output: Path
    metadata: Path
    difference: dict[str, float]


def metadata_path(output: str | Path) -> Path:
    """The JSON written beside an export: ``detector.onnx`` -> ``detector.onnx.json``."""
    output = Path(output)
    return output.with_name(output.name + ".json")


def check_export_paths(output: str | Path, format: str, *, overwrite: bool = False) -> Path:
    """Check, before any compute, that ``output`` suits ``format`` and that it and its JSON
    may be written.

    Raises:
        ValueError: a suffix of another format (or none), an existing file without
            ``overwrite``, a missing or read-only folder; naming the path.
    """
    output = Path(output)
    suffix = FORMATS[format]
    if output.suffix != suffix:
        other = next((name for name, ending in FORMATS.items() if ending == output.suffix), None)
        hint = f", or choose --format {other}" if other else ""
        raise ValueError(f"{output}: --format {format} writes a {suffix} file; name it *{suffix}{hint}")
    check_writable(output, overwrite=overwrite)
    check_writable(metadata_path(output), overwrite=overwrite)
    return output


def export_detector(
    model: nn.Module, output: str | Path, format: str = "torch", *, processor: Any = None, overwrite: bool = False
) -> ExportReport:
    """Export a `SelfDetrForActionDetection` to ``output`` (``.pt2`` for ``torch``, ``.onnx``
    for ``onnx``) and write ``<output>.json`` beside it: inputs, outputs, class names, the
    processor's settings (windowing, post-processing) and the measured difference to the
    eager model.

    The file is written in a temporary folder beside ``output``, loaded back and run on
    padded inputs of another shape than the traced one; it takes its name only when every
    output is within `TOLERANCE` of the eager model's. An existing file is replaced only
    with ``overwrite``.

    Raises:
        ValueError: a path `check_export_paths` refuses, a missing ``export`` extra for ONNX,
            or an export that differs from the eager model (nothing is then written).
    """
    output = check_export_paths(output, format, overwrite=overwrite)
    if format == "onnx":
        check_onnx_extra()
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    partial = staging / output.name
    try:
        if format == "torch":
            torch.export.save(export_program(model), str(partial))
        else:
            export_onnx(model).save(str(partial), external_data=False)
        difference = difference_to_eager(model, load_exported(partial, format), *CHECK_SHAPE)
        if max(difference.values()) > TOLERANCE:
            found = ", ".join(f"{name} {value:.2g}" for name, value in difference.items())
            raise ValueError(
                f"the exported model differs from the eager model ({found} > {TOLERANCE}); nothing written"
            )
        metadata = staging / metadata_path(output).name
        metadata.write_text(json.dumps(export_metadata(model, output, format, processor, difference), indent=2))
        os.replace(metadata, metadata_path(output))
        os.replace(partial, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(output, metadata_path(output), difference)


def export_metadata(
    model: nn.Module, output: Path, format: str, processor: Any, difference: dict[str, float]
) -> dict[str, Any]:
    """What a runtime needs beside the file to turn its outputs into detections."""
    config = model.config
    return {
        "format": format,
        "file": output.name,
        "inputs": {
            "input_features": {"shape": ["batch", "time", config.feature_dim], "dtype": "float32"},
            "attention_mask": {"shape": ["batch", "time"], "dtype": "int64", "values": "1 = valid step, 0 = padding"},
        },
        "outputs": {
            "logits": {
                "shape": ["batch", config.num_queries, config.num_labels],
                "dtype": "float32",
                "values": "sigmoid logits per query and class",
            },
            "pred_segments": {
                "shape": ["batch", config.num_queries, 2],
                "dtype": "float32",
                "values": "normalised (center, width) of each query's segment in the window",
            },
        },
        "id2label": {str(index): name for index, name in config.id2label.items()},
        "processor": None if processor is None else processor.to_dict(),
        "max_difference_to_eager": difference,
        "torch_version": torch.__version__,
    }


__all__ = [
    "FORMATS",
    "TOLERANCE",
    "ExportReport",
    "SelfDetrDetectionGraph",
    "check_export_paths",
    "check_onnx_extra",
    "difference_to_eager",
    "export_detector",
    "export_onnx",
    "export_program",
    "load_exported",
    "metadata_path",
    "padded_inputs",
]
