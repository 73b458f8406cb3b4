"""`selfdetr export`: a torch.export program and an ONNX model equal to the eager model, padding
included, at other batch sizes and lengths than the traced ones; the command as a user meets it."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import small_config

from selfdetr_hf import SelfDetrForActionDetection, SelfDetrProcessor
from selfdetr_hf.export import check_export_paths, load_exported, metadata_path, padded_inputs


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    SelfDetrForActionDetection(small_config()).save_pretrained(folder)
    SelfDetrProcessor.thumos14().save_pretrained(folder)
    return folder


def run_export(*arguments: str, blocked_module: str | None = None) -> subprocess.CompletedProcess:
    """``selfdetr export ...`` in a fresh interpreter, on one thread; ``blocked_module`` is made
    unimportable there, as on a machine without it."""
    block = f"sys.modules[{blocked_module!r}] = None; " if blocked_module else ""
    script = f"import sys; {block}from selfdetr_hf.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", script, "export", *arguments, "--threads", "1"]
    return subprocess.run(command, check=False, capture_output=True, text=True)


@pytest.fixture(scope="module", params=["torch", "onnx"])
def exported(request, saved_model, tmp_path_factory):
    """``(format, finished process, output file)`` of the command, for each format. The torch
    program replaces (``--overwrite``) an earlier file and its JSON."""
    format = request.param
    folder = tmp_path_factory.mktemp(format)
    output = folder / ("detector.pt2" if format == "torch" else "detector.onnx")
    if format == "torch":
        output.write_text("an earlier export")
        metadata_path(output).write_text("{}")
        finished = run_export(str(saved_model), str(output), "--overwrite")
    else:
        finished = run_export(str(saved_model), str(output), "--format", "onnx")
    return format, finished, output


@pytest.fixture(scope="module")
def run_exported(exported):
    format, finished, output = exported
    assert finished.returncode == 0, finished.stderr
    return load_exported(output, format)


@pytest.fixture(scope="module")
def eager_model(saved_model):
    return SelfDetrForActionDetection.from_pretrained(saved_model).eval()


def test_export_writes_the_file_and_its_metadata_and_nothing_else(exported, saved_model):
    format, finished, output = exported
    assert finished.returncode == 0, finished.stderr
    assert f"-> {output} ({format})" in finished.stdout
    assert "largest difference to the eager model on padded inputs: logits" in finished.stdout
    assert sorted(path.name for path in output.parent.iterdir()) == [output.name, f"{output.name}.json"]
    metadata = json.loads(metadata_path(output).read_text())
    assert metadata["format"] == format and metadata["file"] == output.name
    assert metadata["id2label"] == {"0": "jump", "1": "throw"}
    assert (
        SelfDetrProcessor(**metadata["processor"]).to_dict() == SelfDetrProcessor.from_pretrained(saved_model).to_dict()
    )
    assert max(metadata["max_difference_to_eager"].values()) <= 1e-4


@pytest.mark.parametrize(("batch", "steps"), [(1, 24), (4, 50)])
@pytest.mark.parametrize("padded", [False, True], ids=["no_padding", "padding"])
def test_exported_model_equals_the_eager_model(run_exported, eager_model, batch, steps, padded):
    """Without padding the export gets an all-ones mask and the eager model none at all."""
    features, attention_mask = padded_inputs(16, batch, steps, seed=batch + steps)
    if not padded:
        attention_mask = torch.ones_like(attention_mask)
    with torch.no_grad():
        expected = eager_model(input_features=features, attention_mask=attention_mask if padded else None)
    logits, segments = run_exported(features.numpy(), attention_mask.numpy())
    np.testing.assert_allclose(logits, expected.logits.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(segments, expected.pred_segments.numpy(), rtol=0, atol=1e-4)


def test_padding_changes_the_exported_outputs(run_exported):
    """The mask is a live input of the graph, not a constant baked in at export."""
    features, attention_mask = padded_inputs(16, 2, 40)
    padded, _ = run_exported(features.numpy(), attention_mask.numpy())
    unpadded, _ = run_exported(features.numpy(), np.ones_like(attention_mask.numpy()))
    assert np.abs(padded[-1] - unpadded[-1]).max() > 1e-3
    np.testing.assert_allclose(padded[0], unpadded[0], rtol=0, atol=1e-5)


def test_an_existing_output_is_refused_and_left_alone(saved_model, tmp_path):
    output = tmp_path / "detector.onnx"
    output.write_text("mine")
    finished = run_export(str(saved_model), str(output), "--format", "onnx")
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        f"selfdetr export: error: {output} already exists: replace it with --overwrite, or choose another file"
    ]
    assert output.read_text() == "mine"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["detector.onnx"]


@pytest.mark.parametrize("folder", ["missing", "bert"])
def test_a_missing_or_foreign_model_folder_is_one_line(tmp_path, folder):
    model_dir = tmp_path / folder
    if folder == "bert":
        model_dir.mkdir()
        (model_dir / "config.json").write_text(json.dumps({"model_type": "bert"}))
    finished = run_export(str(model_dir), str(tmp_path / "detector.pt2"))
    assert finished.returncode == 2
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"selfdetr export: error: {model_dir}")
    assert ("no such model folder" if folder == "missing" else "not a Self-DETR model") in lines[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ([] if folder == "missing" else ["bert"])


def test_onnx_without_the_export_extra_names_the_install_command(saved_model, tmp_path):
    finished = run_export(
        str(saved_model), str(tmp_path / "detector.onnx"), "--format", "onnx", blocked_module="onnxscript"
    )
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        "selfdetr export: error: --format onnx needs onnxscript (not installed): pip install 'selfdetr-hf[export]'"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "format", "message"),
    [
        ("detector.onnx", "torch", "--format torch writes a .pt2 file; name it *.pt2, or choose --format onnx"),
        ("detector", "onnx", "--format onnx writes a .onnx file; name it *.onnx"),
    ],
)
def test_a_file_name_of_another_format_is_refused(tmp_path, name, format, message):
    with pytest.raises(ValueError, match=f"^{re.escape(f'{tmp_path / name}: {message}')}$"):
        check_export_paths(tmp_path / name, format)


def test_exported_outputs_give_the_eager_detections_through_the_processor(exported, run_exported, eager_model):
    """The README's recipe: the processor rebuilt from the JSON, its windows through the
    exported file, its post-processing on the ``[logits, pred_segments]`` pair."""
    _, _, output = exported
    metadata = json.loads(metadata_path(output).read_text())
    processor = SelfDetrProcessor(**metadata["processor"])
    id2label = {int(index): name for index, name in metadata["id2label"].items()}
    features = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)  # 3 windows, the last padded
    inputs = processor([features], feature_fps=7.5, video_ids=["video"])
    window_metadata = inputs.pop("window_metadata")
    found = processor.post_process_action_detection(
        list(run_exported(inputs["input_features"], inputs["attention_mask"])), window_metadata, id2label=id2label
    )[0]
    with torch.no_grad():
        outputs = eager_model(**processor([features], return_tensors="pt"))
    expected = processor.post_process_action_detection(outputs, window_metadata, id2label=id2label)[0]
    assert found["label_names"] == expected["label_names"]
    np.testing.assert_allclose(found["scores"], expected["scores"], atol=1e-4)
    np.testing.assert_allclose(found["segments"], expected["segments"], atol=1e-3)
